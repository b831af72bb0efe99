"""Messages a person meets on a mistake: the hint never contradicts the error, a batch line says what
it lacks, and a grant that ran out says how to go on (a CI job's grant, typically)."""

from __future__ import annotations

import json
import time

import pytest

from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.delegation import delegate


@pytest.fixture
def two(cli, home):
    for name in ("user:alice", "agent:ci:deploy"):
        assert cli("keygen", name, env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    return home


def test_a_scope_with_a_space_gets_a_hint_that_agrees(cli, two):
    r = cli("delegate", "--from", "user:alice", "--to", "agent:ci:deploy", "--scope", "deploy.x:api/a deploy.y:api/b")
    assert r.code == 2
    error, hint = r.stderr.splitlines()
    assert error.startswith("agentctl: error: bad scope") and "give one at a time" in error
    assert hint.startswith("agentctl: hint: ")
    assert "separated by spaces" not in hint  # the error just said a space is the mistake
    assert "on its own" in hint


def _grant(home, clock_now: float, ttl: int = 600) -> str:
    ctx = Context.for_home(str(home), clock=FixedClock(clock_now))
    token, _ = delegate(ctx, to="agent:ci:deploy", scopes=["deploy.*:api/*"], ttl=ttl, issuer="user:alice")
    return token


def test_signing_under_an_expired_grant_says_how_to_get_a_new_one(cli, two, tmp_path):
    grant = tmp_path / "grant.jwt"
    grant.write_text(_grant(two, time.time() - 7200) + "\n")  # minted two hours ago, for ten minutes
    r = cli("sign", "--as", "agent:ci:deploy", "--action", "deploy.staging", "--resource", "api/web", "--grant", str(grant),
            env={"AGENTCTL_KEYSTORE": "file"})
    assert r.code == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("agentctl: denied: expired: ")
    assert lines[1].startswith("agentctl: hint: mint a new grant") and "agentctl delegate --to agent:ci:deploy" in lines[1]


def test_redelegating_an_expired_parent_says_where_a_new_one_comes_from(cli, two, tmp_path):
    ctx = Context.for_home(str(two), clock=FixedClock(time.time() - 7200))
    token, _ = delegate(ctx, to="agent:ci:deploy", scopes=["deploy.*:api/*"], ttl=600, issuer="user:alice", max_depth=1)
    (tmp_path / "parent.jwt").write_text(token)
    assert cli("keygen", "agent:helper", env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    r = cli("delegate", "--parent", str(tmp_path / "parent.jwt"), "--to", "agent:helper", "--scope", "deploy.x:api/web",
            env={"AGENTCTL_KEYSTORE": "file"})
    assert r.code == 1, r.stderr
    assert "expired" in r.stderr.splitlines()[0]
    assert r.stderr.splitlines()[1].startswith("agentctl: hint: the parent grant ran out")


@pytest.mark.parametrize("flags, given, missing", [
    (("--action", "deploy.x"), "action", "resource"),
    (("--resource", "api/web"), "resource", "action"),
])
def test_a_bare_grant_line_says_which_flag_is_missing(cli, two, flags, given, missing):
    grant = _grant(two, time.time())
    r = cli("verify", "--batch", *flags, input=grant + "\n")
    assert r.code == 1
    verdict = json.loads(r.stdout)
    assert verdict["reason"] == "scope_denied"
    assert f"only the {given} is given" in verdict["detail"]
    assert f"not the {missing}" in verdict["detail"]
    single = cli("verify", grant, *flags)
    assert single.code == 1 and f"hint: add --{missing}" in single.stderr
