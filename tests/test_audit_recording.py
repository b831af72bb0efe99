"""The library's recorders (agentctl.recording): the protocol, the home's SQLite log, none, memory."""

from __future__ import annotations

import pytest

from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.errors import OperationalError
from agentctl.events import Event
from agentctl.recording import HomeRecorder, MemoryRecorder, NoRecorder, Recorder, audit_key, verify_home


def test_the_protocol_is_abstract_and_the_values_are_recorders():
    with pytest.raises(TypeError):
        Recorder()
    assert all(isinstance(r, Recorder) for r in (NoRecorder(), MemoryRecorder()))


def test_memory_keeps_events_in_order_and_none_keeps_nothing():
    mem = MemoryRecorder()
    a, b = Event("verify", "allow", principal="agent:a"), Event("verify", "deny", reason="expired")
    mem.record(a)
    mem.record(b, a)
    assert mem.events == [a, b, a]
    with pytest.raises(TypeError):
        mem.record({"event": "verify"})
    assert NoRecorder().record(a, b) is None


def test_the_home_recorder_appends_with_the_context_clock_and_checkpoints(home):
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("checkpoint_every = 2\nkeystore = \"file\"\n")
    ctx = Context.for_home(home, clock=FixedClock(1_800_000_000))
    rec = HomeRecorder(ctx)
    assert not (home / "audit.db").exists()  # made only when there is something to record
    rec.record(Event("verify", "allow", principal="agent:a"))
    rec.record(Event("verify", "deny", principal="agent:a", reason="expired"))
    report = verify_home(ctx)
    assert report.ok and report.checkpoints == 1
    from agentctl.audit import AuditLog

    log = AuditLog.open_existing(home / "audit.db")
    events = list(reversed(log.query()))
    log.close()
    assert [e["event"] for e in events] == ["verify", "verify", "keygen", "checkpoint"]
    assert events[0]["time"] == "2027-01-15T08:00:00.000000Z"
    assert audit_key(ctx).startswith(events[2]["principal"] + "+")


def test_a_broken_log_fails_the_recorder_before_anything_is_done(home):
    home.mkdir(mode=0o700)
    (home / "audit.db").write_bytes(b"")
    with pytest.raises(OperationalError, match="is empty"):
        HomeRecorder(Context.for_home(home))
    assert (home / "audit.db").read_bytes() == b""
