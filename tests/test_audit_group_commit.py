"""Group commit of audit appends (agentctl.audit.spool): a caller that finds the append lock taken
leaves its events in a spool file, and the lock's holder commits them with its own.

The protocol is tested from the side of what can go wrong: a leader that dies after its commit and
before answering (nothing is committed twice), a waiting caller that dies (its events are never
committed), a request caught half-written (left alone), an event that cannot be encoded (refused
alone). Real processes show a waiter answered by another process's commit, and killed while waiting.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl import merkle
from agentctl.audit import AuditLog, Event
from agentctl.audit import group
from agentctl.audit import spool
from agentctl.clock import FixedClock
from agentctl.errors import OperationalError
from agentctl.home import Home

ROOT = Path(__file__).resolve().parent.parent
CLOCK = FixedClock(1_800_000_000)


def ev(name: str, i: int = 0) -> Event:
    return Event("verify", "allow", principal=name, action="deploy.x", resource=f"r/{i}", metadata={"i": i})


def waiting(log: AuditLog, *events: Event) -> spool.SpoolFile:
    """A request written as a caller that found the lock taken writes it (and then waits)."""
    f = log._group.file()
    f.request(b"".join(group.encoded(group.doc(e, CLOCK, "host")) + b"\n" for e in events))
    return f


def leaves(log: AuditLog) -> list[dict]:
    return [json.loads(leaf) for leaf in log.export()]


def intact(log: AuditLog) -> None:
    assert log.verify({}).ok
    cr = merkle.CompactRange.from_bytes(bytes.fromhex(log.meta("frontier")))
    assert cr.size == log.size and cr.root() == merkle.root([merkle.leaf_hash(x.encode()) for x in log.export()])


@pytest.fixture
def log(home):
    log = AuditLog.open(Home(home))
    yield log
    log.close()


def test_the_holder_commits_waiting_requests_after_its_own_in_one_transaction(log):
    a = waiting(log, ev("agent:a", 1), ev("agent:a", 2))
    b = waiting(log, ev("agent:b"))
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert a.answer() == [2, 3] and b.answer() == [4]  # answered, in the order they came
    assert [(d["seq"], d["principal"]) for d in leaves(log)] == [(1, "agent:leader"), (2, "agent:a"), (3, "agent:a"), (4, "agent:b")]
    assert [d["metadata"]["i"] for d in leaves(log)[1:3]] == [1, 2]
    assert spool.parse_record(log.meta("group")) == {(a.name, a.reqno): (2, 2), (b.name, b.reqno): (4, 1)}
    assert log.append([ev("agent:leader")], CLOCK) == [5]  # answered requests are never taken again
    assert log.size == 5
    intact(log)


def test_a_leader_dead_after_its_commit_leaves_requests_answered_by_the_next_not_committed_twice(log, monkeypatch):
    a = waiting(log, ev("agent:a"))
    with monkeypatch.context() as m:  # the leader commits, then dies before it answers anyone
        m.setattr(spool.Taken, "finish", lambda self, answer: self.release())
        assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert log.size == 2 and a.answer() is None
    assert log.append([ev("agent:next")], CLOCK) == [3]  # the next leader answers from the group record
    assert a.answer() == [2]
    assert [d["principal"] for d in leaves(log)] == ["agent:leader", "agent:a", "agent:next"]
    intact(log)


def test_a_leader_dead_before_its_commit_leaves_the_request_to_its_writer(log, monkeypatch):
    a = waiting(log, ev("agent:a"))

    def broken(self, *args, **kw):
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(group.Inserter, "finish", broken)
        with pytest.raises(OperationalError):
            log.append([ev("agent:leader")], CLOCK)
    assert log.size == 0 and a.answer() is None  # rolled back; unanswered
    assert log.append([ev("agent:next")], CLOCK) == [1]
    assert a.answer() == [2]
    intact(log)


def test_a_dead_waiters_request_is_removed_and_never_committed(log):
    a = waiting(log, ev("agent:dead"))
    os.close(a.fd)  # its process is gone: the kernel dropped its lock
    log._group.files.remove(a)
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert not a.path.exists() and log.size == 1
    assert [d["principal"] for d in leaves(log)] == ["agent:leader"]


def test_a_half_written_request_is_left_to_its_writer(log):
    a = waiting(log, ev("agent:a"))
    os.pwrite(a.fd, b"X", a.end - 2)  # a byte of the payload not yet what its CRC covers
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert a.answer() is None and log.size == 1


def test_a_withdrawn_request_is_not_taken(log):
    a = waiting(log, ev("agent:a"))
    a.withdraw()
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert log.size == 1 and a.answer() == "withdrawn"


def test_a_request_that_cannot_be_encoded_is_refused_alone(log):
    bad = log._group.file()
    bad.request(b'{"event": "verify", "metadata": {"x": "\\ud800"}}\n')  # a lone surrogate, escaped
    good = waiting(log, ev("agent:good"))
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert isinstance(bad.answer(), str) and "cannot be encoded" in bad.answer()
    assert good.answer() == [2] and log.size == 2
    intact(log)


def test_the_spool_reuses_one_file_per_waiting_caller(log):
    a = waiting(log, ev("agent:a"))
    log.append([ev("agent:leader")], CLOCK)
    log._group.free.append(a)
    b = waiting(log, ev("agent:a", 2))
    assert b is a and b.reqno == 2
    log.append([ev("agent:leader")], CLOCK)
    assert a.answer() == [4]
    assert [p.name for p in a.path.parent.iterdir() if p.name != spool.GATE] == [a.name]
    log.close()
    assert not a.path.exists()


# --- real processes -------------------------------------------------------------------------------

WAITER = r"""
import json, sys
from agentctl.audit import AuditLog, Event
from agentctl.home import Home
log = AuditLog.open(Home(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
seqs = log.append([Event("verify", "allow", principal="agent:waiter", action="deploy.x", resource="r/1")])
print(json.dumps(seqs), flush=True)
log.close()
"""


def spawn(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def wait_for_request(home: Path) -> Path:
    """The spool file of the waiting process, once its request is complete (it then waits on the lock)."""
    directory = home / spool.SPOOL_DIR
    for _ in range(10_000_000):
        for p in directory.glob("*.ev") if directory.exists() else ():
            fd = os.open(p, os.O_RDONLY)
            try:
                if spool._request(fd) is not None:
                    return p
            finally:
                os.close(fd)
    raise AssertionError("the waiter never spooled its request")


def hold_lock(home: Path) -> int:
    fd = os.open(home / "audit.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_waiting_process_is_answered_by_the_holders_commit(home):
    log = AuditLog.open(Home(home))
    p = spawn(WAITER, str(home))
    try:
        assert p.stdout.readline() == "ready\n", p.stderr.read()
        lock = hold_lock(home)  # this process holds the append lock: the waiter must spool
        p.stdin.write("go\n")
        p.stdin.flush()
        wait_for_request(home)
        assert log.size == 0
        os.close(lock)
        assert log.append([ev("agent:holder")], CLOCK) in ([1], [2])
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert sorted([json.loads(out)[0], *[d["seq"] for d in leaves(log) if d["principal"] == "agent:holder"]]) == [1, 2]
    assert log.size == 2
    intact(log)
    log.close()


def test_a_process_killed_while_waiting_leaves_nothing_committed(home):
    log = AuditLog.open(Home(home))
    p = spawn(WAITER, str(home))
    try:
        assert p.stdout.readline() == "ready\n", p.stderr.read()
        lock = hold_lock(home)
        p.stdin.write("go\n")
        p.stdin.flush()
        path = wait_for_request(home)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        os.close(lock)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert log.append([ev("agent:holder")], CLOCK) == [1]
    assert log.size == 1 and not path.exists()  # its caller never returned: its event is not recorded
    assert [d["principal"] for d in leaves(log)] == ["agent:holder"]
    intact(log)
    log.close()


def test_the_leader_holds_the_gate_until_it_has_answered_and_frees_it_after(log, monkeypatch):
    a = waiting(log, ev("agent:a"))  # (makes the spool, and so the gate)
    gate = os.open(a.path.parent / spool.GATE, os.O_RDWR)
    seen = []
    real = spool.Taken.finish

    def finish(self, answer):  # a waiting caller that looks now must sleep: the gate is held
        try:
            fcntl.flock(gate, fcntl.LOCK_SH | fcntl.LOCK_NB)
            seen.append("open")
        except BlockingIOError:
            seen.append("held")
        real(self, answer)

    monkeypatch.setattr(spool.Taken, "finish", finish)
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert seen == ["held"] and a.answer() == [2]
    fcntl.flock(gate, fcntl.LOCK_SH | fcntl.LOCK_NB)  # open again once it returned
    os.close(gate)


# --- the spooled leaf, not encoded twice ------------------------------------------------------------

SPLICE_CASES = [
    {},
    {"time": "2020-01-01T00:00:00Z", "x": ',"time":"', "y": {"time": "nested", "z": 1}},
    {"a": [{"time": "t"}, ',"time":"x'], "quote": '"\\,"time":"', "ctl": "\x01\n", "uni": "é☃𝄞"},
]


@pytest.mark.parametrize("metadata", SPLICE_CASES)
def test_a_spooled_line_spliced_with_its_seq_is_the_canonical_json_of_the_event(metadata):
    d = group.doc(Event("verify", "allow", principal="agent:a", action="deploy.x", resource=',"time":"r',
                        reason='"time":"', metadata=metadata), CLOCK, "host")
    line = group.encoded(d)
    full = {**json.loads(line), "seq": 12345}
    assert group.spliced(line, full) == group.canonical_json(full)


def test_a_spooled_line_that_is_not_a_prepared_event_is_encoded_afresh(log):
    odd = log._group.file()
    odd.request(b'{"event":"verify","extra":1,"time":"2020-01-01T00:00:00Z"}\n')  # not a prepared event's keys
    assert group.spliced(b'{"event":"verify","extra":1,"time":"x"}', {"event": "verify", "extra": 1, "time": "x", "seq": 1}) is None
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert odd.answer() == [2]
    assert log.event(2)[0] == group.canonical_json({"event": "verify", "extra": 1, "seq": 2, "time": "2020-01-01T00:00:00Z"}).decode()
    intact(log)


def test_the_kept_lock_descriptor_is_unlocked_after_every_append_and_closed_after_a_failure(log, home, monkeypatch):
    def free() -> bool:
        fd = os.open(home / "audit.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    assert log.append([ev("agent:a")], CLOCK) == [1]
    kept = list(log._lock_fds)
    assert len(kept) == 1 and free()
    assert log.append([ev("agent:a")], CLOCK) == [2] and log._lock_fds == kept  # the same one, reused
    with monkeypatch.context() as m:
        m.setattr(group.Inserter, "finish", lambda self: (_ for _ in ()).throw(OSError(5, "Input/output error")))
        with pytest.raises(OperationalError):
            log.append([ev("agent:b")], CLOCK)
    assert free() and log._lock_fds == []  # the failed append's descriptor was closed, not kept
    assert log.append([ev("agent:c")], CLOCK) == [3]


def test_a_dead_writers_answered_file_is_removed_by_a_sweep_and_a_live_ones_kept(log):
    dead, alive = waiting(log, ev("agent:dead")), waiting(log, ev("agent:alive"))
    assert log.append([ev("agent:leader")], CLOCK) == [1]
    assert dead.answer() == [2] and alive.answer() == [3]
    os.close(dead.fd)  # its process is gone after its answer
    log._group.files.remove(dead)
    for _ in range(spool.SWEEP_EVERY):
        log.append([ev("agent:leader")], CLOCK)
    assert not dead.path.exists() and alive.path.exists()
    assert log.size == 3 + spool.SWEEP_EVERY
    intact(log)
