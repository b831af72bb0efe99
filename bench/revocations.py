"""A cold ``agentctl verify`` with 10, 10,000 and 100,000 revocations held, and the import of a large list.

    .venv/bin/python bench/revocations.py [--rounds 15] [--warmup 2] [--sizes 10,10000,100000] [--list 100000]

One home (user:alice delegates to agent:bot, which signs an action) is copied once per size, and each
copy is given that many grant revocations (none of which names the action's chain, so every verify is
allowed and looks every id up). The verifies run in interleaved rounds, in a new random order each
round; each size's median is printed beside the 10 case's as a ratio, measured in the same run: the
aim is 100,000 within 1.2x of 10. Then a list of ``--list`` grant revocations is exported from one copy
and imported into a fresh one (each timed once, several times over), with the list's size in bytes
and bytes per entry.

Nothing here is a test: the test suite never asserts on time.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import clean_env, precompile  # noqa: E402

AIM = 1.2


def jti(i: int) -> str:
    from agentctl.encoding import b64u_encode

    return b64u_encode(i.to_bytes(8, "big") + b"revoked!")  # 16 bytes, 22 characters, like a jti agentctl mints


def agentctl(script: Path, home: Path, env: dict, *args: str, input: str | None = None) -> str:
    r = subprocess.run([str(script), "--home", str(home), *args], input=input, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"bench: error: agentctl {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def fill(home: Path, n: int, start: int = 0) -> None:
    """Give ``home`` ``n`` grant revocations (through the store, as an import would)."""
    from agentctl.home import Home
    from agentctl.models import Revocation
    from agentctl.store import Store

    h = Home(home)
    with h.lock():
        Store(h).add_revocations(Revocation("grant", jti(i), 1_800_000_000.0 + i) for i in range(start, start + n))


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench: error: {' '.join(cmd[1:])} failed: {r.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="measured verifies of each size (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="rounds run first and discarded (default 2)")
    parser.add_argument("--sizes", default="10,10000,100000", help="revocations held, comma-separated; the first is the base")
    parser.add_argument("--list", type=int, default=100_000, help="entries in the imported list (default 100,000)")
    parser.add_argument("--imports", type=int, default=3, help="times the list is imported into a fresh home (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    python = Path(sys.executable)
    script = python.parent / "agentctl"
    if not script.exists():
        sys.stderr.write(f"bench: error: no agentctl console script beside {python}; install the project into that environment\n")
        return 2
    sys.stderr.write("bench: precompiling agentctl, site-packages and the standard library...\n")
    precompile()

    with tempfile.TemporaryDirectory(prefix="agentctl-bench-") as tmp:
        root = Path(tmp)
        base = root / "base"
        env = clean_env(base)
        agentctl(script, base, env, "keygen", "user:alice")
        agentctl(script, base, env, "keygen", "agent:bot")
        grant = agentctl(script, base, env, "delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.staging:api/web", "--ttl", "12h").strip()
        token = agentctl(script, base, env, "sign", "--as", "agent:bot", "--grant", grant, "--action", "deploy.staging",
                         "--resource", "api/web", "--ttl", "1h").strip()
        (base / "config.toml").write_text((base / "config.toml").read_text() + "\n[roles.revoker]\nrevoke = true\n")
        agentctl(script, base, env, "role", "add", "user:alice", "revoker")

        homes = {}
        for n in sizes:
            h = root / f"h{n}"
            shutil.copytree(base, h, symlinks=True)
            fill(h, n)
            homes[n] = h
        sys.stderr.write(f"bench: homes with {', '.join(f'{n:,}' for n in sizes)} revocations made\n")

        times: dict[int, list[float]] = {n: [] for n in sizes}
        rng = random.Random(args.seed)
        for r in range(args.warmup + args.rounds):
            order = list(sizes)
            rng.shuffle(order)
            for n in order:
                t = timed([str(script), "--home", str(homes[n]), "verify", token, "--action", "deploy.staging", "--resource", "api/web"], env)
                if r >= args.warmup:
                    times[n].append(t)

        b = sizes[0]
        base_med = statistics.median(times[b])
        print(f"cold verify (median of {args.rounds}, audit on), revocations held in the home:")
        for n in sizes:
            med = statistics.median(times[n])
            print(f"  {n:>9,}: {med * 1000:7.1f} ms  (min {min(times[n]) * 1000:6.1f})  ratio to {b:,}: {med / base_med:4.2f}x")
        last = sizes[-1]
        ratio = statistics.median(times[last]) / base_med
        print(f"aim: {last:,} within {AIM}x of {b:,}: {'ok' if ratio <= AIM else 'MISSED'} ({ratio:.2f}x)")

        if args.list:
            signer = root / "signer"
            shutil.copytree(base, signer, symlinks=True)
            fill(signer, args.list, start=10_000_000)
            listfile = root / "list.jwt"
            t0 = time.perf_counter()
            agentctl(script, signer, env, "revocations", "export", "--sign-as", "user:alice", "-o", str(listfile))
            export_s = time.perf_counter() - t0
            size = listfile.stat().st_size
            imports = []
            for i in range(args.imports):
                target = root / f"import{i}"
                shutil.copytree(homes[b], target, symlinks=True)
                imports.append(timed([str(script), "--home", str(target), "revocations", "import", str(listfile)], env))
            again = timed([str(script), "--home", str(root / "import0"), "revocations", "import", str(listfile)], env)
            print(f"list of {args.list:,} grant revocations: {size:,} bytes ({size / args.list:.1f} bytes an entry; "
                  f"the 8 MiB limit holds {8 * 1024 * 1024 * args.list // size:,} such entries)")
            print(f"  export: {export_s:.2f} s")
            print(f"  import into a home holding {b:,}: median {statistics.median(imports):.2f} s of {len(imports)} "
                  f"({', '.join(f'{t:.2f}' for t in imports)}); the same list again: {again:.2f} s")
            print(f"  verify with the {args.list + b:,} imported vs {b:,}: "
                  f"{timed([str(script), '--home', str(root / 'import0'), 'verify', token, '--action', 'deploy.staging', '--resource', 'api/web'], env) * 1000:.1f} ms (one run)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
