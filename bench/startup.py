"""Start-up time of agentctl's hot commands, measured side by side with the interpreter's own floors.

    .venv/bin/python bench/startup.py [--rounds 30] [--warmup 3] [--importtime] [--compare SRC]

The interpreter is the one running this file (``sys.executable``) and agentctl is the console script
installed beside it, run directly (no shell, no pyenv shim). Everything is precompiled first:
PYTHONDONTWRITEBYTECODE=1 would otherwise make every run compile every module again. The commands run
in interleaved rounds, in a new random order each round, and the medians are compared with the nacl
floor (``python -c "import nacl.signing"``): the targets are pubkey within 3x of it and a cold
``agentctl verify`` of a grant (audit on, so one appended row included) within 1.8x. When one misses
(or with ``--importtime``), a ``-X importtime`` breakdown says which imports cost what.

The first line says which kind of install it measured: ``editable`` (``pip install -e``, whose import
hook a ``.pth`` file loads into every start of that interpreter, ``python -c pass`` included, so both
sides of each ratio carry it) or ``regular`` (``pip install .``, as the README installs it). Measure
both: the floors differ by the hook's cost, so the ratios do too. ``--compare SRC`` also times
``verify`` and ``pubkey`` from another source tree (e.g. ``/work/main``) with the same interpreter,
in the same rounds, both trees run by the console script's own three lines.

Nothing here is a test: the test suite never asserts on time.
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

NAME = "agent:bench"
TARGET = 3.0
VERIFY_TARGET = 1.8


def precompile() -> None:
    """Write bytecode for agentctl, the venv's packages and the standard library."""
    import agentctl

    dirs = [Path(agentctl.__file__).parent, *{Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}, Path(sysconfig.get_paths()["stdlib"])]
    skip = re.compile(r"[/\\](test|tests|idlelib|lib2to3|turtledemo)[/\\]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the standard library's own test data warns
        for d in dirs:
            if d.is_dir():
                compileall.compile_dir(str(d), quiet=2, workers=0, rx=skip)


def install_kind() -> str:
    """``editable`` or ``regular``, and where agentctl is imported from: read from the installed
    distribution's ``direct_url.json`` (PEP 610), as pip records it."""
    import json
    from importlib import metadata

    import agentctl

    try:
        raw = metadata.distribution("agentctl").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return f"not installed (agentctl from {Path(agentctl.__file__).parent})"
    editable = bool(raw and json.loads(raw).get("dir_info", {}).get("editable"))
    return f"{'editable' if editable else 'regular'} install (agentctl from {Path(agentctl.__file__).parent})"


# what the console script pip writes runs, as a -c program (to run another source tree the same way)
SCRIPT = ("import re\nimport sys\nfrom agentctl._cli.entry import run\n"
          "sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\nsys.exit(run())")


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    env["AGENTCTL_KEYSTORE"] = "file"  # keygen in the bench home never touches the OS keyring
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd, check=False)
    return time.perf_counter() - t0


