"""Audit log speed, side by side with the floors it cannot beat.

    .venv/bin/python bench/audit.py [--events 1000000] [--appends 2000] [--dir DIR] [--profile]
        [--only-appends] [--against CHECKOUT] [--rounds 2]

1. Durable appends per second (``synchronous = FULL``, as agentctl runs it; each caller returns only
   after the fsync that covers its event), from one process and from four at once (group commit: a
   caller that finds the lock taken is committed by its holder), against the disk's own floor measured
   in the same run: ``write`` + ``fsync`` of a small record in the same directory, and a bare SQLite WAL
   insert of one leaf a transaction. Aims: >= 2,000/s from one process, >= 5,000/s from four; as the
   disk's fsync rate swings through the day, read the four-process figure as a multiple of the fsync
   floor (above 1.0 only by grouping commits).
2. ``AuditLog.query`` for one agent with ``--limit 20`` at N/10 and N events (median of repeated
   queries; other filter shapes for comparison). Aim: < 10 ms.
3. ``AuditLog.verify`` at N events against raw SHA-256 of the same leaves (a Python loop of
   ``sha256(0x00 || leaf)`` over leaves already in memory), and against the whole RFC 6962 tree hashed in
   memory (leaves and interior nodes: what any verifier of a root must compute). Aim: within 2.5x of the
   raw leaf hashing, in wall time, with the CPU time of all its processes beside it: on Linux a large
   log is swept by two processes (agentctl/audit/sweep.py), so the wall figure counts two cores
   against the raw loop's one; the same verify kept in one process is shown too.
   (bench/audit_size.py measures the bytes per event.)
4. ``AuditLog.prove`` at N events: open, prove a random event, close, as ``audit prove`` does (median);
   and one ``agentctl audit prove`` process for the whole command. Aim: < 50 ms.

The log is built in a temporary directory (``--dir`` to choose the file system; the default is the
system's temporary directory) with ``AuditLog.append`` of 10,000 events at a time and a checkpoint
after every batch. ``--events`` scales it down. Nothing here is a test: it prints figures and ratios
measured in this one run and never fails.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from agentctl import crypto  # noqa: E402
from agentctl.audit import AuditLog, Event  # noqa: E402
from agentctl.home import Home  # noqa: E402

APPEND_AIM, APPEND4_AIM, QUERY_AIM, VERIFY_AIM, PROVE_AIM = 2000.0, 5000.0, 0.010, 2.5, 0.050
AGENTS = [f"agent:bot-{i}" for i in range(50)]
HOST, SEED = "host:bench", bytes(range(32))


def event(rnd: random.Random, i: int) -> Event:
    """A verify verdict like the ones agentctl records, for one of 50 agents."""
    ok = rnd.random() < 0.8
    return Event("verify", "allow" if ok else "deny", principal=rnd.choice(AGENTS), on_behalf_of="user:alice",
                 chain=("user:alice", "agent:deployer"), action=rnd.choice(("deploy.staging", "deploy.production", "pull_request.create")),
                 resource=f"acme/repo-{rnd.randrange(200)}", reason=None if ok else "scope_denied", jtis=(f"{i:022d}",),
                 metadata={"type": "action", "scope": "deploy.*:acme/*", "detail": None if ok else "the token is for another action"})


def say(text: str = "") -> None:
    print(text, flush=True)


def aim(ok: bool) -> str:
    return "meets the aim" if ok else "MISSES the aim"


# --- 1. durable appends ---------------------------------------------------------------------------

WRITER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from agentctl.audit import AuditLog, Event
from agentctl.home import Home
commits = [0]
real = AuditLog._transaction

def counted(self):  # every transaction an append runs ends in one commit (one fsync)
    commits[0] += 1
    return real(self)

AuditLog._transaction = counted
log = AuditLog.open(Home(sys.argv[1]))
commits[0] = 0
print("ready", flush=True)
sys.stdin.readline()
waits = []
for i in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    log.append([Event("verify", "allow", principal="agent:w", action="deploy.staging", resource=f"acme/r{i}", jtis=(f"{i:022d}",))])
    waits.append(time.perf_counter() - t0)
log.close()
print(json.dumps({"waits": waits, "commits": commits[0]}), flush=True)
"""


