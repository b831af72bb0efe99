"""The ``audit`` commands: queries and their filters, export, checkpoint, prove, verify, and automatic
checkpoints. Events at chosen times are appended through the library (the CLI reads the system clock;
nothing sleeps), everything else goes through the in-process CLI.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agentctl import merkle
from agentctl.audit import AuditLog, Event
from agentctl.clock import FixedClock
from agentctl.encoding import b64u_decode, canonical_json
from agentctl.home import Home
from agentctl.note import parse_checkpoint, verify_note

NOW = time.time()
JAN = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()


def ok(cli, *args, **kw):
    r = cli(*args, **kw)
    assert r.code == 0, (args, r.stderr)
    return r


@pytest.fixture
def log_home(home) -> Path:
    """Six events: three on 2025-01-01 at 00:00, 01:00, 02:00 UTC, three 2 h, 30 min and 5 min ago."""
    log = AuditLog.open(Home(home))
    specs = [
        (JAN, Event("verify", "allow", principal="agent:a", action="deploy.staging", resource="api/web")),
        (JAN + 3600, Event("verify", "deny", principal="agent:a", action="deploy.prod", resource="api/web", reason="scope_denied")),
        (JAN + 7200, Event("sign", "ok", principal="agent:b", action="deploy.staging", resource="api/db")),
        (NOW - 7200, Event("verify", "deny", principal="agent:b", action="deploy.staging", resource="api/db", reason="expired")),
        (NOW - 1800, Event("keygen", "ok", principal="user:alice")),
        (NOW - 300, Event("verify", "allow", principal="agent:a", action="deploy.staging", resource="api/web",
                          on_behalf_of="user:alice", chain=("user:alice", "agent:a"), jtis=("j1",))),
    ]
    for at, event in specs:
        log.append([event], FixedClock(at))
    log.close()
    return home


def seqs(cli, *args) -> list[int]:
    r = ok(cli, "--json", "audit", *args)
    return [e["seq"] for e in r.json()["events"]]


@pytest.mark.parametrize("args, expected", [
    ((), [6, 5, 4, 3, 2, 1]),
    (("--agent", "agent:a"), [6, 2, 1]),
    (("--agent", "agent:b", "--outcome", "deny"), [4]),
    (("--action", "deploy.staging"), [6, 4, 3, 1]),
    (("--action", "deploy.staging", "--agent", "agent:b"), [4, 3]),
    (("--outcome", "allow"), [6, 1]),
    (("--outcome", "ok"), [5, 3]),
    (("--outcome", "error"), []),
    (("--agent", "agent:nobody"), []),
    (("--since", "1h"), [6, 5]),
    (("--since", "3h", "--until", "1h"), [4]),
    (("--until", "10m"), [5, 4, 3, 2, 1]),
    (("--since", "2d", "--agent", "agent:a"), [6]),
    (("--since", "2025-01-01T00:30:00Z", "--until", "2025-01-01T02:00:00Z"), [3, 2]),
    (("--until", "2025-01-01T01:59:59.999999Z"), [2, 1]),
    (("--since", "2025-01-01T01:00:00+01:00", "--until", "2025-01-01T01:00:00+00:00"), [2, 1]),
    (("--limit", "2"), [6, 5]),
    (("--limit", "2", "--outcome", "deny"), [4, 2]),
    (("--limit", "100", "--since", "1h"), [6, 5]),
])
def test_query_filters_newest_first(cli, log_home, args, expected):
    assert seqs(cli, *args) == expected


def test_query_json_gives_every_field_of_the_stored_event(cli, log_home):
    doc = ok(cli, "--json", "audit").json()
    assert doc["ok"] is True
    leaves = list(reversed(ok(cli, "audit", "export").stdout.splitlines()))
    assert doc["events"] == [json.loads(x) for x in leaves]
    assert ok(cli, "audit", "--json", "--limit", "1").json()["events"][0]["chain"] == ["user:alice", "agent:a"]


def test_query_human_table(cli, log_home):
    r = ok(cli, "audit", "--agent", "agent:a")
    t = [datetime.fromtimestamp(x, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for x in (NOW - 300, JAN + 3600, JAN)]
    assert r.stdout == (
        "SEQ  TIME                  EVENT   PRINCIPAL  ACTION          RESOURCE  OUTCOME  REASON\n"
        f"6    {t[0]}  verify  agent:a    deploy.staging  api/web   allow    -\n"
        f"2    {t[1]}  verify  agent:a    deploy.prod     api/web   deny     scope_denied\n"
        f"1    {t[2]}  verify  agent:a    deploy.staging  api/web   allow    -\n"
    )
    assert r.stderr == ""
    none = ok(cli, "audit", "--agent", "agent:nobody")
    assert none.stdout == "" and none.stderr == "agentctl: no audit events match\n"


@pytest.mark.parametrize("args, message", [
    (("--outcome", "maybe"), "bad --outcome 'maybe': use one of allow, deny, ok, error"),
    (("--outcome", "ALLOW"), "bad --outcome 'ALLOW': use one of allow, deny, ok, error"),
    (("--since", "yesterday"), "--since: bad time 'yesterday': use an RFC 3339 time (2026-11-29T14:00:00Z) or a duration back from now (1h)"),
    (("--until", "5x"), "--until: bad time '5x': use an RFC 3339 time (2026-11-29T14:00:00Z) or a duration back from now (1h)"),
    (("--since", "2025-01-01T00:00:00"), "--since: bad time '2025-01-01T00:00:00'"),
    (("--limit", "0"), "bad --limit 0: it must be 1 or more"),
    (("--limit", "-3"), "bad --limit -3: it must be 1 or more"),
    (("--limit", "x"), "invalid value for '--limit': 'x' is not a valid int"),
    (("--agent", "Agent X"), ""),
])
@pytest.mark.parametrize("json_mode", [False, True])
def test_bad_query_arguments_are_usage_errors(cli, log_home, args, message, json_mode):
    r = cli(*(("--json",) if json_mode else ()), "audit", *args)
    assert r.code == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"agentctl: error: {message}"), r.stderr
    assert all(line.startswith("agentctl: ") for line in lines) and len(lines) <= 2
    if json_mode:
        assert r.json()["ok"] is False
    else:
        assert r.stdout == ""


def test_a_missing_log_is_empty_and_stays_missing(cli, home):
    assert ok(cli, "audit").stderr == "agentctl: no audit events match\n"
    assert ok(cli, "--json", "audit").json() == {"ok": True, "events": []}
    assert ok(cli, "audit", "export").stdout == ""
    r = cli("audit", "verify")  # SPEC: never "intact" without a log; a home that never recorded anything is no evidence
    assert r.code == 3 and r.stdout == ""
    assert r.stderr.startswith(f"agentctl: error: there is no audit log in {home} yet: nothing has been recorded here\n")
    r = cli("audit", "prove", "1")
    assert r.code == 2 and "there is no audit log in this home yet" in r.stderr
    assert not (home / "audit.db").exists()


# --- export ------------------------------------------------------------------------------------------


def test_export_is_json_lines_of_the_canonical_leaves_oldest_first(cli, log_home):
    r = ok(cli, "audit", "export")
    lines = r.stdout.splitlines()
    assert r.stdout.endswith("\n") and len(lines) == 6
    docs = [json.loads(x) for x in lines]
    assert [d["seq"] for d in docs] == [1, 2, 3, 4, 5, 6]
    for line, doc in zip(lines, docs):
        assert line.encode() == canonical_json(doc)
    log = AuditLog.open(Home(log_home))
    assert [merkle.leaf_hash(x.encode()) for x in lines] == [log.event(s)[1] for s in range(1, 7)]
    log.close()
    assert [json.loads(x)["seq"] for x in ok(cli, "audit", "export", "--since", "1h").stdout.splitlines()] == [5, 6]
    assert [json.loads(x)["seq"] for x in ok(cli, "audit", "export", "--since", "2025-01-01T01:00:00Z").stdout.splitlines()] == [2, 3, 4, 5, 6]
    assert ok(cli, "audit", "export", "--since", "2099-01-01T00:00:00Z").stdout == ""
    r = cli("audit", "export", "--since", "soon")
    assert r.code == 2 and r.stderr.startswith("agentctl: error: --since: bad time 'soon'")
    for args in (("--json", "audit", "export"), ("audit", "export", "--json")):  # one document, as everywhere
        doc = ok(cli, *args).json()
        assert doc["ok"] is True and [e["seq"] for e in doc["events"]] == [1, 2, 3, 4, 5, 6]
        assert [json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for e in doc["events"]] == lines


# --- checkpoint, prove, verify -----------------------------------------------------------------------


def host_key(cli) -> tuple[str, bytes]:
    names = [p["name"] for p in ok(cli, "--json", "list").json()["principals"] if p["name"].startswith("host:")]
    assert len(names) == 1, names
    key = ok(cli, "--json", "pubkey", names[0], "--format", "b64").json()["key"]
    return names[0], b64u_decode(key)


def test_checkpoint_is_a_signed_note_by_the_host_key_made_on_first_use(cli, log_home, tmp_path):
    r = ok(cli, "audit", "checkpoint")
    note = r.stdout
    name, public = host_key(cli)
    assert re.fullmatch(r"host:[a-z0-9][a-z0-9_-]*", name)
    show = ok(cli, "--json", "show", name).json()["principal"]
    assert show["roles"] == ["audit"] and show["origin"] == "local"
    body = verify_note(note, name, public)
    origin, size, root = parse_checkpoint(body)
    assert origin.startswith("agentctl.audit/") and size == 7  # 6 events and the host key's keygen
    assert note == f"{body}\n\u2014 {name} {note.rsplit(' ', 1)[1]}"
    assert r.stderr == f"agentctl: checkpoint of 7 events signed by {name}\n"
    log = AuditLog.open(Home(log_home))
    assert root == merkle.root([log.event(s)[1] for s in range(1, 8)])
    log.close()
    events = ok(cli, "--json", "audit", "--limit", "2").json()["events"]
    assert [(e["event"], e["principal"], e["metadata"]) for e in events] == [
        ("checkpoint", name, {"automatic": False, "size": 7}),
        ("keygen", name, {"kid": show["kid"], "purpose": "audit key"}),
    ]

    out = tmp_path / "kept.txt"
    r = ok(cli, "--json", "audit", "checkpoint", "-o", str(out))
    doc = r.json()
    assert doc["size"] == 8 and doc["signer"] == name and doc["note"] == out.read_text()
    assert base64.b64decode(doc["root"]) == parse_checkpoint(verify_note(doc["note"], name, public))[2]
    assert f"written to {out}" in r.stderr
    r = ok(cli, "audit", "checkpoint", "-o", str(out))
    assert r.stdout == "" and parse_checkpoint(verify_note(out.read_text(), name, public))[1] == 9
    assert host_key(cli)[0] == name  # one host key, made once


def test_prove_gives_a_proof_that_verifies_against_the_checkpoint_note(cli, log_home):
    note = ok(cli, "audit", "checkpoint").stdout
    ok(cli, "keygen", "agent:after")  # event 9, after the checkpoint's event 8
    name, public = host_key(cli)
    _, size, root = parse_checkpoint(verify_note(note, name, public))
    assert size == 7
    for seq in range(1, size + 1):
        doc = ok(cli, "--json", "audit", "prove", str(seq)).json()
        assert doc["checkpoint"] == note and doc["seq"] == seq and doc["index"] == seq - 1
        leaf = doc["leaf"].encode()
        assert json.loads(leaf) == doc["event"] and json.loads(leaf)["seq"] == seq
        proof = [base64.b64decode(h) for h in doc["proof"]]
        merkle.verify_inclusion(merkle.leaf_hash(leaf), seq - 1, size, proof, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(merkle.leaf_hash(leaf.replace(b'"seq":', b'"seq": ')), seq - 1, size, proof, root)
    human = ok(cli, "audit", "prove", "3")
    assert json.loads(human.stdout) == {k: v for k, v in ok(cli, "--json", "audit", "prove", "3").json().items() if k != "ok"}

    for seq in (8, 9):
        r = cli("audit", "prove", str(seq))
        assert r.code == 2
        assert r.stderr == f"agentctl: error: no checkpoint covers event {seq} yet\nagentctl: hint: take one: agentctl audit checkpoint\n"
    for seq in ("0", "10", "-1"):
        r = cli("audit", "prove", "--", seq) if seq.startswith("-") else cli("audit", "prove", seq)
        assert r.code == 2 and r.stderr.startswith("agentctl: error: no audit event"), r.stderr
    assert cli("audit", "prove", "three").code == 2
    assert cli("audit", "prove").code == 2


def test_verify_an_intact_log(cli, log_home, tmp_path):
    r = ok(cli, "audit", "verify")
    assert r.stdout == "audit log intact: 6 events, 0 checkpoint(s) verified\n"
    ok(cli, "audit", "checkpoint", "-o", str(tmp_path / "kept.txt"))
    ok(cli, "keygen", "agent:x")
    r = ok(cli, "audit", "verify", "--checkpoint", str(tmp_path / "kept.txt"))
    assert r.stdout == "audit log intact: 9 events, 1 checkpoint(s) verified; extends the kept checkpoint of 7 events\n"
    doc = ok(cli, "--json", "audit", "verify").json()
    assert doc == {"ok": True, "size": 9, "checkpoints_checked": 1, "problem": None, "first_bad_seq": None,
                   "last_bad_seq": None, "external_checkpoint": None, "pruned_through": 0}


def test_automatic_checkpoints_every_n_events(cli, home):
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("checkpoint_every = 5\n")
    for i in range(12):
        ok(cli, "keygen", f"agent:k{i}")
    log = AuditLog.open(Home(home))
    assert [c[0] for c in log.checkpoints()] == [6, 10, 15]
    log.close()
    events = list(reversed(ok(cli, "--json", "audit").json()["events"]))
    assert len(events) == 16
    name, _ = host_key(cli)
    assert [(e["seq"], e["event"], e["principal"]) for e in events if e["principal"] and e["principal"].startswith("host:")] == [
        (6, "keygen", name), (7, "checkpoint", name), (11, "checkpoint", name), (16, "checkpoint", name)]
    assert [e["metadata"] for e in events if e["event"] == "checkpoint"] == [
        {"automatic": True, "size": 6}, {"automatic": True, "size": 10}, {"automatic": True, "size": 15}]
    assert ok(cli, "audit", "verify").stdout == "audit log intact: 16 events, 3 checkpoint(s) verified\n"
    assert ok(cli, "--json", "audit", "prove", "15").json()["tree_size"] == 15


def test_checkpoint_every_0_turns_them_off(cli, home):
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("checkpoint_every = 0\n")
    for i in range(3):
        ok(cli, "keygen", f"agent:k{i}")
    assert ok(cli, "audit", "verify").stdout == "audit log intact: 3 events, 0 checkpoint(s) verified\n"