def importtime(cmd: list[str], env: dict[str, str], runs: int = 7) -> tuple[list[tuple[str, float]], list[tuple[str, float, float]]]:
    """``cmd`` (a script) run ``runs`` times under ``python -X importtime``; medians in µs of the imports
    at depth 0 by cumulative time, and of every module by its own time (with its cumulative)."""
    self_us: dict[str, list[int]] = {}
    cum_us: dict[str, list[int]] = {}
    top: set[str] = set()
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-X", "importtime", *cmd], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                           cwd=tempfile.gettempdir())
        for line in r.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            s, c, name = line[len("import time:") :].split("|", 2)
            module = name.strip()
            if not name.startswith("  "):
                top.add(module)  # depth 0: imported by agentctl's code (or the interpreter's start-up)
            self_us.setdefault(module, []).append(int(s))
            cum_us.setdefault(module, []).append(int(c))
    med = {m: statistics.median(v) for m, v in cum_us.items()}
    tops = sorted(((m, med[m]) for m in top), key=lambda x: -x[1])
    selfs = sorted(((m, statistics.median(v), med[m]) for m, v in self_us.items()), key=lambda x: -x[1])
    return tops, selfs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="measured runs of each command (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="rounds run first and discarded (default 3)")
    parser.add_argument("--importtime", action="store_true", help="always print the -X importtime breakdown of pubkey")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-round order")
    parser.add_argument("--compare", metavar="SRC", type=Path,
                        help="also time verify and pubkey from the agentctl source tree SRC (e.g. /work/main), same interpreter")
    args = parser.parse_args()

    python = Path(sys.executable)
    script = python.parent / "agentctl"
    if not script.exists():
        sys.stderr.write(f"bench: error: no agentctl console script beside {python}; install the project into that environment\n")
        return 2
    if args.compare is not None and not (args.compare / "agentctl" / "__init__.py").is_file():
        sys.stderr.write(f"bench: error: {args.compare} holds no agentctl package\n")
        return 2
    sys.stderr.write("bench: precompiling agentctl, site-packages and the standard library...\n")
    precompile()
    if args.compare is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compileall.compile_dir(str(args.compare / "agentctl"), quiet=2, workers=0)
    kind = install_kind()

    with tempfile.TemporaryDirectory(prefix="agentctl-bench-") as tmp:
        home = Path(tmp) / "home"
        env = clean_env(home)
        grant_file = Path(tmp) / "grant.jwt"
        for setup in (["keygen", NAME], ["keygen", "user:bench"],
                      ["delegate", "--from", "user:bench", "--to", NAME, "--scope", "deploy.staging:api/*", "-o", str(grant_file)]):
            made = subprocess.run([str(script), "--home", str(home), *setup], capture_output=True, text=True, env=env)
            if made.returncode != 0:
                sys.stderr.write(f"bench: error: {setup[0]} failed ({made.returncode}): {made.stderr.strip()}\n")
                return 3
        commands: list[tuple[str, list[str]]] = [
            ("python -c pass", [str(python), "-c", "pass"]),
            ("python -c 'import nacl.signing'", [str(python), "-c", "import nacl.signing"]),
            ("agentctl --version", [str(script), "--version"]),
            ("agentctl pubkey NAME", [str(script), "--home", str(home), "pubkey", NAME]),
            ("agentctl verify GRANT  (audit on)", [str(script), "--home", str(home), "verify", str(grant_file), "--action",
                                                  "deploy.staging", "--resource", "api/web"]),
            ("agentctl list  (Typer path)", [str(script), "--home", str(home), "list"]),
            ("agentctl --help  (Typer path)", [str(script), "--help"]),
        ]
        envs = {label: env for label, _ in commands}
        if args.compare is not None:
            other = dict(env, PYTHONPATH=str(args.compare.resolve()))
            for label, index in (("SRC: pubkey NAME", 3), ("SRC: verify GRANT  (audit on)", 4)):
                commands.append((label, [str(python), "-c", SCRIPT, *commands[index][1][1:]]))
                envs[label] = other
        for label, cmd in commands:
            r = subprocess.run(cmd, capture_output=True, text=True, env=envs[label], cwd=tmp)  # no source tree in the cwd
            if r.returncode != 0:
                sys.stderr.write(f"bench: error: {label} exited {r.returncode}: {r.stderr.strip()}\n")
                return 3

        times: dict[str, list[float]] = {label: [] for label, _ in commands}
        order = list(commands)
        rng = random.Random(args.seed)
        for i in range(args.warmup + args.rounds):
            rng.shuffle(order)
            for label, cmd in order:
                dt = run(cmd, envs[label], Path(tmp))
                if i >= args.warmup:
                    times[label].append(dt)

        med = {label: statistics.median(v) * 1000 for label, v in times.items()}
        floor_py = med["python -c pass"]
        floor_nacl = med["python -c 'import nacl.signing'"]
        print(f"agentctl start-up, {args.rounds} interleaved rounds after {args.warmup} warm-up; {python}")
        print(f"{kind}" + (f"; SRC = {args.compare}" if args.compare is not None else ""))
        print(f"{'command':34} {'median ms':>10} {'min ms':>8} {'vs nacl':>8} {'vs python':>10}")
        for label, _ in commands:
            print(f"{label:34} {med[label]:10.1f} {min(times[label]) * 1000:8.1f} {med[label] / floor_nacl:7.2f}x {med[label] / floor_py:9.2f}x")
        ratio = med["agentctl pubkey NAME"] / floor_nacl
        verdict = "yes" if ratio <= TARGET else "NO"
        print(f"target: pubkey within {TARGET:g}x of the nacl floor: {verdict} ({ratio:.2f}x)")
        v_ratio = med["agentctl verify GRANT  (audit on)"] / floor_nacl
        print(f"target: verify within {VERIFY_TARGET:g}x of the nacl floor: {'yes' if v_ratio <= VERIFY_TARGET else 'NO'} "
              f"({v_ratio:.2f}x)")
        if args.compare is not None:
            print(f"SRC: verify {med['SRC: verify GRANT  (audit on)'] / floor_nacl:.2f}x, pubkey {med['SRC: pubkey NAME'] / floor_nacl:.2f}x "
                  f"of the nacl floor (this tree: {v_ratio:.2f}x, {ratio:.2f}x)")

        for label, index, missed in (("pubkey", 3, ratio > TARGET), ("verify", 4, v_ratio > VERIFY_TARGET)):
            if not (missed or args.importtime):
                continue
            tops, selfs = importtime(commands[index][1], env)
            print()
            print(f"{label} under -X importtime (medians, ms): imports at depth 0 by cumulative time")
            print("(site and encodings are the interpreter's own start-up, paid by 'python -c pass' too)")
            for m, c in tops[:20]:
                print(f"  {c / 1000:7.2f}  {m}")
            print("the modules that cost most themselves (self ms, cumulative ms)")
            for m, s, c in selfs[:15]:
                print(f"  {s / 1000:7.2f} {c / 1000:7.2f}  {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
