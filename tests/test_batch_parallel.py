"""`verify --batch` records each chunk's events on a thread while the next chunk is checked: verdicts,
their order, the audit events' order and `--once` replay within one batch are exactly those of checking
the lines one by one, and no verdict is printed before the append (its fsync) covering its event."""

from __future__ import annotations

import json
import random
import time

import pytest

import agentctl.recording
from agentctl._cli import batch_cmds
from agentctl.audit import AuditLog
from agentctl.errors import OperationalError
from agentctl.encoding import b64u_encode

from test_batch import trusting_alice, verdicts
from test_library_verifier import Agent, make_action, make_grant


def test_once_refuses_the_second_of_two_lines_with_one_jti_however_the_threads_run(cli, tmp_path):
    now = int(time.time())
    alice, deployer = Agent.new("user:alice"), Agent.new("agent:deployer")
    grant = make_grant(alice, deployer, "deploy.staging:api/*", now=now)
    actions = [make_action(deployer, "deploy.staging", f"api/web-{i}", grant=grant, now=now) for i in range(150)]
    rnd = random.Random(7)
    lines = []
    for i, a in enumerate(actions):  # each action twice, the repeat a few lines later (often in flight together)
        lines.insert(min(len(lines), rnd.randrange(len(lines) + 1)), a) if i % 3 == 0 else lines.append(a)
        lines.insert(len(lines) - rnd.randrange(0, 3) if lines else 0, a)
    first_seen: set[str] = set()
    expected = []
    for token in lines:
        expected.append(None if token not in first_seen else "replayed")
        first_seen.add(token)
    home = tmp_path / "tool"
    trusting_alice(home)
    assert cli("--home", str(home), "import", "user:alice", b64u_encode(alice.public), "--role", "deploy-lead").code == 0
    r = cli("--home", str(home), "verify", "--batch", "--once", input="\n".join(lines) + "\n")
    out = verdicts(r)
    assert [v["line"] for v in out] == list(range(1, len(lines) + 1))
    assert [v["reason"] for v in out] == expected
    assert r.code == 1

    log = AuditLog.open_existing(home / "audit.db")
    try:
        events = [json.loads(leaf) for leaf in log.export()]
    finally:
        log.close()
    verified = [e for e in events if e["event"] == "verify"]
    # the log holds the verdicts in input order
    assert [(e["outcome"], e["reason"]) for e in verified] == [("allow" if x is None else "deny", x) for x in expected]
    assert [e["resource"] for e in verified] == [v["resource"] for v in out]


def _batch_home(cli, tmp_path, n: int):
    now = int(time.time())
    alice, deployer = Agent.new("user:alice"), Agent.new("agent:deployer")
    grant = make_grant(alice, deployer, "deploy.staging:api/*", now=now)
    actions = [make_action(deployer, "deploy.staging", f"api/web-{i}", grant=grant, now=now) for i in range(n)]
    home = tmp_path / "tool"
    trusting_alice(home)
    assert cli("--home", str(home), "import", "user:alice", b64u_encode(alice.public), "--role", "deploy-lead").code == 0
    return home, actions


def _chunked(cli, tmp_path, monkeypatch, behind: bool):
    """A home, 10 actions, chunks of 3 recorded behind or in line, and the real HomeRecorder.record."""
    home, actions = _batch_home(cli, tmp_path, 10)
    monkeypatch.setattr(batch_cmds, "CHUNK", 3)
    monkeypatch.setattr(batch_cmds, "COMMIT_BEHIND", behind)
    return home, actions, agentctl.recording.HomeRecorder.record


@pytest.mark.parametrize("behind", [True, False])
def test_no_verdict_is_printed_before_the_append_that_records_it(cli, tmp_path, monkeypatch, behind):
    import sys

    home, actions, real = _chunked(cli, tmp_path, monkeypatch, behind)
    seen = []  # per append: (the resources it records, the verdict lines printed when it returned)

    def record(self, *events):
        real(self, *events)  # durable when it returns
        seen.append(([e.resource for e in events], sys.stdout.getvalue().count("\n")))

    monkeypatch.setattr(agentctl.recording.HomeRecorder, "record", record)
    r = cli("--home", str(home), "verify", "--batch", input="\n".join(actions) + "\n")
    assert r.code == 0, r.stderr
    out = verdicts(r)
    assert [v["resource"] for v in out] == [f"api/web-{i}" for i in range(10)]
    assert [res for res, _ in seen] == [[f"api/web-{i}" for i in range(k, min(k + 3, 10))] for k in range(0, 10, 3)]
    for k, (_, printed) in enumerate(seen):
        assert printed <= 3 * k  # none of this chunk's verdicts was out before its append returned


@pytest.mark.parametrize("behind", [True, False])
def test_a_failed_append_prints_no_verdict_of_its_chunk_nor_a_later_one(cli, tmp_path, monkeypatch, behind):
    home, actions, real = _chunked(cli, tmp_path, monkeypatch, behind)
    calls = []

    def record(self, *events):
        calls.append(len(events))
        if len(calls) == 2:
            raise OperationalError("audit append failed (test): disk full")
        real(self, *events)

    monkeypatch.setattr(agentctl.recording.HomeRecorder, "record", record)
    r = cli("--home", str(home), "verify", "--batch", input="\n".join(actions) + "\n")
    assert r.code == 3
    assert [v["line"] for v in verdicts(r)] == [1, 2, 3]  # only the chunk that was recorded
    assert r.stderr.startswith("agentctl: error: audit append failed (test): disk full")
    assert "Traceback" not in r.stderr
    log = AuditLog.open_existing(home / "audit.db")
    try:
        verified = [json.loads(leaf)["resource"] for leaf in log.export() if json.loads(leaf)["event"] == "verify"]
    finally:
        log.close()
    assert verified == ["api/web-0", "api/web-1", "api/web-2"]
