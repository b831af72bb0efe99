"""What one append keeps between transactions and works out once: the frontier and dictionaries kept
while no other connection commits, the index functions answering the inserted row from the append's
own event, and the event's time text. Each is checked against what a fresh reader computes."""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agentctl.audit import AuditLog, Event, codec
from agentctl.clock import rfc3339
from agentctl.errors import OperationalError
from agentctl.home import Home

SEED = bytes(range(32))


def ev(n: int, **kw) -> Event:
    base = dict(event="verify", outcome="allow" if n % 3 else "deny", principal=f"agent:a{n % 5}", action=f"deploy.s{n % 2}",
                resource=f"api/{n}")
    base.update(kw)
    return Event(**base)


def open_log(home: Path) -> AuditLog:
    return AuditLog.open(Home(home))


def first_bytes(home: Path) -> list[int]:
    """The dictionary each stored body names (its first byte), in log order."""
    conn = sqlite3.connect(home / "audit.db")
    try:
        return [bytes(b)[0] for (b,) in conn.execute("SELECT body FROM entries ORDER BY seq")]
    finally:
        conn.close()


def indexes_hold_what_a_reader_computes(home: Path) -> None:
    """``PRAGMA integrity_check`` on a fresh connection recomputes every index expression of every
    row (the slow path: inflating each body) and compares it with what the append stored."""
    conn = sqlite3.connect(home / "audit.db", factory=codec.Connection)
    try:
        codec.register(conn)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_appends_from_two_connections_in_turn_each_extend_the_other(home):
    a, b = open_log(home), open_log(home)
    try:
        assert a.append([ev(1)]) == [1]
        assert b.append([ev(2), ev(3)]) == [2, 3]  # a's kept frontier is stale now: a must see these
        assert a.append([ev(4)]) == [4]
        assert a.append([ev(5)]) == [5]  # nothing else committed: from the kept frontier
        assert b.append([ev(6)]) == [6]
        assert a.verify({}).ok and b.verify({}).ok
    finally:
        a.close()
        b.close()
    fresh = open_log(home)
    try:
        assert fresh.size == 6 and fresh.verify({}).ok
    finally:
        fresh.close()


def test_a_frontier_another_connection_rewrote_is_read_again(home):
    """Tampering by another writer is not papered over by what the appending connection kept."""
    log = open_log(home)
    log.append([ev(n) for n in range(3)])
    conn = sqlite3.connect(home / "audit.db")
    conn.execute("UPDATE meta SET value = '00' WHERE key = 'frontier'")
    conn.commit()
    conn.close()
    log.append([ev(9)])  # reads the frontier again: damaged, so rebuilt from the stored tree
    assert log.size == 4 and log.verify({}).ok
    log.close()


def test_a_dictionary_another_connection_trained_is_used_by_the_next_append(home):
    a, b = open_log(home), open_log(home)
    try:
        a.append([ev(0)])
        b.append([ev(n) for n in range(1, 256)])  # event 256 trains dictionary 1 (codec.TRAIN_AT)
        a.append([ev(300)])
        assert first_bytes(home)[-1] == 1
        assert a.verify({}).ok
    finally:
        a.close()
        b.close()


def test_a_rolled_back_transaction_leaves_nothing_kept(home):
    """A dictionary trained and a frontier extended in a transaction that rolls back are forgotten."""
    log = open_log(home)
    log.append([ev(n) for n in range(255)])

    def refuse(note: str) -> None:
        raise RuntimeError("delivery failed")

    with pytest.raises(RuntimeError):  # its event is number 256: it trained a dictionary, then rolled back
        log.add_checkpoint("host:test", SEED, event=Event("checkpoint", "ok", principal="host:test"), deliver=refuse)
    assert log.size == 255 and log.checkpoints() == []
    assert log.append([ev(n) for n in range(256, 260)]) == [256, 257, 258, 259]
    with pytest.raises(OperationalError):  # an event that cannot be encoded: nothing of it stays
        log.append([ev(1, metadata={"bad": "\udfff"})])
    assert log.append([ev(261)]) == [260]
    assert log.verify({}).ok
    log.close()
    assert first_bytes(home)[254:] == [0, 0, 1, 1, 1, 1]  # trained (once, in the log) after 256
    fresh = open_log(home)
    assert fresh.verify({}).ok and fresh.size == 260
    fresh.close()


def test_indexes_of_appended_rows_match_a_fresh_readers(home):
    log = open_log(home)
    odd = [ev(0, principal=None, action=None), ev(1, outcome="error", reason="x"), ev(2, event="checkpoint", principal="host:h"),
           ev(3, event="audit_prune"), ev(4, principal="agent:ünïcode", action="deploy.ß")]
    log.append(odd)
    log.append([ev(n) for n in range(5, 40)])
    assert [e["seq"] for e in log.query(agent="agent:ünïcode")] == [5]
    assert {e["seq"] for e in log.query(outcome="error")} == {2}
    assert {e["seq"] for e in log.query(agent="agent:a1", limit=100)} == {2} | {n + 1 for n in range(5, 40) if n % 5 == 1}
    log.close()
    indexes_hold_what_a_reader_computes(home)


def test_the_index_functions_answer_other_bodies_from_the_body_itself(home):
    """A remembered row answers only for its own bytes: a query over other rows inflates them."""
    log = open_log(home)
    log.append([ev(1, principal="agent:x")])
    log.append([ev(2, principal="agent:y")])  # remembered now: agent:y's body
    assert [e["principal"] for e in log.query(agent="agent:x")] == ["agent:x"]
    assert log.conn.execute("SELECT audit_field(body, 'principal') FROM entries ORDER BY seq").fetchall() == [("agent:x",), ("agent:y",)]
    log.close()


def test_rfc3339_with_microseconds_is_the_text_datetime_gives():
    rnd = random.Random(7)
    values = [0.0, 0.0000005, 0.0000015, 0.0000025, 0.4999995, 0.9999995, 1_800_000_000.9999995, 253402300798.9999995, 1e9 + 5e-7]
    values += [rnd.uniform(0, 253402300799) for _ in range(20000)]
    values += [rnd.randrange(0, 4_000_000_000) + (2 * rnd.randrange(0, 1_000_000) + 1) / 2e6 for _ in range(20000)]  # halves
    values += [rnd.uniform(1.7e9, 1.9e9) for _ in range(20000)]
    for v in values:
        assert rfc3339(v, micro=True) == datetime.fromtimestamp(v, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), v
    assert rfc3339(1_800_000_000, micro=True) == "2027-01-15T08:00:00.000000Z"  # an int: the general path
    assert rfc3339(1_800_000_000.25) == "2027-01-15T08:00:00Z"
