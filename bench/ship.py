"""Shipping speed: events per second from a home's audit log into a local PostgreSQL.

    .venv/bin/python bench/ship.py [--events 50000] [--batch 10000] [--url OWNER_URL]

Without ``--url`` it starts a private PostgreSQL cluster (Debian's binaries under
/usr/lib/postgresql/*/bin, run as the ``postgres`` user when this runs as root) on a unix socket in a
temporary directory, with the settings of a test cluster (fsync off): a figure of agentctl's own cost,
not of a disk. With ``--url`` (the owner of an empty throwaway database) it uses that server.

It builds a log of N events (``AuditLog.append``, 10,000 at a time), then, side by side in one run,
ships it into two new databases: one made by migration 1 alone and fed the row arrays as text (as
shipping was before), and one at the current schema with today's code. Each is ``audit ship --init``,
``enroll``, then a timed ``ship`` (which makes or reuses the covering checkpoint, checks it, checks
every leaf against its hash, and inserts the events and checkpoint in batches as the enrolled host
role, under row-level security). It prints both rates, their ratio and the ratio to the aim, and never
fails. Aim (issue 14): >= 20,000 events/s.

Where the time went before (cProfile, 50,000 events): about 70% in psycopg escaping the leaves into a
text array literal (a regex substitution per element), the rest the server, whose cost was mostly six
JSON parses per row (one per generated column); COPY FROM is refused on a table with row-level security
(for any role but a bypassing one), so the INSERT of arrays stays, one round trip per batch.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentctl.audit import AuditLog, Event  # noqa: E402
from agentctl.context import Context  # noqa: E402

AIM = 20_000.0


def start_cluster(base: Path) -> tuple[str, callable]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        sys.exit("bench/ship.py: no PostgreSQL binaries; install postgresql or pass --url")
    bindir = Path(found[-1]).parent
    prefix: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
    data, sock = base / "data", base / "sock"
    run = lambda *c: subprocess.run([*prefix, *c], check=True, capture_output=True, cwd=base)  # noqa: E731
    run("mkdir", "-m", "0700", str(sock))
    run(str(bindir / "initdb"), "-D", str(data), "-U", "owner", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
        f"-k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off", "start")
    return f"postgresql://owner@/postgres?host={sock}", lambda: run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")


VARIANTS = (
    # name, migrations applied, INSERT statement (the row arrays as text or as binary parameters)
    ("before (schema 1: six generated columns; arrays as text)", 1,
     "INSERT INTO agentctl_audit.events (log_id, seq, leaf, leaf_hash) SELECT %s, * FROM unnest(%s::bigint[], %s::text[], %s::bytea[])"),
    ("now (schema 2: one trigger; arrays in binary)", None, None),
)


def ship_into(url: str, db: str, ctx, migrations: int | None, insert: str | None, batch: int):
    """Ship the home's log into a new database ``db``, made at ``migrations`` with ``insert``; return
    (result, seconds, owner url)."""
    import psycopg

    from agentctl.audit import pgschema
    from agentctl.audit import ship as ship_mod
    from agentctl.recording import audit_key

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    owner = url.replace("/postgres?", f"/{db}?", 1)
    saved = pgschema.MIGRATIONS, pgschema.SCHEMA_VERSION, ship_mod._INSERT_EVENTS
    try:
        if migrations is not None:
            pgschema.MIGRATIONS = pgschema.MIGRATIONS[:migrations]
            pgschema.SCHEMA_VERSION = migrations
        if insert is not None:
            ship_mod._INSERT_EVENTS = insert
        ship_mod.init_store(owner)
        role = ship_mod.enroll(owner, audit_key(ctx), password=False).role
        t0 = time.perf_counter()
        result = ship_mod.ship(ctx, owner.replace("owner@", f"{role}@", 1), batch=batch)
        return result, time.perf_counter() - t0, owner
    finally:
        pgschema.MIGRATIONS, pgschema.SCHEMA_VERSION, ship_mod._INSERT_EVENTS = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--url", help="the owner of a throwaway server's 'postgres' database (it makes databases)")
    args = ap.parse_args()
    import psycopg

    base = Path(tempfile.mkdtemp(prefix="agentctl-bench-ship-"))
    os.chmod(base, 0o755)
    stop = lambda: None  # noqa: E731
    try:
        url = args.url
        if url is None:
            url, stop = start_cluster(base)
        home = base / "home"
        ctx = Context.for_home(home, env={**os.environ, "AGENTCTL_KEYSTORE": "file"})
        log = AuditLog.open(ctx.home)
        for i in range(0, args.events, 10_000):
            log.append([Event("verify", "allow", principal=f"agent:bot-{j % 50}", action="deploy", resource=f"svc/{j}",
                              jtis=(f"jti-{j}",), metadata={"presentation_sha256": "0" * 64})
                        for j in range(i, min(args.events, i + 10_000))])
        log.close()
        rates = []
        for n, (name, migrations, insert) in enumerate(VARIANTS):
            result, dt, owner = ship_into(url, f"bench_ship_{os.getpid()}_{n}", ctx, migrations, insert, args.batch)
            rate = result.events / dt
            rates.append(rate)
            with psycopg.connect(owner) as c:
                size = c.execute("SELECT pg_total_relation_size('agentctl_audit.events')").fetchone()[0]
            print(f"ship {name}: {result.events} events in {dt:.2f} s = {rate:,.0f} events/s; "
                  f"{size / max(result.events, 1):.0f} bytes per event in PostgreSQL (table and indexes)")
        print(f"ratio now/before: {rates[-1] / rates[0]:.2f}x; now/aim: {rates[-1] / AIM:.2f} "
              f"(aim >= {AIM:,.0f} events/s: {'met' if rates[-1] >= AIM else 'not met'}); batch {args.batch}")
    finally:
        stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
