"""A denied verify is recorded with whom the token claimed to be, marked as claimed."""

from __future__ import annotations


def test_a_denial_names_the_claimed_agent(cli, home, tmp_path):
    assert cli("keygen", "user:alice").code == 0
    assert cli("keygen", "agent:cr").code == 0
    grant, action = tmp_path / "g.jwt", tmp_path / "a.jwt"
    assert cli("delegate", "--from", "user:alice", "--to", "agent:cr", "--scope", "pr.*:acme/*", "-o", str(grant)).code == 0
    assert cli("sign", "--as", "agent:cr", "--action", "pr.create", "--resource", "acme/x", "--grant", str(grant), "-o", str(action)).code == 0
    r = cli("verify", str(action), "--action", "pr.merge", "--resource", "acme/x")
    assert r.code == 1
    r = cli("verify", "-", input="garbage")
    assert r.code == 1
    events = cli("--json", "audit", "--outcome", "deny").json()["events"]
    assert len(events) == 2
    unreadable, denied = events  # newest first
    assert denied["principal"] == "agent:cr" and denied["on_behalf_of"] == "user:alice"
    assert denied["metadata"]["claimed"] is True and denied["reason"] == "scope_denied"
    assert len(denied["jtis"]) == 1
    assert unreadable["principal"] is None and "claimed" not in unreadable["metadata"]
    mine = cli("--json", "audit", "--agent", "agent:cr").json()["events"]
    assert any(e["outcome"] == "deny" for e in mine)


def test_a_denied_grant_is_recorded_under_its_holder(cli, home, tmp_path):
    assert cli("keygen", "user:alice").code == 0
    assert cli("keygen", "agent:cr").code == 0
    grant = tmp_path / "g.jwt"
    assert cli("delegate", "--from", "user:alice", "--to", "agent:cr", "--scope", "pr.*:acme/*", "-o", str(grant)).code == 0
    assert cli("verify", str(grant), "--audience", "someone-else", "--action", "deploy.x", "--resource", "y").code == 1
    denied = cli("--json", "audit", "--outcome", "deny").json()["events"][0]
    assert denied["principal"] == "agent:cr" and denied["on_behalf_of"] == "user:alice"
    assert denied["metadata"]["claimed"] is True
