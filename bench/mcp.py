"""The MCP guard's added cost per tool call.

    .venv/bin/python bench/mcp.py [--calls 300]

In-process: an ``MCPServer`` with one trivial tool, called through the SDK's in-memory ``Client``,
with and without the guard (a ``MemoryRecorder``, the in-memory seen-store), and the guard's own
check (``Guard.check``) alone, and the signer's per-call cost. Aim: the guard adds under 0.5 ms a call.
Through the proxies: the same client over stdio to the server directly, and through
``agentctl mcp sign`` → ``agentctl mcp guard`` (audit log on), as a ratio. Wall-clock medians; nothing
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
from agentctl.mcp import CallSigner, Guard  # noqa: E402

AIM_MS = 0.5


def _server(guard=None) -> MCPServer:
    srv = MCPServer("bench", middleware=[guard] if guard else [])

    @srv.tool()
    def echo(text: str) -> str:
        return text

    return srv


async def _calls(srv, n: int, signer=None) -> list[float]:
    out = []
    async with Client(srv) as client:
        for i in range(n):
            args = {"text": f"call {i}"}
            t = time.perf_counter()
            meta = signer.meta("echo", args) if signer else None
            await client.call_tool("echo", args, meta=meta)
            out.append(time.perf_counter() - t)
    return out


def in_process(n: int) -> None:
    alice = signer_from_seed("user:alice", os.urandom(32))
    bot = signer_from_seed("agent:bot", os.urandom(32))
    grant, _ = delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["mcp.call:bench/*"])
    guard = Guard(StaticTrust({"user:alice": alice.public}), server="bench", recorder=MemoryRecorder())
    signer = CallSigner(bot, server="bench", grant=grant)
    plain = statistics.median(anyio.run(_calls, _server(), n))
    guarded = statistics.median(anyio.run(_calls, _server(guard), n, signer))
    metas = [signer.meta("echo", {"text": str(i)}) for i in range(n)]
    t = time.perf_counter()
    for i, m in enumerate(metas):
        guard.check("echo", {"text": str(i)}, m)
    check = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for i in range(n):
        signer.meta("echo", {"text": str(i)})
    sign = (time.perf_counter() - t) / n
    print(f"in-process, median per call over {n}: plain {plain * 1e3:.3f} ms, signed+guarded {guarded * 1e3:.3f} ms "
          f"(ratio {guarded / plain:.2f})")
    print(f"  Guard.check alone {check * 1e3:.3f} ms ({'meets' if check * 1e3 < AIM_MS else 'MISSES'} the aim of {AIM_MS} ms); "
          f"signing a call {sign * 1e3:.3f} ms")


def proxies(n: int) -> None:
    import subprocess

    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    agentctl = str(Path(sys.executable).parent / "agentctl")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AGENTCTL_HOME": f"{tmp}/home", "AGENTCTL_KEYSTORE": "file", "AGENTCTL_PASSPHRASE": "bench"}
        for args in (("keygen", "user:alice"), ("keygen", "agent:bot"),
                     ("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "mcp.call:bench/*", "-o", f"{tmp}/g")):
            subprocess.run([agentctl, *args], env=env, check=True, capture_output=True)
        Path(tmp, "srv.py").write_text("from mcp.server.mcpserver import MCPServer\nsrv = MCPServer('b')\n"
                                       "@srv.tool()\ndef echo(text: str) -> str:\n    return text\nsrv.run()\n")
        server = [sys.executable, f"{tmp}/srv.py"]

        async def run(cmd):
            params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=env)
            async with stdio_client(params) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    out = []
                    for i in range(n):
                        t = time.perf_counter()
                        await s.call_tool("echo", {"text": str(i)})
                        out.append(time.perf_counter() - t)
                    return statistics.median(out)

        plain = anyio.run(run, server)
        both = anyio.run(run, [agentctl, "mcp", "sign", "--as", "agent:bot", "--grant", f"{tmp}/g", "--server", "bench", "--",
                               agentctl, "mcp", "guard", "--name", "bench", "--", *server])
        print(f"over stdio, median per call over {n}: direct {plain * 1e3:.2f} ms, through sign+guard (audit on) "
              f"{both * 1e3:.2f} ms (ratio {both / plain:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    a = ap.parse_args()
    in_process(a.calls)
    proxies(max(20, a.calls // 5))


if __name__ == "__main__":
    main()
