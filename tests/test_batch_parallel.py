"""`verify --batch` checks lines on a small thread pool: verdicts, their order, the audit events'
order and `--once` replay within one batch are exactly those of checking the lines one by one."""

from __future__ import annotations

import json
import random
import time

from agentctl.audit import AuditLog
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
