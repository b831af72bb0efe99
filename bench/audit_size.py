"""Audit log size on disk and ``audit verify`` speed, side by side with their floors.

    .venv/bin/python bench/audit_size.py [--events 1000000] [--dir DIR] [--profile]

1. Bytes per event on disk at N events: the whole database file (events with their indexes, tree
   nodes, checkpoints; the WAL folded back) divided by N, and per table and index (SQLite's dbstat).
   Aim: <= 300 bytes. For comparison, the canonical JSON of the same events (what a leaf is).
2. ``AuditLog.verify`` at N events against raw SHA-256 of the same leaves (a Python loop of
   ``sha256(0x00 || leaf)`` over leaves already in memory), measured in this run. Aim: <= 2.5x.

The log is built with ``AuditLog.append`` of 10,000 events at a time (one transaction each) and a
checkpoint after every 100,000, events like bench/audit.py's (verify verdicts of 50 agents, random
32-byte presentation digests and jtis, 20% denials). Nothing here is a test: it prints figures and
ratios and never fails.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import hashlib
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentctl.audit import AuditLog, Event  # noqa: E402
from agentctl.home import Home  # noqa: E402

SIZE_AIM, VERIFY_AIM = 300.0, 2.5
AGENTS = [f"agent:bot-{i}" for i in range(50)]
HOST, SEED = "host:bench", bytes(range(32))


def _b64(rnd: random.Random, n: int) -> str:
    return base64.urlsafe_b64encode(rnd.randbytes(n)).rstrip(b"=").decode()


def event(rnd: random.Random) -> Event:
    """A verify verdict as agentctl records one: random jti and presentation digest (hex), as agentctl records them."""
    ok = rnd.random() < 0.8
    return Event("verify", "allow" if ok else "deny", principal=rnd.choice(AGENTS), on_behalf_of="user:alice",
                 chain=("user:alice", "agent:deployer"), action=rnd.choice(("deploy.staging", "deploy.production", "pull_request.create")),
                 resource=f"acme/repo-{rnd.randrange(200)}", reason=None if ok else "scope_denied", jtis=(_b64(rnd, 16),),
                 metadata={"type": "action", "scope": "deploy.*:acme/*", "presentation_sha256": rnd.randbytes(32).hex(),
                           "detail": None if ok else "agent:bot may not admin.x on acme/repo-1 (scope: deploy.*:acme/*)"})


def say(text: str = "") -> None:
    print(text, flush=True)


def build(home: Home, n: int) -> AuditLog:
    log = AuditLog.open(home)
    rnd = random.Random(7)
    clock = [1_790_000_000.0]

    def tick() -> float:
        clock[0] += 0.1
        return clock[0]

    t0, done = time.perf_counter(), 0
    while done < n:
        k = min(10_000, n - done)
        log.append([event(rnd) for _ in range(k)], tick)
        done += k
        if done % 100_000 == 0 or done == n:
            log.add_checkpoint(HOST, SEED, tick)
            say(f"  built {done:,} events ({time.perf_counter() - t0:.0f} s)")
    log.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return log


def sizes(log: AuditLog, n: int) -> float:
    per = os.path.getsize(log.path) / n
    say(f"1. bytes per event at {n:,} events: {per:.1f} (aim <= {SIZE_AIM:.0f}: {'meets the aim' if per <= SIZE_AIM else 'MISSES the aim'})")
    try:
        rows = log.conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except Exception:  # SQLite built without dbstat
        rows = []
    for name, total in rows:
        if total / n >= 0.05:
            say(f"     {name:24} {total / n:7.1f}")
    leaves = log.conn.execute("SELECT AVG(LENGTH(leaf)) FROM (SELECT leaf FROM events LIMIT 10000)").fetchone()[0]
    say(f"   a leaf (canonical JSON) is {leaves:.0f} bytes; stored deflated")
    return per


def verify_ratio(log: AuditLog, profile: bool) -> float:
    from agentctl import crypto

    keys = {HOST: [crypto.public_key(SEED)]}
    leaves = [leaf.encode() for leaf in log.export()]
    sha = hashlib.sha256
    best_raw = best_verify = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        [sha(b"\x00" + leaf).digest() for leaf in leaves]
        best_raw = min(best_raw, time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = log.verify(keys)
        best_verify = min(best_verify, time.perf_counter() - t0)
        assert report.ok, report.problem
    ratio = best_verify / best_raw
    say(f"2. audit verify of {len(leaves):,} events: {best_verify:.2f} s; raw SHA-256 of the leaves {best_raw:.2f} s; "
        f"ratio {ratio:.2f}x (aim <= {VERIFY_AIM}x: {'meets the aim' if ratio <= VERIFY_AIM else 'MISSES the aim'}; best of 3)")
    if profile:
        prof = cProfile.Profile()
        prof.runcall(log.verify, keys)
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        say(f"building a log of {args.events:,} events in {tmp}")
        log = build(Home(Path(tmp) / "home"), args.events)
        try:
            sizes(log, args.events)
            verify_ratio(log, args.profile)
        finally:
            log.close()


if __name__ == "__main__":
    main()
