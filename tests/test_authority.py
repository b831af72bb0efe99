"""Authority and roles (SPEC): what a principal may authorize on its own, judged by the verifying home.
Attacks from the agent's side: acting with no grant, borrowing a known agent's name, widening a grant
beyond its signer's authority."""

from __future__ import annotations

import json

import pytest

from agentctl.clock import FixedClock
from agentctl.errors import UsageError, VerificationError
from agentctl.home import Home
from agentctl.scopes import parse_scopes
from agentctl.verify import NO_AUDIT, Role, StaticTrust, Verifier

from test_library_verifier import NOW, Agent, make_action, make_grant


def home_with(home, config: str | None = None):
    """The test's home (AGENTCTL_HOME), created with ``config``."""
    home.mkdir(mode=0o700)
    if config is not None:
        (home / "config.toml").write_text(config)
    return home


def test_the_readme_tour_agent_cannot_act_with_no_grant(cli, home, tmp_path):
    """The tour's agent signs repo.delete prod/billing on its own; the check must deny it (issue 9.1)."""
    home_with(home)
    assert cli("keygen", "user:alice").code == 0
    assert cli("keygen", "agent:code-reviewer:prod", "--role", "reviewer").code == 0
    (tmp_path / "pr.json").write_text("{}")
    r = cli("sign", "--as", "agent:code-reviewer:prod", "--action", "repo.delete", "--resource", "prod/billing",
            "--data", str(tmp_path / "pr.json"))
    assert r.code == 0, r.stderr
    token = r.stdout.strip()
    r = cli("--json", "verify", token, "--action", "repo.delete", "--resource", "prod/billing",
            "--data", str(tmp_path / "pr.json"), "--once")
    assert r.code == 1
    doc = json.loads(r.stdout)
    assert doc["reason"] == "scope_denied" and "authority = quick-start" in doc["detail"]
    assert not (home / "seen").exists() or not any((home / "seen").iterdir())  # once records only what held
    # a user created here does have authority of its own (quick-start)
    r = cli("sign", "--as", "user:alice", "--action", "repo.delete", "--resource", "prod/billing")
    assert cli("verify", r.stdout.strip()).code == 0


def test_roles_give_agents_authority_only_with_agents_true(cli, home):
    home_with(home, 'authority = "roles"\n\n[roles.reporter]\nscopes = ["report.*"]\nagents = true\n\n'
                        '[roles.engineer]\nscopes = ["repo.*:acme/**"]\n')
    assert cli("keygen", "agent:bot", "--role", "reporter", "--role", "engineer").code == 0
    ok = cli("sign", "--as", "agent:bot", "--action", "report.send", "--resource", "daily").stdout.strip()
    assert cli("verify", ok).code == 0
    wide = cli("sign", "--as", "agent:bot", "--action", "repo.delete", "--resource", "acme/web").stdout.strip()
    r = cli("verify", wide)
    assert r.code == 1 and "scope_denied" in r.stderr and "engineer" in r.stderr and "agents = true" in r.stderr


