"""Many processes appending to one audit log at once, and a writer killed mid-append.

Real processes (``python -c``), started together on a go signal written to their stdin; nothing here
sleeps. The one timing assertion is a fairness property, not a speed benchmark: while eight writers
compete, no single append waits a second or more (a writer that sleeps in SQLite's busy handler instead
of queueing on the lock can starve for seconds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from agentctl import merkle
from agentctl.audit import AuditLog, Event
from agentctl.home import Home

ROOT = Path(__file__).resolve().parent.parent

WRITER = r"""
import json, sys, time
from agentctl.audit import AuditLog, Event
from agentctl.home import Home

home, count, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = AuditLog.open(Home(home))
print("ready", flush=True)
sys.stdin.readline()  # the go signal
seqs, waits = [], []
for i in range(count):
    t0 = time.monotonic()
    seqs += log.append([Event("verify", "allow", principal=name, action="deploy.x", resource=f"r/{i}", metadata={"i": i})])
    waits.append(time.monotonic() - t0)
log.close()
print(json.dumps({"seqs": seqs, "max": max(waits), "median": sorted(waits)[len(waits) // 2]}), flush=True)
"""

LOOPER = r"""
import itertools, json, sys
from agentctl.audit import AuditLog, Event
from agentctl.home import Home

log = AuditLog.open(Home(sys.argv[1]))
for k in itertools.count():
    events = [Event("sign", "ok", principal="agent:looper", metadata={"k": k, "j": j}) for j in range(1 if k % 2 == 0 else 3000)]
    if len(events) > 1:
        print("big", flush=True)  # and straight into the transaction
    seqs = log.append(events)
    print(json.dumps(seqs[-1]), flush=True)
"""


def spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def lock_is_held(home: Path) -> bool:
    import fcntl

    fd = os.open(home / "audit.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def recomputed_root(log: AuditLog) -> bytes:
    return merkle.root([merkle.leaf_hash(leaf.encode()) for leaf in log.export()])


def test_eight_writers_at_once_lose_nothing_and_wait_fairly(home):
    writers, count = 8, 200
    procs = [spawn(WRITER, str(home), str(count), f"agent:w{i}") for i in range(writers)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.stderr.read()
        for p in procs:  # all of them opened the log; now they append together
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    every = [s for r in results for s in r["seqs"]]
    assert len(every) == len(set(every)) == writers * count
    assert sorted(every) == list(range(1, writers * count + 1))
    for r in results:
        assert r["seqs"] == sorted(r["seqs"])  # each writer's own events in its order
    worst = max(r["max"] for r in results)
    assert worst < 1.0, f"a writer waited {worst:.2f} s for one append (medians {[round(r['median'], 4) for r in results]})"

    log = AuditLog.open(Home(home))
    report = log.verify({})
    assert report.ok and report.size == writers * count, report
    assert log.size == writers * count
    by_writer: dict[str, list[int]] = {}
    for leaf in log.export():
        doc = json.loads(leaf)
        by_writer.setdefault(doc["principal"], []).append(doc["metadata"]["i"])
    assert by_writer == {f"agent:w{i}": list(range(count)) for i in range(writers)}
    cr = merkle.CompactRange.from_bytes(bytes.fromhex(log.meta("frontier")))
    assert cr.size == writers * count and cr.root() == recomputed_root(log)
    log.close()


def test_a_writer_killed_mid_append_leaves_a_log_that_verifies_and_continues(home):
    p = spawn(LOOPER, str(home))
    lines = []
    try:
        while True:
            lines.append(p.stdout.readline())
            assert lines[-1], p.stderr.read()
            if lines[-1] == "big\n" and len(lines) > 10:
                p.send_signal(signal.SIGKILL)  # while it builds and commits a transaction of 3000 events
                break
        lines += p.stdout.readlines()  # whatever it printed before the signal landed
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    last = max(json.loads(x) for x in lines if x != "big\n")
    pending = 3000 if lines[-1] == "big\n" else 1  # the append it was in when killed

    log = AuditLog.open(Home(home))
    size = log.size
    assert size in (last, last + pending), (size, last, pending)  # the whole transaction or none of it
    report = log.verify({})
    assert report.ok and report.size == size, report
    assert log.append([Event("verify", "deny", reason="expired")]) == [size + 1]
    assert log.verify({}).ok
    assert bytes.fromhex(log.meta("frontier"))[:8] == (size + 1).to_bytes(8, "big")
    cr = merkle.CompactRange.from_bytes(bytes.fromhex(log.meta("frontier")))
    assert cr.root() == recomputed_root(log)
    log.close()


def test_a_writer_killed_while_holding_the_lock_does_not_block_the_next(home):
    """SIGSTOP a writer inside its transaction, start another, then SIGKILL the first: the second
    appends as soon as the kernel drops the dead writer's lock."""
    p = spawn(LOOPER, str(home))
    q = None
    try:
        for _ in range(50):  # stop it inside a big append's transaction: until it is seen holding the lock
            while p.stdout.readline() != "big\n":
                pass
            p.send_signal(signal.SIGSTOP)
            if lock_is_held(home):
                break
            p.send_signal(signal.SIGCONT)
        else:
            raise AssertionError("never caught the writer holding the lock")
        q = spawn(WRITER, str(home), "5", "agent:next")
        assert q.stdout.readline() == "ready\n", q.stderr.read()
        q.stdin.write("go\n")
        q.stdin.flush()
        p.send_signal(signal.SIGKILL)
        out, err = q.communicate(timeout=120)
        assert q.returncode == 0, err
        seqs = json.loads(out)["seqs"]
    finally:
        for proc in (p, q):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    log = AuditLog.open(Home(home))
    assert seqs == list(range(seqs[0], seqs[0] + 5)) and seqs[-1] == log.size
    assert log.verify({}).ok
    log.close()
