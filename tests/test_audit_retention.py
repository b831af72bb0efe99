"""Retention: the compact storage (schema 3), the migration of an older log, archives and pruning.

From the attacker's side too: a body deleted outside ``audit prune`` (even with its true leaf hash
kept), a kept leaf hash altered, an archive edited or cut, a prune of events nobody holds.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from agentctl import crypto, merkle
from agentctl.audit import AuditLog, Event, codec, schema
from agentctl.audit.note import checkpoint_body, sign_note
from agentctl.clock import FixedClock, rfc3339
from agentctl.encoding import canonical_json
from agentctl.errors import DeniedError, UsageError
from agentctl.home import Home

HOST, SEED = "host:test", bytes(32)
KEYS = {HOST: [crypto.public_key(SEED)]}


def ev(n: int, outcome: str = "allow") -> Event:
    return Event("verify", outcome, principal=f"agent:a{n % 3}", action=f"deploy.s{n % 2}", resource=f"api/r{n}",
                 jtis=(f"jti-{n}",), metadata={"n": n, "presentation_sha256": f"{n:064x}"})


def b64(s: str) -> bytes:
    return base64.b64decode(s)


# --- the migration of a schema-2 log ------------------------------------------------------------------


def make_v2_log(path: Path, n: int, checkpoints=(), edit: int | None = None) -> list[bytes]:
    """A log as agentctl wrote it before schema 3: leaves as text, leaf hashes, every tree level,
    signed checkpoints. ``edit`` rewrites one leaf afterwards (its stored leaf hash left as it was)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(schema.MIGRATIONS_TABLE)
    for version, name, sql in schema.MIGRATIONS[:2]:
        for statement in schema.statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, '2026-01-01T00:00:00.000000Z')", (version, name))
    conn.execute("INSERT INTO meta VALUES ('origin', 'agentctl.audit/0123456789abcdef')")
    conn.execute("INSERT INTO meta VALUES ('host_key', ?)", (HOST,))
    cr, leaves = merkle.CompactRange(), []
    for seq in range(1, n + 1):
        doc = {"seq": seq, "time": rfc3339(1_800_000_000 + seq, micro=True), "event": "verify", "principal": f"agent:a{seq % 3}",
               "on_behalf_of": None, "chain": [], "action": "deploy.x", "resource": None, "outcome": "deny" if seq % 4 == 0 else "allow",
               "reason": None, "jtis": [], "host": "h", "version": "0.0.9", "metadata": {}}
        leaf = canonical_json(doc)
        leaves.append(leaf)
        created = cr.append(merkle.leaf_hash(leaf))
        conn.execute("INSERT INTO events (seq, leaf, leaf_hash) VALUES (?, ?, ?)", (seq, leaf.decode(), created[0][2]))
        conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", created[1:])
        if seq in checkpoints:
            note = sign_note(checkpoint_body("agentctl.audit/0123456789abcdef", seq, cr.root()), HOST, SEED)
            conn.execute("INSERT INTO checkpoints VALUES (?, ?, ?, '2026-01-01T00:00:00.000000Z')", (seq, cr.root(), note))
    conn.execute("INSERT INTO meta VALUES ('frontier', ?)", (cr.to_bytes().hex(),))
    if edit is not None:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET leaf = replace(leaf, 'agent:', 'agent:x') WHERE seq = ?", (edit,))
    conn.execute("COMMIT")
    conn.close()
    return leaves


