"""Shipping speed: events per second from a home's audit log into a local PostgreSQL.

    .venv/bin/python bench/ship.py [--events 10000] [--batch 10000] [--url OWNER_URL]

Without ``--url`` it starts a private PostgreSQL cluster (Debian's binaries under
/usr/lib/postgresql/*/bin, run as the ``postgres`` user when this runs as root) on a unix socket in a
temporary directory, with the settings of a test cluster (fsync off): a figure of agentctl's own cost,
not of a disk. With ``--url`` (the owner of an empty throwaway database) it uses that server.

It builds a log of N events (``AuditLog.append``, 10,000 at a time), runs ``audit ship --init`` and
``enroll``, then times ``ship`` (which makes the covering checkpoint, checks it, and inserts the events
and checkpoint in batches as the enrolled host role, under row-level security). It prints figures and
never fails. Aim (issue 14): >= 20,000 events/s.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--url")
    args = ap.parse_args()
    import psycopg

    from agentctl.audit.ship import enroll, init_store, ship
    from agentctl.recording import audit_key

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
        init_store(url)
        role = enroll(url, audit_key(ctx), password=False).role
        host_url = url.replace("owner@", f"{role}@", 1)
        t0 = time.perf_counter()
        result = ship(ctx, host_url, batch=args.batch)
        dt = time.perf_counter() - t0
        rate = result.events / dt
        print(f"ship: {result.events} events and {result.checkpoints} checkpoint(s) in {dt:.2f} s = {rate:,.0f} events/s "
              f"(aim >= {AIM:,.0f}/s: {'met' if rate >= AIM else 'not met'}); batch {args.batch}")
        with psycopg.connect(url) as c:
            size = c.execute("SELECT pg_total_relation_size('agentctl_audit.events')").fetchone()[0]
        print(f"store: {size / max(result.events, 1):.0f} bytes per event in PostgreSQL (table, generated columns and indexes)")
    finally:
        stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