def fsync_floor(directory: Path, n: int) -> float:
    """write + fsync of a 512-byte record, per second, in ``directory``."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 512)
            os.fsync(fd)
        return n / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()


def sqlite_floor(directory: Path, n: int) -> float:
    """Bare SQLite: WAL, synchronous = FULL, one INSERT of a leaf-sized row per transaction."""
    path = directory / "floor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, leaf TEXT, h BLOB)")
    leaf = "x" * 420
    t0 = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (i + 1, leaf, os.urandom(32)))
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    conn.close()
    for p in directory.glob("floor.db*"):
        p.unlink()
    return rate


def appends(home: Path, processes: int, n: int, code: Path = ROOT) -> tuple[float, list[float], int]:
    """``processes`` processes appending ``n`` events in all, one an append, with ``code``'s agentctl
    (this checkout, or another given with --against): (appends/s, each append's wait, commits)."""
    sys.path.insert(0, str(code))
    try:
        AuditLog.open(Home(home)).close()
    finally:
        sys.path.remove(str(code))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(home), str(n // processes), str(code)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    for p in procs:
        assert p.stdout.readline() == "ready\n"
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    waits, commits = [], 0
    for p in procs:
        out, _ = p.communicate()
        got = json.loads(out)
        waits += got["waits"]
        commits += got["commits"]
    rate = len(waits) / (time.perf_counter() - t0)
    log = AuditLog.open(Home(home))
    assert log.size == len(waits) and log.verify({}).ok
    log.close()
    return rate, waits, commits


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def bench_appends(directory: Path, n: int, rounds: int = 2, against: Path | None = None) -> None:
    say(f"1. durable appends, each caller waiting for the fsync that covers its event, in {directory}")
    if against is not None:
        say(f"   (each round also runs the code at {against} for comparison: 'other')")
    q = lambda w: f"p50 {ms(statistics.median(w))}, p99 {ms(sorted(w)[int(len(w) * 0.99)])}, max {ms(max(w))}"  # noqa: E731
    for r in range(rounds):  # interleaved: each round's figures are measured within seconds of each other
        disk = fsync_floor(directory, max(200, n // 4))
        bare = sqlite_floor(directory, max(200, n // 4))
        rows = []
        for label, code in (("this", ROOT), *((("other", against),) if against is not None else ())):
            for procs in (1, 4):
                rate, w, commits = appends(directory / f"r{r}-{label}-{procs}", procs, n, code)
                rows.append((label, procs, rate, w, commits))
        disk2 = fsync_floor(directory, max(200, n // 4))
        floor = (disk + disk2) / 2
        say(f"   round {r + 1}: floor write+fsync {disk:6.0f} /s before, {disk2:6.0f} /s after; bare SQLite WAL insert {bare:6.0f} /s")
        one = {label: rate for label, procs, rate, _, _ in rows if procs == 1}
        for label, procs, rate, w, commits in rows:
            say(f"     {label:<5} AuditLog.append, {procs} process{'es' if procs > 1 else '  '}  {rate:7.0f} /s   {rate / floor:.2f}x the fsync floor, "
                f"{rate / one[label]:.2f}x 1 process, {len(w) / max(commits, 1):.2f} events a commit   ({q(w)})")
        this1, this4 = one["this"], next(rate for label, procs, rate, _, _ in rows if label == "this" and procs == 4)
        say(f"     aim >= {APPEND_AIM:.0f}/s from 1 process: {aim(this1 >= APPEND_AIM)}; >= {APPEND4_AIM:.0f}/s from 4: {aim(this4 >= APPEND4_AIM)}"
            + ("" if floor * 4 >= APPEND4_AIM else f" (this disk syncs only {floor:.0f} times a second now: 4 waiting callers a commit give at most {4 * floor:.0f}/s)"))
    say()


# --- the big log ----------------------------------------------------------------------------------


def build(log: AuditLog, start: int, stop: int, rnd: random.Random) -> float:
    """Append events start+1..stop in batches of 10,000, a checkpoint after each; seconds taken."""
    t0 = time.perf_counter()
    clock = [1_800_000_000.0 + start * 0.01]

    def tick() -> float:
        clock[0] += 0.01  # 100 events a second, so time windows mean something
        return clock[0]

    i = start
    while i < stop:
        k = min(10_000, stop - i)
        log.append([event(rnd, i + j) for j in range(k)], tick)
        log.add_checkpoint(HOST, SEED, tick)
        i += k
    return time.perf_counter() - t0


def timeit(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_queries(log: AuditLog, size: int) -> None:
    newest = json.loads(log.event(size)[0])["time"]
    from agentctl.clock import parse_rfc3339

    t_new = parse_rfc3339(newest)
    span = size * 0.01  # build() spaces events 10 ms apart
    shapes = [
        ("one agent, --limit 20", dict(agent="agent:bot-7", limit=20)),
        ("one agent + outcome deny, --limit 20", dict(agent="agent:bot-7", outcome="deny", limit=20)),
        ("one action, --limit 20", dict(action="deploy.production", limit=20)),
        ("a window in the middle (--since, --until), --limit 20", dict(since=t_new - span / 2, until=t_new - span / 4, limit=20)),
        ("one agent, --since 10 minutes before the newest", dict(agent="agent:bot-7", since=t_new - 600, limit=20)),
        ("one agent, --until before the first event", dict(agent="agent:bot-7", until=t_new - 2 * span, limit=20)),
        ("an agent with no events, --limit 20", dict(agent="agent:nobody", limit=20)),
    ]
    for label, kw in shapes:
        t = timeit(lambda kw=kw: log.query(**kw), 51)
        n = len(log.query(**kw))
        say(f"   {size:>9,} events  {label:<52} {ms(t):>10}  ({n} rows)")
    t = timeit(lambda: log.query(agent="agent:bot-7", limit=20), 51)
    say(f"   {size:>9,} events  aim < {ms(QUERY_AIM)} for one agent, --limit 20: {aim(t < QUERY_AIM)}")


def bench_verify(log: AuditLog, size: int, profile: bool) -> None:
    keys = {HOST: [crypto.public_key(SEED)]}
    leaves = [leaf.encode() for leaf in log.export()]
    sha = hashlib.sha256

    def raw() -> None:
        for leaf in leaves:
            sha(b"\x00" + leaf).digest()

    def tree() -> None:
        level = [sha(b"\x00" + leaf).digest() for leaf in leaves]
        while len(level) > 1:
            level = [sha(b"\x01" + a + b).digest() for a, b in zip(level[0::2], level[1::2])]

    from agentctl.audit import codec

    zds, dobj, wbits = codec.of(log.conn).load(), zlib.decompressobj, codec.WBITS

    def read() -> None:  # the stored bodies, inflated back into the leaves (schema 3 keeps them deflated)
        cur = log.conn.execute("SELECT seq, body FROM entries ORDER BY seq")
        while rows := cur.fetchmany(16384):
            [dobj(wbits, zds[b[0]]).decompress(b[1:]) for _, b in rows]

    from agentctl.audit import sweep

    def one_process():  # the sweep kept in this process, as where it may not fork
        can, sweep._can_fork = sweep._can_fork, lambda: False
        try:
            return log.verify(keys)
        finally:
            sweep._can_fork = can

    cores = "2 processes" if args_forks(sweep, size) else "1 process (no fork here)"
    times: dict[str, list[float]] = {"raw": [], "tree": [], "read": [], "verify": [], "one": []}
    cpu: dict[str, list[float]] = {"raw": [], "verify": [], "one": []}
    report = None
    for _ in range(3):  # interleaved, best of three: a busy moment hits each alike
        for name, fn in (("raw", raw), ("tree", tree), ("read", read), ("verify", lambda: log.verify(keys)), ("one", one_process)):
            c0 = cpu_seconds()
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if name in cpu:
                cpu[name].append(cpu_seconds() - c0)
            if name == "verify":
                report = out
    best = {k: min(v) for k, v in times.items()}
    cbest = {k: min(v) for k, v in cpu.items()}
    assert report is not None and report.ok, report
    say(f"   raw SHA-256 of the {size:,} leaves in memory       {best['raw']:7.2f} s   (CPU {cbest['raw']:.2f} s)")
    say(f"   RFC 6962 tree of them in memory (leaves + nodes)   {best['tree']:7.2f} s   {best['tree'] / best['raw']:.2f}x raw")
    say(f"   reading and inflating them from SQLite, no hashing {best['read']:7.2f} s   {best['read'] / best['raw']:.2f}x raw")
    say(f"   AuditLog.verify ({report.checkpoints} checkpoints), {cores:<12} {best['verify']:7.2f} s   "
        f"{best['verify'] / best['raw']:.2f}x raw wall; CPU {cbest['verify']:.2f} s = {cbest['verify'] / cbest['raw']:.2f}x raw's CPU (all processes)")
    say(f"   AuditLog.verify in one process                     {best['one']:7.2f} s   "
        f"{best['one'] / best['raw']:.2f}x raw, {best['one'] / best['tree']:.2f}x the in-memory tree; CPU {cbest['one'] / cbest['raw']:.2f}x raw's")
    floor = best["read"] + best["tree"]
    say(f"   floor in one thread: reading them + the tree        {floor:7.2f} s   {floor / best['raw']:.2f}x raw "
        f"(verify in one process is {best['one'] / floor:.2f}x this floor)")
    say(f"   aim within {VERIFY_AIM}x of raw hashing (wall, {cores}): {aim(best['verify'] <= VERIFY_AIM * best['raw'])}"
        + ("" if floor <= VERIFY_AIM * best["raw"] else f" (in one thread the aim is below the floor: reading and hashing the tree alone take {floor / best['raw']:.1f}x)"))
    if profile or best["verify"] > VERIFY_AIM * best["raw"]:
        prof = cProfile.Profile()
        prof.runcall(one_process)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(8)
        say("   where verify's time goes in one process (cProfile, tottime):")
        for line in buf.getvalue().splitlines():
            if line.strip() and ("{" in line or ".py" in line):
                say("     " + line.strip())


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (the sweep's forked one)."""
    try:
        import resource
    except ImportError:  # Windows: no children to count (the sweep forks only on Linux)
        return time.process_time()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def args_forks(sweep, size: int) -> bool:
    return size >= sweep._FORK_AT and sweep._can_fork()


def bench_prove(home: Path, size: int) -> None:
    rnd = random.Random(7)
    seqs = [rnd.randrange(1, size + 1) for _ in range(51)]
    it = iter(seqs)

    def prove() -> None:
        log = AuditLog.open(Home(home))
        log.prove(next(it))
        log.close()

    t = timeit(prove, len(seqs))
    say(f"   open + AuditLog.prove + close, median of {len(seqs)}         {ms(t):>10}   aim < {ms(PROVE_AIM)}: {aim(t < PROVE_AIM)}")
    agentctl = Path(sys.executable).parent / "agentctl"
    if agentctl.exists():
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
        runs = []
        for seq in seqs[:5]:
            t0 = time.perf_counter()
            subprocess.run([str(agentctl), "--home", str(home), "--json", "audit", "prove", str(seq)], env=env,
                           stdout=subprocess.DEVNULL, check=True)
            runs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor = time.perf_counter() - t0
        say(f"   one 'agentctl audit prove' process, median of 5     {ms(statistics.median(runs)):>10}   (python -c pass: {ms(floor)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="size of the big log (default 1,000,000)")
    ap.add_argument("--appends", type=int, default=2000, help="durable appends to time (default 2,000)")
    ap.add_argument("--dir", type=Path, default=None, help="where to build the logs (default: a temporary directory)")
    ap.add_argument("--profile", action="store_true", help="also profile verify")
    ap.add_argument("--only-appends", action="store_true", help="run section 1 (durable appends) alone")
    ap.add_argument("--against", type=Path, default=None, help="another checkout of agentctl whose appends run beside this one's")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of section 1 (default 2)")
    args = ap.parse_args()
    if args.events < 20_000:
        ap.error("--events must be at least 20000")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentctl-bench-audit-", dir=args.dir) as tmp:
        directory = Path(tmp)
        say(f"agentctl audit log benchmark: {args.events:,} events, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} CPUs")
        say()
        bench_appends(directory, args.appends, args.rounds, args.against)
        if args.only_appends:
            return

        home = directory / "big"
        log = AuditLog.open(Home(home))
        rnd = random.Random(1)
        small = args.events // 10
        say(f"   (building {small:,} events: {build(log, 0, small, rnd):.1f} s)")
        say("2. queries, AuditLog.query, median of 51")
        bench_queries(log, small)
        say(f"   (building {args.events:,} events: {build(log, small, args.events, rnd):.1f} s more; "
            f"database {sum(p.stat().st_size for p in home.glob('audit.db*')) / 1e6:.0f} MB)")
        bench_queries(log, args.events)
        say()
        say(f"3. verify at {args.events:,} events, best of 3, interleaved")
        bench_verify(log, args.events, args.profile)
        log.close()
        say()
        say(f"4. prove at {args.events:,} events")
        bench_prove(home, args.events)
    say()
    say(f"(whole run: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
