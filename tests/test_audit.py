"""The audit log as a library and as the record every command writes: the events and their fields,
never a secret or a payload, ``audit = false``, a log that cannot be written, the tree and proofs, the
query plans, append-only triggers and schema migrations.

Tampering is in test_audit_tamper.py, concurrent writers in test_audit_concurrency.py, the ``audit``
commands in test_audit_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from agentctl import __version__, merkle
from agentctl.audit import FIELDS, AuditLog, Event, host_name
from agentctl.clock import FixedClock
from agentctl.encoding import b64u_encode, canonical_json
from agentctl.errors import OperationalError, UsageError
from agentctl.home import Home
from agentctl.secret import decode_secret

SCHEMA_VERSION = 3  # migrations: 1 the tables, 2 the newest-first indexes, 3 compact storage (test_audit_retention.py)
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def events_of(cli, home: Path | None = None) -> list[dict]:
    """Every event of a home, oldest first, through ``agentctl audit --json``."""
    args = ("--home", str(home)) if home else ()
    r = cli(*args, "--json", "audit")
    assert r.code == 0, r.stderr
    return list(reversed(r.json()["events"]))


def ok(cli, *args, **kw):
    r = cli(*args, **kw)
    assert r.code == 0, (args, r.stderr)
    return r


def audit_bytes(home: Path) -> bytes:
    """Everything SQLite holds for the log, WAL included."""
    return b"".join(p.read_bytes() for p in sorted(home.glob("audit.db*")) if p.is_file())


def open_log(home: Path) -> AuditLog:
    return AuditLog.open(Home(home))


def ev(n: int = 0, **kw) -> Event:
    base = dict(event="verify", outcome="allow", principal=f"agent:a{n % 3}", action=f"deploy.s{n % 2}", resource="api/web")
    base.update(kw)
    return Event(**base)


# --- every command records its decision -------------------------------------------------------------


@pytest.fixture
def story(cli, home, tmp_path):
    """Every kind of decision, in the home (and a second home for the revocation list), with the
    secrets and the payload kept to look for afterwards."""
    other = tmp_path / "other"
    o = ("--home", str(other))
    payload = tmp_path / "payload.json"
    payload.write_bytes(b'{"note": "PAYLOAD-CONTENT-zq7x-do-not-log"}\n')
    s = {"other": other, "payload": payload}

    s["secret"] = ok(cli, "keygen", "user:alice", "--export-secret").stdout.strip()
    s["ci_secret"] = ok(cli, "keygen", "agent:ci", "--export-secret", "--no-store").stdout.strip()
    ok(cli, "keygen", "agent:bot")
    ok(cli, *o, "keygen", "agent:remote")
    ok(cli, "import", "agent:remote", ok(cli, *o, "pubkey", "agent:remote").stdout.strip())
    ok(cli, *o, "rotate", "agent:remote", "-o", str(tmp_path / "remote.rot"))
    ok(cli, "import", "agent:remote", "--rotation", str(tmp_path / "remote.rot"))
    ok(cli, "rotate", "agent:bot", "-o", str(tmp_path / "bot.rot"))
    grant = ok(cli, "--json", "delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*:api/*", "--max-depth", "1").json()
    s["grant"], s["grant_jti"] = grant["grant"], grant["jti"]
    refused = cli("delegate", "--parent", s["grant"], "--to", "agent:remote", "--scope", "admin.*")
    assert refused.code == 1 and "scope_escalation" in refused.stderr
    s["action"] = ok(cli, "sign", "--as", "agent:bot", "--action", "deploy.staging", "--resource", "api/web",
                     "--grant", s["grant"], "--data", str(payload), "--embed").stdout.strip()
    ok(cli, "verify", s["action"], "--action", "deploy.staging", "--resource", "api/web", "--data", str(payload))
    denied = cli("verify", s["action"], "--action", "deploy.production", "--resource", "api/web")
    assert denied.code == 1 and "scope_denied" in denied.stderr
    # the CI secret signs on a runner with no store: the secret travels in the environment
    ok(cli, "sign", "--as", "agent:ci", "--action", "build.run", "--resource", "ci/main", env={"AGENTCTL_SECRET_KEY": s["ci_secret"]})
    assert cli("verify", "-", input=s["secret"], env={"AGENTCTL_SECRET_KEY": None}).code == 1  # a secret piped as a token: denied, not logged
    ok(cli, "revoke", "--grant", s["grant_jti"], "--reason", "rotated out")
    ok(cli, "revoke", "agent:remote", "--reason", "left the team")
    lst = tmp_path / "revocations.jwt"
    ok(cli, "revocations", "export", "--sign-as", "user:alice", "-o", str(lst))
    (other / "config.toml").write_text("[roles.security]\nrevoke = true\n")  # SPEC "Who may revoke"
    ok(cli, *o, "import", "user:alice", ok(cli, "pubkey", "user:alice").stdout.strip(), "--role", "security")
    ok(cli, *o, "revocations", "import", str(lst))
    forged = tmp_path / "forged.jwt"
    text = lst.read_text().strip()
    forged.write_text(text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB") + "\n")
    assert cli(*o, "revocations", "import", str(forged)).code == 1
    s["checkpoint"] = ok(cli, "--json", "audit", "checkpoint").json()
    return s


def test_every_decision_is_recorded_with_the_spec_fields(cli, home, story):
    events = events_of(cli)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for e in events:
        assert tuple(sorted(e)) == tuple(sorted(FIELDS)), e
        assert TIME.fullmatch(e["time"]), e["time"]
        assert e["host"] == host_name() and e["version"] == __version__
        assert e["outcome"] in ("allow", "deny", "ok", "error")
        assert isinstance(e["chain"], list) and isinstance(e["jtis"], list) and isinstance(e["metadata"], dict)
    summary = [(e["event"], e["outcome"], e["principal"], e["reason"]) for e in events]
    host = story["checkpoint"]["signer"]
    assert summary == [
        ("keygen", "ok", "user:alice", None),
        ("keygen", "ok", "agent:ci", None),
        ("keygen", "ok", "agent:bot", None),
        ("import", "ok", "agent:remote", None),
        ("import", "ok", "agent:remote", None),
        ("rotate", "ok", "agent:bot", None),
        ("delegate", "ok", "user:alice", None),
        ("delegate", "deny", None, "scope_escalation"),
        ("sign", "ok", "agent:bot", None),
        ("verify", "allow", "agent:bot", None),
        ("verify", "deny", "agent:bot", "scope_denied"),  # the agent the token claims to be
        ("sign", "ok", "agent:ci", None),
        ("verify", "deny", None, "malformed"),
        ("revoke", "ok", None, "rotated out"),
        ("revoke", "ok", "agent:remote", "left the team"),
        ("revocations.export", "ok", "user:alice", None),
        ("keygen", "ok", host, None),
        ("checkpoint", "ok", host, None),
    ]
    by = {(e["event"], e["outcome"]): e for e in events}
    assert events[1]["metadata"]["exported"] is True and events[1]["metadata"]["keystore"] is None
    assert events[4]["metadata"]["rotation"] is True
    d = by[("delegate", "ok")]
    assert d["on_behalf_of"] == "user:alice" and d["chain"] == ["user:alice", "agent:bot"]
    assert d["jtis"] == [story["grant_jti"]] and d["metadata"]["scope"] == "deploy.*:api/*"
    assert by[("delegate", "deny")]["metadata"]["to"] == "agent:remote"
    sign = events[8]
    assert (sign["action"], sign["resource"], sign["on_behalf_of"]) == ("deploy.staging", "api/web", "user:alice")
    assert sign["metadata"]["sha256"] == hashlib.sha256(story["payload"].read_bytes()).hexdigest()
    assert sign["metadata"]["embedded"] is True
    allow = by[("verify", "allow")]
    assert allow["chain"] == ["user:alice", "agent:bot"] and allow["jtis"] == sign["jtis"]
    assert allow["metadata"]["scope"] == "deploy.*:api/*"
    deny = events[10]
    assert (deny["action"], deny["resource"], deny["reason"]) == ("deploy.production", "api/web", "scope_denied")
    assert "deploy.staging" in deny["metadata"]["detail"] and deny["metadata"]["claimed"] is True
    assert deny["jtis"] == sign["jtis"]
    assert events[13]["jtis"] == [story["grant_jti"]] and events[13]["metadata"]["kind"] == "grant"
    assert events[-1]["metadata"] == {"automatic": False, "size": story["checkpoint"]["size"]}
    assert story["checkpoint"]["size"] == len(events) - 1  # the checkpoint event is the first it does not cover

    theirs = [(e["event"], e["outcome"], e["reason"]) for e in events_of(cli, story["other"])]
    assert ("revocations.import", "ok", None) in theirs
    assert ("revocations.import", "deny", "bad_signature") in theirs


def test_no_secret_payload_or_token_reaches_the_log(cli, home, story):
    export = ok(cli, "audit", "export").stdout
    query = ok(cli, "--json", "audit").stdout
    stored = audit_bytes(home) + audit_bytes(story["other"])
    forbidden = {}
    for label in ("secret", "ci_secret"):
        text = story[label]
        seed = decode_secret(text).seed
        forbidden.update({label: text, f"{label} seed b64url": b64u_encode(seed), f"{label} seed hex": seed.hex(),
                          f"{label} body": text[len("AGENTCTL-SECRET-KEY-1"):][:40]})
    content = story["payload"].read_bytes()
    forbidden.update({"payload": "PAYLOAD-CONTENT-zq7x", "payload b64url": b64u_encode(content)[:40],
                      "action token": story["action"], "grant token": story["grant"]})
    for label, needle in forbidden.items():
        for where, haystack in (("database", stored), ("export", export.encode()), ("query", query.encode())):
            assert needle.encode() not in haystack, f"{label} found in the audit {where}"
    assert hashlib.sha256(content).hexdigest() in export  # the digest, and only the digest


def test_audit_false_writes_nothing(cli, home, tmp_path):
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("audit = false\n")
    ok(cli, "keygen", "user:alice")
    ok(cli, "keygen", "agent:bot")
    grant = ok(cli, "delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*").stdout.strip()
    ok(cli, "verify", grant, "--action", "deploy.x", "--resource", "r")
    assert cli("verify", grant, "--action", "admin.x", "--resource", "r").code == 1
    token = ok(cli, "sign", "--as", "agent:bot", "--action", "deploy.x", "--resource", "r", "--grant", grant).stdout.strip()
    ok(cli, "verify", "--batch", input=token + "\n")
    ok(cli, "rotate", "agent:bot")
    ok(cli, "revoke", "agent:bot")
    assert sorted(p.name for p in home.iterdir() if p.name.startswith("audit")) == []
    r = cli("audit", "checkpoint")
    assert r.code == 2 and "auditing is off" in r.stderr
    assert ok(cli, "audit").stderr == "agentctl: no audit events match\n"
    r = cli("audit", "verify")  # SPEC: a missing log is never "intact"; with auditing off it is no evidence either
    assert r.code == 3 and "auditing is off in config.toml" in r.stderr
    assert not (home / "audit.db").exists()


# --- a log that cannot be written fails the command -------------------------------------------------


def _dir(db: Path) -> None:
    db.unlink()
    db.mkdir()


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is no database " * 300)


def _sqlite_garbage(db: Path) -> None:
    db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)


def _lock_dir(db: Path) -> None:
    (db.parent / "audit.lock").unlink(missing_ok=True)
    (db.parent / "audit.lock").mkdir()


@pytest.mark.parametrize("damage", [_dir, _garbage, _sqlite_garbage, _lock_dir])
@pytest.mark.parametrize("json_mode", [False, True])
def test_verify_exits_3_when_its_decision_cannot_be_recorded(cli, home, damage, json_mode):
    ok(cli, "keygen", "user:alice")
    ok(cli, "keygen", "agent:bot")
    grant = ok(cli, "delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*").stdout.strip()
    for p in home.glob("audit.db-*"):
        p.unlink()
    damage(home / "audit.db")
    args = ("--json",) if json_mode else ()
    for cmd in (("verify", grant, "--action", "deploy.x", "--resource", "r"), ("verify", grant)):
        r = cli(*args, *cmd)
        assert r.code == 3, (damage.__name__, r)
        assert "agentctl: error:" in r.stderr and "audit" in r.stderr and "Traceback" not in r.stderr
        if json_mode:
            assert r.json()["ok"] is False
        else:
            assert r.stdout == ""  # no "ok: …" verdict
    r = cli(*args, "verify", "--batch", input=grant + "\n")
    assert r.code == 3 and '"ok":true' not in r.stdout.replace(" ", "")
    r = cli(*args, "keygen", "agent:late")
    assert r.code == 3


# --- the library ---------------------------------------------------------------------------------


def test_append_fills_in_seq_time_host_version_as_canonical_json(home):
    log = open_log(home)
    clock = FixedClock(1_800_000_000.123456)
    assert log.append([ev(0), ev(1, outcome="deny", reason="expired", metadata={"b": 1, "a": [1.0, "é"]})], clock) == [1, 2]
    clock.advance(1.5)
    assert log.append([ev(2, chain=("user:x", "agent:y"), jtis=("j1",))], clock) == [3]
    leaves = [leaf for leaf in log.export()]
    docs = [json.loads(leaf) for leaf in leaves]
    assert [d["time"] for d in docs] == ["2027-01-15T08:00:00.123456Z"] * 2 + ["2027-01-15T08:00:01.623456Z"]
    assert [d["seq"] for d in docs] == [1, 2, 3]
    assert docs[1]["metadata"] == {"a": [1, "é"], "b": 1} and docs[1]["reason"] == "expired"
    for leaf, doc in zip(leaves, docs):
        assert leaf.encode() == canonical_json(doc)
        assert set(doc) == set(FIELDS) and doc["host"] == host_name() and doc["version"] == __version__
    assert log.event(2) == (leaves[1], merkle.leaf_hash(leaves[1].encode()))
    assert log.event(4) is None
    log.close()


def test_the_stored_tree_is_the_rfc_6962_tree_of_the_leaves(home):
    log = open_log(home)
    for n in range(37):
        log.append([ev(n) for _ in range(n % 3)])
    leaves = [merkle.leaf_hash(leaf.encode()) for leaf in log.export()]
    tree = merkle.MemoryTree(leaves)
    stored = {(lv, i): bytes(h) for lv, i, h in log.conn.execute("SELECT level, idx, hash FROM nodes")}
    expected = {(lv, i): tree.get_node(lv, i) for lv in range(1, 7) for i in range(len(leaves) >> lv)}
    assert stored == {k: h for k, h in expected.items() if k[0] % 4 == 0}  # every fourth level is stored
    assert {k: log._get_node(*k) for k in expected} == expected  # the others are hashed from those below
    assert [log._get_node(0, i) for i in range(len(leaves))] == leaves
    assert bytes.fromhex(log.meta("frontier")) == tree.compact_range().to_bytes()
    assert log.verify({}).ok and log.size == len(leaves) == 36
    log.close()


def test_a_failed_append_appends_nothing(home):
    log = open_log(home)
    log.append([ev(0)])
    with pytest.raises(OperationalError, match="cannot be encoded"):
        log.append([ev(1), ev(2, metadata={"bad": "\ud800"}), ev(3)])
    assert log.size == 1 and log.verify({}).ok
    assert log.append([ev(4)]) == [2]
    log.close()


def test_a_checkpoint_and_its_event_are_one_transaction(home):
    from agentctl import crypto
    from agentctl.note import verify_note

    seed = bytes(range(32))
    log = open_log(home)
    log.append([ev(n) for n in range(5)])
    size, root, note = log.add_checkpoint("host:test", seed, event=Event("checkpoint", "ok", principal="host:test", metadata={"automatic": True}))
    assert size == 5 and root == merkle.root([merkle.leaf_hash(x.encode()) for x in log.export()][:5])
    assert verify_note(note, "host:test", crypto.public_key(seed)).startswith(f"{log.origin}\n5\n")
    last = json.loads(log.event(6)[0])
    assert last["event"] == "checkpoint" and last["metadata"] == {"automatic": True, "size": 5}
    with pytest.raises(OperationalError):
        log.add_checkpoint("host:test", seed, event=Event("checkpoint", "ok", metadata={"bad": "\udfff"}))
    assert [c[0] for c in log.checkpoints()] == [5] and log.size == 6  # neither the checkpoint nor its event
    log.close()


def test_proofs_verify_against_the_latest_checkpoint(home):
    import base64

    seed = bytes(32)
    log = open_log(home)
    log.append([ev(n) for n in range(21)])
    with pytest.raises(UsageError, match="no checkpoint covers event 3"):
        log.prove(3)
    size, root, _ = log.add_checkpoint("host:test", seed)
    log.append([ev(99)])
    for seq in range(1, size + 1):
        doc = log.prove(seq)
        proof = [base64.b64decode(p) for p in doc["proof"]]
        merkle.verify_inclusion(merkle.leaf_hash(doc["leaf"].encode()), seq - 1, size, proof, root)
        assert doc["tree_size"] == size and doc["event"]["seq"] == seq
    with pytest.raises(UsageError, match="no checkpoint covers event 22 yet") as e:
        log.prove(22)
    assert "audit checkpoint" in e.value.hint
    for bad in (0, -1, 23):
        with pytest.raises(UsageError, match=f"no audit event {bad} "):
            log.prove(bad)
    log.close()


@pytest.mark.parametrize("chunk_level", [1, 2, 3, 14])
def test_verify_reads_in_chunks_without_changing_the_answer(home, monkeypatch, chunk_level):
    from agentctl.audit import tamper

    monkeypatch.setattr(tamper, "_CHUNK_LEVEL", chunk_level)
    log = open_log(home)
    assert log.verify({}).doc() == {"ok": True, "size": 0, "checkpoints_checked": 0, "problem": None,
                                    "first_bad_seq": None, "last_bad_seq": None, "external_checkpoint": None,
                                    "pruned_through": 0}
    for n in range(1, 41):
        log.append([ev(n)])
        assert log.verify({}).ok, n
    log.close()


def test_queries_filter_and_put_the_newest_first(home):
    log = open_log(home)
    clock = FixedClock(1_800_000_000)
    for n in range(12):
        log.append([ev(n, outcome="deny" if n % 4 == 0 else "allow")], clock)
        clock.advance(60)
    seqs = lambda **kw: [e["seq"] for e in log.query(**kw)]  # noqa: E731
    assert seqs() == list(range(12, 0, -1))
    assert seqs(agent="agent:a1") == [11, 8, 5, 2]
    assert seqs(agent="agent:a1", action="deploy.s0") == [11, 5]
    assert seqs(outcome="deny") == [9, 5, 1]
    assert seqs(agent="agent:a0", outcome="deny") == [1]
    assert seqs(since=1_800_000_000 + 300, until=1_800_000_000 + 420) == [8, 7, 6]
    assert seqs(action="deploy.s1", since=1_800_000_000 + 300, limit=2) == [12, 10]
    assert seqs(agent="agent:nobody") == [] and seqs(limit=1) == [12]
    # equal times (a clock that stands still): newest first by seq
    log.append([ev(0), ev(0)], FixedClock(1_800_000_000 + 3600))
    assert seqs(limit=3) == [14, 13, 12]
    log.close()


@pytest.mark.parametrize("filters, index", [
    ({"agent": "agent:a1"}, "entries_principal"),
    ({"agent": "agent:a1", "outcome": "deny"}, "entries_principal"),
    ({"agent": "agent:a1", "action": "deploy.s0", "since": 1.0}, "entries_principal"),
    ({"action": "deploy.s0"}, "entries_action"),
    ({"action": "deploy.s0", "outcome": "deny", "until": 2e9}, "entries_action"),
    ({"outcome": "deny"}, "entries_outcome"),
    ({"outcome": "deny", "since": 1.0, "until": 2e9}, "entries_outcome"),
    ({"since": 1.0}, "entries_time"),
    ({"since": 1.0, "until": 2e9}, "entries_time"),
    ({"until": 2e9}, "entries_time"),
    ({}, "entries_time"),
])
def test_every_query_reads_one_index_in_order_and_never_sorts(home, monkeypatch, filters, index):
    log = open_log(home)
    log.append([ev(n) for n in range(10)])
    captured = []
    real = log.conn

    class Spy:
        def execute(self, sql, args=()):
            captured.append((sql, args))
            return real.execute(sql, args)

    monkeypatch.setattr(log, "conn", Spy())
    log.query(limit=20, **filters)
    sql, args = captured[-1]
    plan = " | ".join(r[3] for r in real.execute("EXPLAIN QUERY PLAN " + sql, args))
    assert f"USING INDEX {index} " in plan + " ", plan
    assert "TEMP B-TREE" not in plan, plan
    real.close()


def test_export_is_oldest_first_and_since_is_by_time(home):
    log = open_log(home)
    clock = FixedClock(1_800_000_000)
    for n in range(6):
        log.append([ev(n)], clock)
        clock.advance(10)
    assert [json.loads(x)["seq"] for x in log.export()] == [1, 2, 3, 4, 5, 6]
    assert [json.loads(x)["seq"] for x in log.export(since=1_800_000_000 + 30)] == [4, 5, 6]
    log.close()


# --- triggers and migrations -----------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "UPDATE entries SET body = audit_pack(replace(audit_leaf(body), 'allow', 'deny')) WHERE seq = 1",
    "UPDATE entries SET seq = seq + 100",
    "DELETE FROM entries WHERE seq = 2",
    "DELETE FROM entries",
    "INSERT INTO pruned VALUES (2, zeroblob(32))",  # a made-up leaf hash does not let an event go
    "UPDATE nodes SET hash = zeroblob(32)",
    "DELETE FROM nodes WHERE level = 4",
    "UPDATE checkpoints SET root = zeroblob(32)",
    "DELETE FROM checkpoints",
])
def test_triggers_refuse_update_and_delete(home, sql):
    from agentctl.audit import codec

    log = open_log(home)
    log.append([ev(n) for n in range(16)])
    log.add_checkpoint("host:test", bytes(32))
    log.close()
    conn = sqlite3.connect(home / "audit.db")
    codec.register(conn)  # the functions the triggers call, as agentctl installs them
    with pytest.raises(sqlite3.IntegrityError, match="the audit log is append-only"):
        conn.execute(sql)
        if sql.startswith("INSERT INTO pruned"):
            conn.execute(f"DELETE FROM entries WHERE seq = {sql.split('(')[1].split(',')[0]}")
    conn.rollback()
    conn.close()
    from agentctl import crypto

    log = open_log(home)
    assert log.size == 16 and log.verify({"host:test": [crypto.public_key(bytes(32))]}).ok
    log.close()


def test_a_log_from_a_newer_agentctl_is_refused_untouched(cli, home):
    ok(cli, "keygen", "user:alice")
    conn = sqlite3.connect(home / "audit.db")
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', '2030-01-01T00:00:00.000000Z')")
    conn.commit()
    conn.close()
    from conftest import snapshot

    before = snapshot(home)
    for args in (("audit",), ("audit", "verify"), ("keygen", "agent:bot"), ("verify", "x.y.z")):
        r = cli(*args)
        assert r.code == 3, (args, r)
        assert f"agentctl: error: the audit log {home / 'audit.db'} was written by a newer agentctl (schema version 99; this one knows {SCHEMA_VERSION})" in r.stderr
        assert "agentctl: hint: upgrade agentctl" in r.stderr
    assert snapshot(home) == before
    with pytest.raises(OperationalError, match="newer agentctl"):
        open_log(home)
