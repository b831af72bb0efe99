"""The MCP guard's added cost per tool call.

    .venv/bin/python bench/mcp.py [--calls 300]

In-process: an ``MCPServer`` with one trivial tool, called through the SDK's in-memory ``Client``:
plain, with the presentation carried but no guard, and guarded (a ``MemoryRecorder``, the in-memory
seen-store), in interleaved rounds; the guard's check (``Guard.check``) beside the verifier's pipeline
it runs; and the signer's per-call cost (signing is done before the timed calls). Aim: the guard adds
under 0.5 ms a call (guarded minus plain).
Through the proxies: the same client over stdio to the server directly, through ``agentctl mcp guard``
(the client signs its calls beforehand), and through ``agentctl mcp sign`` → ``agentctl mcp guard``
(audit log and home seen-store on), in interleaved rounds, as ratios to direct. Wall-clock medians; nothing
here is a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# this file is called mcp.py: its folder must not shadow the SDK's package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import anyio  # noqa: E402
from mcp.client.client import Client  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402

from agentctl import MemoryRecorder, StaticTrust, delegate_with, signer_from_seed  # noqa: E402
from agentctl.encoding import canonical_json  # noqa: E402
from agentctl.mcp import ACTION, META_KEY, CallSigner, Guard  # noqa: E402
from agentctl.seen import MemorySeenStore  # noqa: E402

AIM_MS = 0.5


def _server(guard=None) -> MCPServer:
    srv = MCPServer("bench", middleware=[guard] if guard else [])

    @srv.tool()
    def echo(text: str) -> str:
        return text

    return srv


async def _calls(servers: list, args: list[dict], metas: list) -> list[list[float]]:
    """Per-call wall-clock times of ``args`` through the SDK's in-memory client to each of ``servers``
    (pairs of a server and whether it gets the presentations), then the same calls' CPU times (the
    process's, so the tool's worker thread counts too: a figure that waiting for a busy machine's
    cores does not inflate). Call by call in turn, so that load on the machine hits all alike;
    ``metas`` signed beforehand (the signer's cost is measured apart)."""
    from contextlib import AsyncExitStack

    out: list[list[float]] = [[] for _ in servers]
    cpu: list[list[float]] = [[] for _ in servers]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(srv)) for srv, _ in servers]
        for client, (_, signed) in zip(clients, servers):  # the first call lists the tools
            await client.call_tool("echo", {"text": "warm"}, meta=metas[-1] if signed else None)
        for i, a in enumerate(args):
            for k, (client, (_, signed)) in enumerate(zip(clients, servers)):
                meta = metas[i] if signed else None
                t, c = time.perf_counter(), time.process_time()
                await client.call_tool("echo", a, meta=meta)
                out[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
    return out + cpu


def in_process(n: int, rounds: int = 3) -> None:
    alice = signer_from_seed("user:alice", os.urandom(32))
    bot = signer_from_seed("agent:bot", os.urandom(32))
    grant, _ = delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["mcp.call:bench/*"])
    trust = StaticTrust({"user:alice": alice.public})
    signer = CallSigner(bot, server="bench", grant=grant)
    plain, carried, guarded, check, verify = [], [], [], [], []
    cpu: list[list[float]] = [[], [], []]
    for _ in range(rounds):
        args = [{"text": f"call {i}"} for i in range(n)]
        metas = [signer.meta("echo", a) for a in args] + [signer.meta("echo", {"text": "warm"})]
        guard = Guard(trust, server="bench", recorder=MemoryRecorder())
        # plain; the same presentations, no guard (what carrying the token costs the SDK); guarded
        p, c, g, *cpus = anyio.run(_calls, [(_server(), False), (_server(), True), (_server(guard), True)], args, metas)
        for mine, more in zip(cpu, cpus):
            mine += more
        plain += p
        carried += c
        guarded += g
        # the guard's decision alone, beside the verifier's pipeline it runs (each on fresh tokens)
        metas = [signer.meta("echo", a) for a in args for _ in (0, 1)]
        bare = Guard(trust, server="bench", recorder=MemoryRecorder()).verifier
        bare.seen = MemorySeenStore()
        for i, a in enumerate(args):
            t = time.perf_counter()
            guard.check("echo", a, metas[2 * i])
            check.append(time.perf_counter() - t)
            t = time.perf_counter()
            bare.verify_action(metas[2 * i + 1][META_KEY], action=ACTION, resource="bench/echo", data=canonical_json(a),
                               audience="mcp:bench", once=True)
            verify.append(time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        signer.meta("echo", {"text": str(i)})
    sign = (time.perf_counter() - t) / n
    med = statistics.median
    p, c, g, ck, vf = (med(x) * 1e3 for x in (plain, carried, guarded, check, verify))
    added = g - p
    print(f"in-process, median per call over {rounds}x{n} (interleaved call by call): plain {p:.3f} ms, "
          f"token carried unguarded {c:.3f} ms, guarded {g:.3f} ms (ratio guarded/plain {g / p:.2f})")
    print(f"  the guard adds {added:.3f} ms a call ({'meets' if added < AIM_MS else 'MISSES'} the aim of {AIM_MS} ms): "
          f"{g - c:.3f} ms the guard itself (ratio guarded/carried {g / c:.2f}), {c - p:.3f} ms the SDK carrying the token")
    cp, cc, cg = (med(x) * 1e3 for x in cpu)
    print(f"  CPU time per call (the process's): plain {cp:.3f} ms, carried {cc:.3f} ms, guarded {cg:.3f} ms: "
          f"the guard adds {cg - cp:.3f} ms of CPU (ratio guarded/plain {cg / cp:.2f})")
    print(f"  Guard.check {ck:.3f} ms = the verifier's pipeline {vf:.3f} ms + the guard's own {ck - vf:.3f} ms "
          f"(ratio check/verify {ck / vf:.2f}); signing a call {sign * 1e3:.3f} ms")


def proxies(n: int, rounds: int = 3) -> None:
    import subprocess

    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from agentctl.context import Context

    agentctl = str(Path(sys.executable).parent / "agentctl")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AGENTCTL_HOME": f"{tmp}/home", "AGENTCTL_KEYSTORE": "file", "AGENTCTL_PASSPHRASE": "bench"}
        for args in (("keygen", "user:alice"), ("keygen", "agent:bot"),
                     ("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "mcp.call:bench/*", "-o", f"{tmp}/g")):
            subprocess.run([agentctl, *args], env=env, check=True, capture_output=True)
        Path(tmp, "srv.py").write_text("from mcp.server.mcpserver import MCPServer\nsrv = MCPServer('b')\n"
                                       "@srv.tool()\ndef echo(text: str) -> str:\n    return text\nsrv.run()\n")
        server = [sys.executable, f"{tmp}/srv.py"]
        # the client signs its own calls for the guard alone (signing is outside the timed call)
        ctx = Context.for_home(f"{tmp}/home", env=env)
        signer = CallSigner.for_home(ctx, "agent:bot", server="bench", grant=Path(tmp, "g").read_text().strip())
        guard = [agentctl, "mcp", "guard", "--name", "bench", "--", *server]
        sign = [agentctl, "mcp", "sign", "--as", "agent:bot", "--grant", f"{tmp}/g", "--server", "bench", "--"]

        async def run(cmd, signed):
            params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=env)
            async with stdio_client(params) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    out = []
                    for i in range(n + 1):
                        a = {"text": str(i)}
                        meta = signer.meta("echo", a) if signed else None
                        t = time.perf_counter()
                        res = await s.call_tool("echo", a, meta=meta)
                        if i:  # the first call warms up
                            out.append(time.perf_counter() - t)
                        assert not res.is_error, res
                    return out

        times: dict[str, list[float]] = {"direct": [], "guard": [], "both": []}
        for _ in range(rounds):  # interleaved, so that load on the machine hits all alike
            times["direct"] += anyio.run(run, server, False)
            times["guard"] += anyio.run(run, guard, True)
            times["both"] += anyio.run(run, sign + guard, False)
        d, g, b = (statistics.median(times[k]) * 1e3 for k in ("direct", "guard", "both"))
        print(f"over stdio (audit log and home seen-store on), median per call over {rounds}x{n}: direct {d:.2f} ms, "
              f"through guard {g:.2f} ms (ratio {g / d:.2f}), through sign+guard {b:.2f} ms (ratio {b / d:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--no-proxies", action="store_true", help="only the in-process figures")
    a = ap.parse_args()
    in_process(a.calls)
    if not a.no_proxies:
        proxies(max(20, a.calls // 5))


if __name__ == "__main__":
    main()
