"""The CPU cost of one durable audit append, statement by statement, side by side with another checkout.

    .venv/bin/python bench/audit_insert.py [--appends 2000] [--against /work/main] [--rounds 2]

Each checkout runs in a process of its own: ``AuditLog.append`` of one event, ``--appends`` times, in a
new log (``synchronous = FULL``: every append ends in its fsync). A connection class that times each
statement it runs (CPU time of the process, so the fsync's wait is not counted, its kernel work is)
gives the CPU microseconds per append of each statement kind, and the rest (Python: building the
event, canonical JSON, deflate, the tree); the total CPU per append comes from a second run that
times nothing. Figures are noisy on a shared machine; read them side by
side within one round. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from agentctl.audit import AuditLog, Event, codec
from agentctl.home import Home
cpu = time.process_time_ns
spent = {}

def kind(sql):
    s = " ".join(sql.split())
    if s.startswith("SELECT value FROM meta"):
        return "meta read"
    if s.startswith("INSERT OR REPLACE INTO meta"):
        return "meta write"
    if "MAX(seq)" in s:
        return "size query"
    if s.startswith("SELECT id, zdict"):
        return "dicts load"
    return s[:26]

class Timed(codec.Connection):
    def execute(self, sql, *args):
        t0 = cpu()
        try:
            return super().execute(sql, *args)
        finally:
            t1 = cpu()
            k = kind(sql)
            spent[k] = spent.get(k, 0) + t1 - t0

    def executemany(self, sql, *args):
        t0 = cpu()
        try:
            return super().executemany(sql, *args)
        finally:
            t1 = cpu()
            k = kind(sql)
            spent[k] = spent.get(k, 0) + t1 - t0

if sys.argv[4] == "timed":
    codec.Connection = Timed
log = AuditLog.open(Home(sys.argv[1]))
n = int(sys.argv[2])
for i in range(50):  # warm up
    log.append([Event("verify", "allow", principal="agent:w", action="deploy.staging", resource=f"acme/r{i}", jtis=(f"{i:022d}",))])
spent.clear()
t0, w0 = cpu(), time.perf_counter()
for i in range(n):
    log.append([Event("verify", "allow", principal="agent:w", action="deploy.staging", resource=f"acme/r{i}", jtis=(f"{i:022d}",))])
total, wall = cpu() - t0, time.perf_counter() - w0
log.close()
print(json.dumps({"total": total / n / 1000, "rate": n / wall, "spent": {k: v / n / 1000 for k, v in spent.items()}}))
"""


def run(code: Path, n: int) -> dict:
    """The per-statement figures from a run that times each statement, the total from one that does
    not (reading a process's CPU clock costs ~1 µs a call: the timed run's total is inflated)."""
    got = {}
    for how in ("timed", "plain"):
        with tempfile.TemporaryDirectory() as d:
            out = subprocess.run([sys.executable, "-c", WORKER, d, str(n), str(code), how], capture_output=True, text=True, check=True)
        got[how] = json.loads(out.stdout)
    return {**got["timed"], "total": got["plain"]["total"], "rate": got["plain"]["rate"], "timed_total": got["timed"]["total"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--against", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    for r in range(args.rounds):
        got = {"this": run(ROOT, args.appends)}
        if args.against is not None:
            got["other"] = run(args.against, args.appends)
        kinds = sorted({k for g in got.values() for k in g["spent"]}, key=lambda k: -got["this"]["spent"].get(k, 0))
        print(f"round {r + 1}: CPU µs per one-event append ({args.appends} appends)")
        print(f"   {'':<28}" + "".join(f"{label:>10}" for label in got))
        for k in kinds:
            print(f"   {k:<28}" + "".join(f"{g['spent'].get(k, 0):10.1f}" for g in got.values()))
        for g in got.values():
            g["python"] = g["timed_total"] - sum(g["spent"].values())
        print(f"   {'(python, outside SQL)':<28}" + "".join(f"{g['python']:10.1f}" for g in got.values()))
        print(f"   {'total, timed run':<28}" + "".join(f"{g['timed_total']:10.1f}" for g in got.values()))
        print(f"   {'total, untimed run':<28}" + "".join(f"{g['total']:10.1f}" for g in got.values()))
        print(f"   {'appends/s (wall)':<28}" + "".join(f"{g['rate']:10.0f}" for g in got.values()))
        if "other" in got:
            print(f"   CPU per append, this / other: {got['this']['total'] / got['other']['total']:.2f}")


if __name__ == "__main__":
    main()
