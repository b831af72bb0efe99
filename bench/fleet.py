"""The fleet query at 1,000,000 shipped events: ``audit --from URL --agent NAME --limit 20``.

    .venv/bin/python bench/fleet.py [--events 1000000] [--agents 200] [--logs 4] [--url OWNER_URL]

Without ``--url`` it starts a private PostgreSQL cluster as bench/ship.py does (fsync off). It makes
the store (``audit ship --init``), then fills it fast as the owner: ``--logs`` logs of one enrolled
host each, events spread over ``--agents`` agents, sent by one COPY (allowed to the owner, whom
row-level security does not bind; the hosts ship with INSERT) with the secondary indexes dropped
during the fill and re-made afterwards from their own definitions. The rows go through the columns
trigger like shipped ones; their leaves are canonical JSON like the host's and match their hashes, but
are not checkpointed: this store is for timing queries, ``audit verify --from`` would refuse it.

Then, as a reader role (member of ``agentctl_audit_reader``, under row-level security), it times
``query_conn`` on an open connection (the query alone: SQL, rows, JSON), ``query_store`` (a connection
made and closed around it, as one ``audit --from`` does), and ``agentctl audit --from`` as a process
(process start and import included), each the median of several runs, with the plan PostgreSQL chose
for each query shape (one agent; agent and host; one action; agent and outcome). Prints figures and
ratios; never fails.
Aim (issue 14): <= 10 ms for one agent, --limit 20.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ship import start_cluster  # noqa: E402

AIM_MS = 10.0
# one event as the host's log holds it (RFC 8785: keys sorted, no spaces), made fast by a template
LEAF = ('{{"action":"deploy.{action}","chain":["user:alice"],"event":"verify","host":"host-{n}","jtis":["{jti}"],'
        '"metadata":{{"presentation_sha256":"{psha}"}},"on_behalf_of":"user:alice","outcome":"{outcome}",'
        '"principal":"agent:bot-{agent}","reason":null,"resource":"svc/{seq}","seq":{seq},'
        '"time":"2026-01-{day:02d}T{h:02d}:{m:02d}:{s:02d}.{us:06d}Z","version":"0.1.0"}}')


def fill(owner, log_ids: list[int], per_log: int, agents: int) -> None:
    """COPY (as the owner, whom row-level security does not bind) ``per_log`` events into each log,
    the logs' events interleaved in time, one millisecond apart."""
    import hashlib
    import random

    rng = random.Random(14)  # agents, actions and outcomes drawn independently of the host
    k = len(log_ids)
    with owner.cursor().copy("COPY agentctl_audit.events (log_id, seq, leaf, leaf_hash) FROM STDIN") as copy:
        for seq in range(1, per_log + 1):
            for n, log_id in enumerate(log_ids):
                i = seq * k + n
                ms, us = divmod(i, 1000)
                sec, ms = divmod(ms, 1000)
                leaf = LEAF.format(action=rng.randrange(7), n=n, jti=f"{i:032x}", psha=f"{i:064x}",
                                   outcome="deny" if rng.random() < 0.1 else "allow", agent=rng.randrange(agents), seq=seq,
                                   day=1 + sec // 86400, h=sec // 3600 % 24, m=sec // 60 % 60, s=sec % 60, us=ms * 1000 + us)
                copy.write_row((log_id, seq, leaf, hashlib.sha256(b"\x00" + leaf.encode()).digest()))


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--logs", type=int, default=4)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--url", help="the owner of an empty throwaway database")
    args = ap.parse_args()
    import psycopg

    from agentctl.audit.fleet import query_conn, query_store
    from agentctl.audit.note import verifier_key
    from agentctl.crypto import public_key
    from agentctl.audit.ship import enroll, init_store

    base = Path(tempfile.mkdtemp(prefix="agentctl-bench-fleet-"))
    os.chmod(base, 0o755)
    stop = lambda: None  # noqa: E731
    try:
        url = args.url
        if url is None:
            url, stop = start_cluster(base)
        init_store(url)
        owner = psycopg.connect(url, autocommit=True)
        keys = [verifier_key(f"host:bench-{n}", public_key(os.urandom(32))) for n in range(args.logs)]
        for n, key in enumerate(keys):
            role = enroll(url, key, role=f"bench_host_{n}", password=False).role
            owner.execute("INSERT INTO agentctl_audit.logs (origin, key, role) VALUES (%s, %s, %s)",
                          (f"agentctl.audit/bench{n}", key, role))
        owner.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_reader') "
                      "THEN CREATE ROLE bench_reader LOGIN; END IF; END $$")
        owner.execute("GRANT agentctl_audit_reader TO bench_reader")
        reader_url = url.replace("owner@", "bench_reader@", 1)

        defs = owner.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'agentctl_audit' "
                             "AND tablename = 'events' AND indexname <> 'events_pkey'").fetchall()
        t0 = time.perf_counter()
        for name, _ in defs:
            owner.execute(f"DROP INDEX agentctl_audit.{name}")
        log_ids = [r[0] for r in owner.execute("SELECT id FROM agentctl_audit.logs ORDER BY id").fetchall()]
        with owner.transaction():
            fill(owner, log_ids, args.events // args.logs, args.agents)
        for _, definition in defs:
            owner.execute(definition)
        owner.execute("VACUUM ANALYZE agentctl_audit.events")
        total = owner.execute("SELECT count(*) FROM agentctl_audit.events").fetchone()[0]
        size = owner.execute("SELECT pg_total_relation_size('agentctl_audit.events')").fetchone()[0]
        print(f"fill: {total:,} events in {args.logs} logs, {args.agents} agents ({total // args.agents:,} events each) "
              f"in {time.perf_counter() - t0:.1f} s; {size / total:.0f} bytes per event in PostgreSQL")

        agent = "agent:bot-7"
        reader = psycopg.connect(reader_url, autocommit=True)
        got = query_conn(reader, agent=agent, limit=20)
        times = [e["time"] for e in got]
        assert len(got) == 20 and all(e["principal"] == agent for e in got) and times == sorted(times, reverse=True), got[:2]
        newest = owner.execute("SELECT max(time) FROM agentctl_audit.events WHERE principal = %s", (agent,)).fetchone()[0]
        assert got[0]["time"] == newest

        def plan_of(**filters) -> str:
            from agentctl.audit import fleet as fleet_mod

            seen: list = []

            class Spy:  # catches the SQL query_conn sends, to EXPLAIN exactly that
                def cursor(self):
                    return self

                def execute(self, sql, params):
                    seen.append((sql, params))

                def fetchall(self):
                    return []

            fleet_mod.query_conn(Spy(), **filters)
            sql, params = seen[0]
            rows = reader.execute("EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY off) " + sql, params).fetchall()
            return " > ".join(r[0].strip().removeprefix("->").strip().split("  ")[0] for r in rows
                              if r[0].strip().startswith(("->", "Limit")))

        shapes = (("--agent, --limit 20 (the aim)", dict(agent=agent, limit=20)),
                  ("--agent --host, --limit 20", dict(agent=agent, host="host-1", limit=20)),
                  ("--action, --limit 20", dict(action="deploy.3", limit=20)),
                  ("--agent --outcome deny, --limit 20", dict(agent=agent, outcome="deny", limit=20)))
        results = {}
        for label, filters in shapes:
            query_conn(reader, **filters)  # warm
            ms = median_ms(lambda: query_conn(reader, **filters), args.runs)  # noqa: B023
            results[label] = ms
            print(f"query {label}: {ms:.2f} ms (median of {args.runs}, the query on an open connection); plan: {plan_of(**filters)}")
        connect = median_ms(lambda: psycopg.connect(reader_url).close(), args.runs)
        cold = []
        for _ in range(args.runs):  # the first query of a new server process (its catalog caches cold)
            c = psycopg.connect(reader_url, autocommit=True)
            t0 = time.perf_counter()
            query_conn(c, agent=agent, limit=20)
            cold.append((time.perf_counter() - t0) * 1000)
            c.close()
        first = statistics.median(cold)
        whole = median_ms(lambda: query_store(reader_url, agent=agent, limit=20), args.runs)
        print(f"query_store (connect, query, close) --agent --limit 20: {whole:.2f} ms: connecting {connect:.2f} ms "
              f"(unix socket, trust authentication), then the first query on the new connection {first:.2f} ms "
              "(the server process loads its catalog caches)")
        env = {**os.environ, "AGENTCTL_HOME": str(base / "home")}
        cmd = [sys.executable, "-m", "agentctl", "--json", "audit", "--from", reader_url, "--agent", agent, "--limit", "20"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode == 0:
            proc = median_ms(lambda: subprocess.run(cmd, capture_output=True, env=env, check=True), max(3, args.runs // 4))
            print(f"agentctl audit --from … --agent {agent} --limit 20 as a process: {proc:.0f} ms (process start and imports included)")
        else:
            print(f"agentctl audit --from as a process failed: {r.stderr.strip()[:200]}")
        now = results[shapes[0][0]]
        print(f"query/aim: {now / AIM_MS:.3f} (aim <= {AIM_MS:.0f} ms: {'met' if now <= AIM_MS else 'not met'}); "
              f"first query on a new connection/aim: {first / AIM_MS:.2f}; query_store/aim: {whole / AIM_MS:.2f}")
        reader.close()
        owner.close()
    finally:
        stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