def test_an_old_log_is_migrated_in_place_and_every_proof_still_verifies(home):
    home.mkdir(parents=True, exist_ok=True)
    leaves = make_v2_log(home / "audit.db", 300, checkpoints=(17, 256, 300))
    old_notes = {}
    conn = sqlite3.connect(home / "audit.db")
    old_notes = {s: n for s, n in conn.execute("SELECT size, note FROM checkpoints")}
    conn.close()
    log = AuditLog.open_existing(home / "audit.db")  # a reading command upgrades it, once
    assert log.versions() == (1, 2, 3)
    assert {r[0] for r in log.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {"entries", "pruned", "nodes"}
    assert log.conn.execute("SELECT COUNT(*) FROM nodes WHERE level % 4 != 0").fetchone()[0] == 0
    assert list(log.export()) == [x.decode() for x in leaves]  # the leaves, byte for byte
    report = log.verify(KEYS)
    assert report.ok and report.size == 300 and report.checkpoints == 3, report.problem
    assert {s: n for s, _, n in log.checkpoints()} == old_notes  # the signed checkpoints, untouched
    for seq in (1, 17, 100, 256, 300):
        doc = log.prove(seq)
        merkle.verify_inclusion(merkle.leaf_hash(leaves[seq - 1]), seq - 1, doc["tree_size"], [b64(p) for p in doc["proof"]], b64(doc["root"]))
    c = log.consistency(old_notes[17], old_notes[300])
    merkle.verify_consistency(17, 300, b64(c["old_root"]), b64(c["new_root"]), [b64(p) for p in c["proof"]])
    assert [e["seq"] for e in log.query(outcome="deny", limit=3)] == [300, 296, 292]
    log.close()
    log = AuditLog.open(Home(home))  # appending goes on in the new format
    log.append([ev(1)])
    assert log.verify(KEYS).ok and log.size == 301
    log.close()


def test_an_edit_made_before_the_migration_is_still_named_after_it(home):
    home.mkdir(parents=True, exist_ok=True)
    make_v2_log(home / "audit.db", 40, checkpoints=(40,), edit=7)
    log = AuditLog.open_existing(home / "audit.db")
    report = log.verify(KEYS)
    assert not report.ok and report.first_bad_seq == 7
    assert report.problem == "event 7 was edited: its content does not match its leaf hash"
    log.close()


# --- storage ------------------------------------------------------------------------------------------


def test_a_leaf_is_stored_once_deflated_and_read_back_byte_for_byte(home):
    log = AuditLog.open(Home(home))
    log.append([ev(n) for n in range(40)], FixedClock(1_800_000_000))
    assert [c[1] for c in log.conn.execute("PRAGMA table_info(entries)")] == ["seq", "body", "tag"]
    for seq, body, tag in log.conn.execute("SELECT seq, body, tag FROM entries"):
        leaf = codec.unpack(body)
        assert json.loads(leaf)["seq"] == seq and len(body) < len(leaf) / 2
        assert tag == merkle.leaf_hash(leaf)[:4]
    assert codec.pack(codec.unpack(body)) == body
    with pytest.raises(ValueError, match="damaged event body"):
        codec.unpack(body[:-3])
    log.close()


def test_a_log_trains_its_own_dictionary_and_its_events_shrink(home):
    log = AuditLog.open(Home(home))
    log.append([ev(n) for n in range(300)], FixedClock(1_800_000_000))
    assert log.conn.execute("SELECT COUNT(*) FROM dicts").fetchone()[0] == 1  # trained at event 256
    sizes = dict(log.conn.execute("SELECT body >= x'01', AVG(LENGTH(body)) FROM entries GROUP BY 1").fetchall())
    assert sizes[1] < sizes[0] * 0.8  # the events after it use it, and are smaller
    assert log.conn.execute("SELECT MIN(seq) FROM entries WHERE body >= x'01'").fetchone()[0] == 257
    report = log.verify({})
    assert report.ok, report.problem
    assert [e["seq"] for e in log.query(agent="agent:a1", limit=2)] == [299, 296]
    log.close()
    conn = sqlite3.connect(home / "audit.db", isolation_level=None)
    conn.execute("DROP TRIGGER dicts_no_update")
    conn.execute("UPDATE dicts SET zdict = zeroblob(LENGTH(zdict))")  # every later event now reads otherwise
    conn.close()
    log = AuditLog.open_existing(home / "audit.db")
    report = log.verify({})
    assert not report.ok and report.first_bad_seq == 257
    log.close()


def test_queries_compare_the_name_not_only_its_hash(home, monkeypatch):
    """Two names whose index keys collide: each query still returns only its own events."""
    monkeypatch.setattr(codec, "key", lambda value: None if value is None else 1)  # every name collides
    log = AuditLog.open(Home(home))
    log.append([ev(n) for n in range(9)], FixedClock(1_800_000_000))
    assert {e["principal"] for e in log.query(agent="agent:a1")} == {"agent:a1"}
    assert [e["seq"] for e in log.query(agent="agent:a1", action="deploy.s0", limit=5)] == [5]
    log.close()


# --- archive and prune ----------------------------------------------------------------------------------


def ok(cli, *args):
    r = cli(*args)
    assert r.code == 0, (args, r.stderr)
    return r


@pytest.fixture
def busy(cli, home):
    """A home with 20 keygens (each at its own time)."""
    for i in range(20):
        ok(cli, "keygen", f"agent:a{i}")
    return home


def _times(home) -> list[str]:
    log = AuditLog.open_existing(home / "audit.db")
    try:
        return [json.loads(x)["time"] for x in log.export()]
    finally:
        log.close()


def test_prune_refuses_what_nobody_holds_and_changes_nothing(cli, busy):
    from conftest import snapshot

    before = snapshot(busy)
    r = cli("audit", "prune", "--before", _times(busy)[10])
    assert r.code == 1 and "neither archived nor in the central store: nothing was pruned" in r.stderr
    assert "agentctl audit archive -o FILE" in r.stderr
    assert snapshot(busy) == before
    assert cli("audit", "prune").code == 2  # --before is required


def test_archive_then_prune_then_everything_still_verifies(cli, busy, tmp_path):
    archive = tmp_path / "a.jsonl"
    doc = ok(cli, "--json", "audit", "archive", "-o", str(archive)).json()
    assert (doc["first"], doc["last"]) == (1, 21)  # the 20 keygens and the host key's keygen
    assert ok(cli, "--json", "audit", "verify", "--archive", str(archive)).json()["events"] == 21
    ok(cli, "audit", "checkpoint", "-o", str(tmp_path / "old.txt"))
    cut = _times(busy)[12]  # events 1..12 are older than event 13
    doc = ok(cli, "--json", "audit", "prune", "--before", cut).json()
    assert (doc["first"], doc["last"], doc["held_by"]) == (1, 12, "archive")
    r = ok(cli, "audit", "verify", "--checkpoint", str(tmp_path / "old.txt"))
    assert r.stdout.startswith("audit log intact: 25 events (events 1..12 pruned: their kept leaf hashes verified")
    assert ok(cli, "--json", "audit", "verify").json()["pruned_through"] == 12
    # proofs of kept events and consistency proofs still verify; a pruned event is named as such
    ok(cli, "audit", "checkpoint", "-o", str(tmp_path / "new.txt"))
    proof = ok(cli, "--json", "audit", "prove", "13").json()
    merkle.verify_inclusion(b64(proof["leaf_hash"]), 12, proof["tree_size"], [b64(p) for p in proof["proof"]], b64(proof["root"]))
    c = ok(cli, "--json", "audit", "consistency", str(tmp_path / "old.txt"), str(tmp_path / "new.txt")).json()
    merkle.verify_consistency(c["old_size"], c["new_size"], b64(c["old_root"]), b64(c["new_root"]), [b64(p) for p in c["proof"]])
    r = cli("audit", "prove", "5")
    assert r.code == 2 and "audit event 5 was pruned" in r.stderr
    assert [e["seq"] for e in ok(cli, "--json", "audit", "export").json()["events"]][0] == 13
    assert ok(cli, "--json", "audit", "--limit", "1").json()["events"][0]["event"] == "checkpoint"
    # the prune is recorded, and the archive still verifies against the pruned log
    prune_ev = ok(cli, "--json", "audit", "--limit", "50").json()["events"]
    assert any(e["event"] == "audit_prune" and e["metadata"]["last"] == 12 for e in prune_ev)
    ok(cli, "audit", "verify", "--archive", str(archive))
    assert ok(cli, "--json", "audit", "prune", "--before", cut).json()["pruned"] == 0  # nothing older is left


def test_an_edited_or_cut_archive_is_refused(cli, busy, tmp_path):
    archive = tmp_path / "a.jsonl"
    ok(cli, "audit", "archive", "-o", str(archive))
    lines = archive.read_text().splitlines(keepends=True)
    for name, text in (("edited", "".join(lines[:3] + [lines[3].replace("agent:a2", "agent:a9")] + lines[4:])),
                       ("cut", "".join(lines[:-1])),
                       ("reordered", "".join(lines[:2] + [lines[3], lines[2]] + lines[4:]))):
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text(text)
        r = cli("audit", "verify", "--archive", str(bad))
        assert r.code == 1, (name, r.stderr)
    (tmp_path / "junk.jsonl").write_text("hello\n")
    assert cli("audit", "verify", "--archive", str(tmp_path / "junk.jsonl")).code == 2
    assert cli("audit", "archive").code == 2  # -o FILE is required


def test_an_archive_of_another_home_is_refused(cli, busy, tmp_path):
    other = tmp_path / "other"
    ok(cli, "--home", str(other), "keygen", "user:x")
    ok(cli, "--home", str(other), "audit", "archive", "-o", str(tmp_path / "o.jsonl"))
    r = cli("audit", "verify", "--archive", str(tmp_path / "o.jsonl"))
    assert r.code == 1 and "not signed by this host's audit key" in r.stderr


def _pruned_log(cli, home, tmp_path) -> sqlite3.Connection:
    ok(cli, "audit", "archive", "-o", str(tmp_path / "a.jsonl"))
    ok(cli, "audit", "prune", "--before", _times(home)[8])  # events 1..8
    conn = sqlite3.connect(home / "audit.db", isolation_level=None)
    codec.register(conn)
    return conn


def test_a_body_deleted_outside_prune_is_tampering_even_with_its_true_leaf_hash_kept(cli, busy, tmp_path):
    conn = _pruned_log(cli, busy, tmp_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM entries WHERE seq = 9")  # the trigger: no leaf hash kept
    conn.execute("INSERT INTO pruned SELECT seq, audit_leaf_hash(body) FROM entries WHERE seq = 9")
    conn.execute("DELETE FROM entries WHERE seq = 9")  # the trigger lets it go: the tree still holds
    r = cli("audit", "verify")
    assert r.code == 1 and "events 1..9 were dropped, but no audit prune recorded dropping them" in r.stderr
    assert "(the last prune recorded dropping events through 8)" in r.stderr


def test_a_kept_leaf_hash_altered_is_tampering(cli, busy, tmp_path):
    conn = _pruned_log(cli, busy, tmp_path)
    conn.execute("DROP TRIGGER pruned_no_update")
    conn.execute("UPDATE pruned SET leaf_hash = zeroblob(32) WHERE seq = 3")
    r = cli("audit", "verify")
    assert r.code == 1 and "audit log tampered" in r.stderr


def test_a_kept_leaf_hash_deleted_is_tampering(cli, busy, tmp_path):
    conn = _pruned_log(cli, busy, tmp_path)
    conn.execute("DROP TRIGGER pruned_no_delete")
    conn.execute("DELETE FROM pruned WHERE seq = 8")
    r = cli("audit", "verify")
    assert r.code == 1 and "event 8 is missing" in r.stderr


def test_prune_library_refuses_beyond_what_is_held(home):
    from agentctl.audit.prune import prune

    log = AuditLog.open(Home(home))
    log.append([ev(n) for n in range(10)], FixedClock(1_800_000_000))
    with pytest.raises(DeniedError, match="events 5..10 are older than that"):
        prune(log, 1_900_000_000 * 10**6, 4, "archive", FixedClock(1_800_000_100), None)
    assert log.conn.execute("SELECT COUNT(*) FROM pruned").fetchone()[0] == 0 and log.size == 10
    with pytest.raises(UsageError, match="nothing to archive"):
        from agentctl.audit.prune import archive_text

        archive_text(log)
    log.close()


def test_days_from_civil_counts_as_calendar_timegm_does():
    import calendar
    import random

    from agentctl.audit.codec import days_from_civil, parse_time_us

    rng = random.Random(7)
    dates = [(1970, 1, 1), (2000, 2, 29), (1900, 3, 1), (1, 1, 1), (9999, 12, 31), (2024, 2, 30)]
    dates += [(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 31)) for _ in range(2000)]
    for y, m, d in dates:
        assert days_from_civil(y, m, d) * 86400 == calendar.timegm((y, m, d, 0, 0, 0)), (y, m, d)
    for bad in [(2026, 13, 1), (2026, 0, 1), (0, 5, 1)]:
        with pytest.raises(ValueError):
            calendar.timegm((*bad, 0, 0, 0))
        with pytest.raises(ValueError):
            days_from_civil(*bad)
    assert parse_time_us("2026-12-02T15:30:32.123456Z") == calendar.timegm((2026, 12, 2, 15, 30, 32)) * 1_000_000 + 123456
    assert parse_time_us("2026-13-02T15:30:32.123456Z") is None