def test_delegate_refuses_a_scope_beyond_the_signers_authority(cli, home, tmp_path):
    home_with(home, 'authority = "roles"\n\n[roles.engineer]\nscopes = ["pull_request.*:acme/*"]\n')
    assert cli("keygen", "user:alice", "--role", "engineer").code == 0
    assert cli("keygen", "agent:bot").code == 0
    before = sorted(p.name for p in home.iterdir())
    r = cli("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "repo.delete:**", "-o", str(tmp_path / "g.jwt"))
    assert r.code == 1 and "scope_escalation" in r.stderr and "repo.delete:**" in r.stderr and "engineer" in r.stderr
    assert not (tmp_path / "g.jwt").exists()
    assert cli("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "pull_request.create:acme/web").code == 0
    assert sorted(p.name for p in home.iterdir()) == before


def test_a_grant_widened_beyond_the_roots_authority_is_refused():
    """Minted elsewhere (or in a home with wider roles), judged here: scope_escalation at step 8."""
    alice, bot = Agent.new("user:alice"), Agent.new("agent:bot")
    roles = {"engineer": Role("engineer", parse_scopes(["pull_request.*:acme/*"]))}
    from agentctl.models import Key, Principal

    p = Principal("user:alice", "imported", 0.0, (Key(alice.public, 0.0),), roles=("engineer",))
    v = Verifier(StaticTrust({"user:alice": p}, roles=roles), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    v.verify_grant(make_grant(alice, bot, "pull_request.create:acme/web"))
    with pytest.raises(VerificationError) as e:
        v.verify_grant(make_grant(alice, bot, "pull_request.create:acme/web repo.delete:acme/web"))
    assert e.value.reason == "scope_escalation" and "repo.delete:acme/web" in e.value.detail and "engineer" in e.value.detail
    with pytest.raises(VerificationError) as e:  # an action under it fails the same way, before its own checks
        v.verify_action(make_action(bot, "repo.delete", "acme/web", grant=make_grant(alice, bot, "repo.delete:acme/*")))
    assert e.value.reason == "scope_escalation"


def test_an_agent_cannot_borrow_a_known_agents_name():
    """An attacker with its own key gets a grant naming a known agent (whose roles it wants): the hop's
    cnf is not one of that agent's keys, so the chain is broken."""
    alice, deployer, mallory = Agent.new("user:alice"), Agent.new("agent:deployer"), Agent.new("agent:deployer")
    trust = StaticTrust({"user:alice": alice.public, "agent:deployer": deployer.public})
    v = Verifier(trust, recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    v.verify_action(make_action(deployer, "deploy.staging", "api/web", grant=make_grant(alice, deployer, "deploy.staging:api/*")))
    borrowed = make_grant(alice, mallory, "deploy.staging:api/*")  # to "agent:deployer", bound to mallory's key
    with pytest.raises(VerificationError) as e:
        v.verify_action(make_action(mallory, "deploy.staging", "api/web", grant=borrowed))
    assert e.value.reason == "chain_broken" and "agent:deployer" in e.value.detail
    # a delegate unknown here is accepted, marked
    stranger = Verifier(StaticTrust({"user:alice": alice.public}), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    assert stranger.verify_action(make_action(mallory, "deploy.staging", "api/web", grant=borrowed)).verdict()["agent_known"] is False
    strict = Verifier(StaticTrust({"user:alice": alice.public}, require_known_agents=True), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    with pytest.raises(VerificationError) as e:
        strict.verify_action(make_action(mallory, "deploy.staging", "api/web", grant=borrowed))
    assert e.value.reason == "untrusted_root"


@pytest.mark.parametrize("config, words", [
    ('colour = "blue"\n', "unknown setting 'colour'"),
    ('[wat]\nx = 1\n', "unknown setting 'wat'"),
    ('authority = "everyone"\n', "bad authority"),
    ('[roles.x]\nscopes = ["a b"]\n', "roles.x.scopes"),
    ('[roles.x]\nscopes = ["ok.action"]\nagent = true\n', "unknown key 'agent'"),
    ('[roles.x]\nscopes = "ok.action"\n', "roles.x.scopes"),
    ('leeway = "11m"\n', "more than 10m"),
])
def test_a_bad_config_is_a_usage_error_for_every_command(cli, home, config, words):
    home_with(home, config)
    for args in (("keygen", "user:bob"), ("verify", "a.b.c"), ("delegate", "--to", "agent:x", "--scope", "x")):
        r = cli(*args)
        assert r.code == 2, (args, r.stderr)
        assert words in r.stderr
    with pytest.raises(UsageError):
        Home(home).config


def test_config_defaults_to_quick_start(home):
    home_with(home)
    h = Home(home)
    assert h.config.authority == "quick-start" and h.config.roles == () and h.config.require_known_agents is False


def test_show_and_list_name_the_roles_the_authority_and_the_rule_in_force(cli, home):
    assert cli("keygen", "user:alice", "--role", "engineer", "--role", "reviewer").code == 0
    assert cli("keygen", "agent:bot").code == 0
    listed = cli("--json", "list").json()
    assert listed["authority_rule"] == "quick-start"
    by_name = listed["authority"]
    assert by_name["user:alice"]["everything"] and by_name["agent:bot"]["scopes"] == [] and not by_name["agent:bot"]["everything"]
    (home / "config.toml").write_text('authority = "roles"\n\n[roles.engineer]\nscopes = ["pull_request.*:acme/*"]\n')
    shown = cli("--json", "show", "user:alice").json()["authority"]
    assert shown["rule"] == "roles" and shown["scopes"] == ["pull_request.*:acme/*"] and shown["defined_roles"] == ["engineer"]
    assert "engineer" in shown["detail"]
    human = cli("show", "user:alice")
    assert "reviewer (label)" in human.stdout and "engineer (defined)" in human.stdout and "authority = roles" in human.stdout
    r = cli("list")
    assert "pull_request.*:acme/*" in r.stdout and "authority rule in force: roles" in r.stderr
