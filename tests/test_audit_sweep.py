"""The fast sweep of ``audit verify`` (agentctl.audit.sweep) against the exact walk: on every log,
untouched or tampered with, the report is the same whether the sweep runs (in two processes, with
ranges and segments made tiny so a small log has many of each) or not at all. The sweep only ever
says "the tree holds" or "look closer"; findings and their wording come from the exact walk.

Tampering here puts the triggers back afterwards (the schema intact), since the sweep steps aside
for an altered schema and the exact walk alone would then run.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentctl import crypto
from agentctl.audit import AuditLog, Event, codec, sweep
from agentctl.clock import FixedClock
from agentctl.home import Home

HOST, SEED = "host:test", bytes(range(32))
KEYS = {HOST: [crypto.public_key(SEED)]}
N = 150
TRIGGERS = tuple(f"{table}_no_{op}" for table in ("entries", "nodes", "checkpoints", "pruned", "dicts") for op in ("update", "delete"))


def ev(n: int) -> Event:
    return Event("verify", "allow" if n % 3 else "deny", principal=f"agent:a{n % 5}", action="deploy.s", resource=f"api/r{n}")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("sweep") / "home"
    log = AuditLog.open(Home(home))
    clock = FixedClock(1_800_000_000)
    for i in range(0, N, 50):
        log.append([ev(n) for n in range(i, i + 50)], clock)
        log.add_checkpoint(HOST, SEED, clock)
        clock.advance(60)
    log.close()
    return home


@pytest.fixture
def home(template, tmp_path) -> Path:
    import shutil

    shutil.copytree(template, tmp_path / "home")
    return tmp_path / "home"


@pytest.fixture
def small(monkeypatch):
    """Ranges of 4 events, segments of 16 then 32, a child for every segment, even here (tests may run threads)."""
    forks = []
    spawn = sweep._spawn

    def counting(*a):
        forks.append(1)
        return spawn(*a)

    monkeypatch.setattr(sweep, "_RANGE_LEVEL", 2)
    monkeypatch.setattr(sweep, "_SEGMENT", 32)
    monkeypatch.setattr(sweep, "_FIRST_SEGMENT", 16)
    monkeypatch.setattr(sweep, "_FORK_AT", 0)
    monkeypatch.setattr(sweep, "_can_fork", lambda: True)
    monkeypatch.setattr(sweep, "_spawn", counting)
    return forks


def reports(home: Path, monkeypatch) -> tuple[dict, dict, tuple | None]:
    """(the report with the sweep, the report of the exact walk alone, what the sweep said)."""
    log = AuditLog.open_existing(home / "audit.db")
    try:
        said = sweep.sweep(log, log.versions())
        fast = log.verify(KEYS).doc()
        with monkeypatch.context() as m:
            m.setattr("agentctl.audit.tamper.sweep", lambda log, versions, progress=None: None)
            exact = log.verify(KEYS).doc()
    finally:
        log.close()
    return fast, exact, said


def attack(home: Path, *sql: str) -> None:
    from agentctl.audit.schema import SCHEMA_VERSION, expected_schema

    conn = sqlite3.connect(home / "audit.db", isolation_level=None)
    codec.register(conn)
    for t in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    for statement in sql:
        conn.execute(statement)
    want = expected_schema(tuple(range(1, SCHEMA_VERSION + 1)))
    for t in TRIGGERS:
        conn.execute(want[("trigger", t)][3])
    conn.close()


def test_an_untouched_log_is_swept_in_two_processes(home, small, monkeypatch):
    fast, exact, said = reports(home, monkeypatch)
    size = N
    assert said == (size, 0) and fast == exact and fast["ok"] and fast["size"] == size
    assert len(small) >= size // 32  # a child per segment


def test_the_sweep_reports_its_progress_segment_by_segment(home, small):
    seen: list[tuple[int, int]] = []
    log = AuditLog.open_existing(home / "audit.db")
    try:
        assert sweep.sweep(log, log.versions(), lambda done, total: seen.append((done, total))) == (N, 0)
    finally:
        log.close()
    # after the first segment (16 events), then every 32, and the whole log at the end
    assert seen == [(k, N) for k in range(16, N, 32)] + [(N, N)]


def test_the_default_sizes_sweep_in_one_process(home, monkeypatch):
    forks = []
    monkeypatch.setattr(sweep, "_spawn", lambda *a: forks.append(1))
    fast, exact, said = reports(home, monkeypatch)
    assert said is not None and fast == exact and fast["ok"] and forks == []  # far below _FORK_AT


EDIT = """UPDATE entries SET body = audit_pack(replace(audit_leaf(body), '"resource":"api/r{n}"', '"resource":"api/x{n}"')) WHERE seq = {seq}"""


@pytest.mark.parametrize("name, sql", [
    ("a body edited (first range)", [EDIT.format(n=1, seq=2)]),
    ("a body edited (in a child's range)", [EDIT.format(n=40, seq=41)]),
    ("a body edited (the parent's last range)", [EDIT.format(n=149, seq=150)]),
    ("a body edited with its tag", [EDIT.format(n=71, seq=72), "UPDATE entries SET tag = substr(audit_leaf_hash(body), 1, 4) WHERE seq = 72"]),
    ("a body damaged", ["UPDATE entries SET body = x'00ffff' WHERE seq = 60"]),
    ("a body replaced by text", ["UPDATE entries SET body = 'hello' WHERE seq = 90"]),
    ("a row deleted", ["DELETE FROM entries WHERE seq = 77"]),
    ("the first row deleted", ["DELETE FROM entries WHERE seq = 1"]),
    ("the last row deleted", ["DELETE FROM entries WHERE seq = (SELECT MAX(seq) FROM entries)"]),
    ("rows swapped", ["UPDATE entries SET seq = -1 WHERE seq = 33", "UPDATE entries SET seq = 33 WHERE seq = 34",
                      "UPDATE entries SET seq = 34 WHERE seq = -1"]),
    ("a row renumbered below 1", ["UPDATE entries SET seq = 0 WHERE seq = 5"]),
    ("a row added past the end", ["INSERT INTO entries (seq, body, tag) SELECT MAX(seq) + 1, body, tag FROM entries"]),
    ("a node altered", ["UPDATE nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 3"]),
    ("a node made short", ["UPDATE nodes SET hash = substr(hash, 1, 31) WHERE level = 4 AND idx = 5"]),
    ("a node deleted", ["DELETE FROM nodes WHERE level = 4 AND idx = 7"]),
    ("a high node deleted", ["DELETE FROM nodes WHERE level = 4 AND idx = 0", "DELETE FROM nodes WHERE level = 8"]),
    ("a node added past the end", ["INSERT INTO nodes VALUES (4, 1000, zeroblob(32))"]),
    ("a leaf hash kept for a kept event", ["INSERT INTO pruned VALUES (1, zeroblob(32))"]),
    ("a pruned row out of place", ["INSERT INTO pruned VALUES (3, zeroblob(32))"]),
])
def test_a_tampered_log_gets_the_exact_walks_report(home, small, monkeypatch, name, sql):
    attack(home, *sql)
    fast, exact, said = reports(home, monkeypatch)
    assert fast == exact
    assert not fast["ok"], name


def test_a_pruned_prefix_is_swept_and_so_is_its_tampering(home, small, monkeypatch):
    from agentctl.audit.prune import prune

    log = AuditLog.open(Home(home))
    prune(log, (1_800_000_000 + 1) * 10**6, N, "archive", FixedClock(1_800_000_100), None)  # the first batch (not range-aligned)
    log.close()
    fast, exact, said = reports(home, monkeypatch)
    assert said is not None and said[1] == 50 and fast == exact and fast["ok"] and fast["pruned_through"] == 50
    attack(home, "UPDATE pruned SET leaf_hash = zeroblob(32) WHERE seq = 30")
    fast, exact, said = reports(home, monkeypatch)
    assert said is None and fast == exact and not fast["ok"]


def test_a_child_that_fails_sends_the_log_to_the_exact_walk_not_to_a_verdict(home, small, monkeypatch):
    real = sweep._hash_range

    def only_in_the_parent(*a):
        import os

        if os.getpid() != parent:
            os._exit(3)  # the child dies without a word
        return real(*a)

    parent = __import__("os").getpid()
    monkeypatch.setattr(sweep, "_hash_range", only_in_the_parent)
    fast, exact, said = reports(home, monkeypatch)
    assert said is None and fast == exact and fast["ok"]


def test_an_altered_schema_is_left_to_the_exact_walk(home, small, monkeypatch):
    conn = sqlite3.connect(home / "audit.db", isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.close()
    fast, exact, said = reports(home, monkeypatch)
    assert said is None and fast == exact and not fast["ok"] and "entries_no_update" in fast["problem"]


def test_a_parent_that_fails_midway_reaps_its_child_and_steps_aside(home, small, monkeypatch):
    import os

    pids = []
    spawn, inputs, calls = sweep._spawn, sweep._inputs, []

    def keeping(*a):
        child = spawn(*a)
        pids.append(child[0])
        return child

    def failing(*a):
        calls.append(1)
        if len(calls) == 12:  # the second segment's own ranges, its child forked
            raise sqlite3.OperationalError("disk I/O error")
        return inputs(*a)

    monkeypatch.setattr(sweep, "_spawn", keeping)
    monkeypatch.setattr(sweep, "_inputs", failing)
    log = AuditLog.open_existing(home / "audit.db")
    try:
        assert sweep.sweep(log, log.versions()) is None
    finally:
        log.close()
    assert pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already: no zombie left behind
