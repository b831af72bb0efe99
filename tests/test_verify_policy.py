"""Step 11 (SPEC "Policy") inside verification, from the attacker's side: the input document holds only
verified facts, every set must allow, anything but an exact yes is ``policy_denied``, and each decision
is recorded so that ``policy input`` and ``policy eval`` reproduce it."""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("regopy")
pytest.importorskip("cedarpy")

from agentctl.clock import FixedClock  # noqa: E402
from agentctl.encoding import canonical_json  # noqa: E402
from agentctl.errors import REASONS, UsageError, VerificationError  # noqa: E402
from agentctl.models import Key, Principal  # noqa: E402
from agentctl.policy import load_set, load_sets  # noqa: E402
from agentctl.recording import MemoryRecorder  # noqa: E402
from agentctl.verify import NO_AUDIT, StaticTrust, Verifier  # noqa: E402

from test_library_verifier import NOW, Agent, make_action, make_grant  # noqa: E402

SEED = """package agent.authz
default allow = false
allow if {
  input.agent.id == "agent:code-reviewer:prod"
  input.action == "pull_request.create"
  startswith(input.resource.repo, "acme/")
  input.delegation.user_role == "engineer"
}
"""

SEED_CEDAR = """@id("seed")
permit (
  principal == Agentctl::Agent::"agent:code-reviewer:prod",
  action == Agentctl::Action::"pull_request.create",
  resource
) when {
  resource has repo && resource.repo like "acme/*" &&
  context has delegation && context.delegation has user_role &&
  context.delegation.user_role == "engineer"
};
"""

CTX = {"resource": {"repo": "acme/api"}}
ALICE, BOT = Agent.new("user:alice"), Agent.new("agent:code-reviewer:prod")


def principal(agent: Agent, roles=(), attrs=()) -> Principal:
    return Principal(agent.name, "local", 0.0, (Key(agent.public, 0.0),), roles=tuple(roles), attrs=tuple(attrs))


def verifier(policies, *, alice_roles=("engineer",), bot_known=True, recorder=NO_AUDIT, bot_roles=()) -> Verifier:
    people = {"user:alice": principal(ALICE, alice_roles)}
    if bot_known:
        people[BOT.name] = principal(BOT, bot_roles)
    return Verifier(StaticTrust(people), recorder=recorder, clock=FixedClock(NOW + 5), policies=policies)


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.fixture(params=["rego", "cedar"])
def seed_set(request, tmp_path):
    if request.param == "rego":
        return load_set([write(tmp_path, "seed.rego", SEED)])
    return load_set([write(tmp_path, "seed.cedar", SEED_CEDAR)])


def pr_action(repo="acme/api", action="pull_request.create") -> str:
    grant = make_grant(ALICE, BOT, "pull_request.*:acme/*")
    return make_action(BOT, action, repo, grant=grant)


def test_policy_denied_is_a_reason_code_between_payload_and_replay():
    assert REASONS.index("payload_mismatch") < REASONS.index("policy_denied") < REASONS.index("replayed")


def test_the_seed_policy_allows_alice_the_engineers_agent(seed_set):
    result = verifier([seed_set]).verify(pr_action(), context=CTX)
    pol = result.verdict()["policy"]
    assert pol["engine"] == seed_set.engine and pol["digest"] == seed_set.digest
    assert pol["result"] in (True, "Allow") and len(pol["input_sha256"]) == 64


@pytest.mark.parametrize("case", ["role", "repo", "no_context", "other_action", "no_grant"])
def test_the_seed_policy_denies(seed_set, case):
    roles, ctx, token, known = ("engineer",), CTX, pr_action(), True
    if case == "role":
        roles = ("sales",)
    elif case == "repo":
        ctx = {"resource": {"repo": "evil/api"}}
    elif case == "no_context":
        ctx = None
    elif case == "other_action":
        token = pr_action(action="pull_request.merge")
    elif case == "no_grant":  # the agent acts on its own: no delegation, so no user_role
        token = make_action(BOT, "pull_request.create", "acme/api")
    v = verifier([seed_set], alice_roles=roles, bot_known=known or case == "no_grant",
                 bot_roles=("engineer",) if case == "no_grant" else ())
    if case == "no_grant":  # bot needs authority of its own to reach step 11: give it some
        v = Verifier(StaticTrust({"user:alice": principal(ALICE, roles), BOT.name: principal(BOT)},
                                 authority={BOT.name: ["pull_request.*:**"]}), recorder=NO_AUDIT,
                     clock=FixedClock(NOW + 5), policies=[seed_set])
    with pytest.raises(VerificationError) as e:
        v.verify(token, context=ctx)
    assert e.value.reason == "policy_denied"
    assert seed_set.files[0] in e.value.detail  # the detail names the set
    assert e.value.verdict["policy"]["digest"] == seed_set.digest


def test_a_context_cannot_replace_a_verified_field(tmp_path):
    """The context lands under "context" (and resource members beside resource.id); agent, action,
    delegation, token and approval stay what was verified. A resource id in the context is refused."""
    trusting = write(tmp_path, "trust.rego", """package agent.authz
allow if { input.agent.id == "agent:root:admin" }
allow if { input.action == "admin.everything" }
allow if { input.delegation.user == "user:root" }
allow if { input.token.type == "forged" }
allow if { input.approval.by == "user:carol" }
allow if { input.resource.id == "prod/db" }
allow if { input.now == 1 }
""")
    v = verifier(load_sets(policies=[trusting]))
    forged = {"agent": {"id": "agent:root:admin"}, "action": "admin.everything", "delegation": {"user": "user:root"},
              "token": {"type": "forged"}, "approval": {"by": "user:carol"}, "now": 1, "resource": {"repo": "x"}}
    with pytest.raises(VerificationError) as e:
        v.verify(pr_action(), context=forged)
    assert e.value.reason == "policy_denied"
    doc = v.policy_input(pr_action(), context=forged)
    assert doc["agent"]["id"] == BOT.name and doc["action"] == "pull_request.create" and doc["approval"] is None
    assert doc["context"]["agent"] == {"id": "agent:root:admin"}  # what was claimed stays where claims go
    with pytest.raises(UsageError):
        v.verify(pr_action(), context={"resource": {"id": "prod/db"}})
    with pytest.raises(UsageError):
        v.verify(pr_action(), context=["not", "an", "object"])


def test_an_unknown_agent_has_no_roles_and_cannot_satisfy_a_role_policy(tmp_path):
    by_role = load_set([write(tmp_path, "role.rego", 'package agent.authz\nallow if { "engineer" in input.agent.roles }\n')])
    known = verifier([by_role], bot_roles=("engineer",))
    known.verify(pr_action())
    stranger = verifier([by_role], bot_known=False)
    doc = stranger.policy_input(pr_action())
    assert doc["agent"] == {"id": BOT.name, "kid": BOT.kid, "known": False, "roles": [], "attrs": {}}
    with pytest.raises(VerificationError) as e:
        stranger.verify(pr_action(), context={"agent": {"roles": ["engineer"]}})
    assert e.value.reason == "policy_denied"


@pytest.mark.parametrize("body, words", [
    ("package agent.authz\nallow if { 1 / 0 }\n", "error"),
    ("package agent.authz\nallow := 1 / 0\n", "error"),
    ("package agent.authz\nallow := \"yes\"\n", "not true"),
    ("package agent.authz\nallow if { input.nothing == 1 }\n", "undefined"),
    ("package agent.authz\ndefault allow := false\n", "false"),
])
def test_anything_but_exactly_true_denies(tmp_path, body, words):
    s = load_set([write(tmp_path, "p.rego", body)])
    with pytest.raises(VerificationError) as e:
        verifier([s]).verify(pr_action(), context=CTX)
    assert e.value.reason == "policy_denied" and words in e.value.detail


def test_a_second_set_that_denies_wins_and_both_are_named(tmp_path):
    allow = load_set([write(tmp_path, "allow.rego", "package agent.authz\nallow := true\n")])
    deny = load_set([write(tmp_path, "deny.cedar", 'forbid (principal, action, resource);\n')])
    with pytest.raises(VerificationError) as e:
        verifier([allow, deny]).verify(pr_action(), context=CTX)
    pol = e.value.verdict["policy"]
    assert e.value.reason == "policy_denied" and "deny.cedar" in e.value.detail
    assert pol["engine"] == "cedar" and [s["allowed"] for s in pol["sets"]] == [True, False]
    assert pol["digest"] not in (allow.digest, deny.digest)  # over both sets' files, in order


def test_a_grant_verified_alone_is_asked_with_what_was_asked(tmp_path):
    s = load_set([write(tmp_path, "g.rego", 'package agent.authz\nallow if { input.token.type == "grant"; input.action == "pull_request.create"; input.resource.id == "acme/api" }\n')])
    v = verifier([s])
    grant = make_grant(ALICE, BOT, "pull_request.*:acme/*")
    assert v.verify_grant(grant, action="pull_request.create", resource="acme/api").verdict()["policy"]["result"] is True
    with pytest.raises(VerificationError) as e:
        v.verify_grant(grant)
    assert e.value.reason == "policy_denied"
    doc = v.policy_input(grant)
    assert doc["action"] is None and doc["resource"] == {"id": None} and doc["payload"] is None
    assert doc["delegation"]["user"] == "user:alice" and doc["delegation"]["depth"] == 1


def test_policy_runs_only_after_the_cryptography_holds(tmp_path):
    s = load_set([write(tmp_path, "allow.rego", "package agent.authz\nallow := true\n")])
    forged = make_action(BOT, "pull_request.create", "acme/api", grant=make_grant(ALICE, BOT, "pull_request.*:acme/*"),
                         seed=Agent.new("agent:x").seed)
    with pytest.raises(VerificationError) as e:
        verifier([s]).verify(forged)
    assert e.value.reason in ("chain_broken", "bad_signature") and e.value.verdict["policy"] is None


def test_the_event_names_the_decision_and_reproduces_it(tmp_path):
    s = load_set([write(tmp_path, "seed.rego", SEED)])
    rec = MemoryRecorder()
    v = verifier([s], recorder=rec)
    token = pr_action()
    v.verify(token, context=CTX)
    with pytest.raises(VerificationError):
        v.verify(token, context={"resource": {"repo": "evil/x"}})
    allowed, denied = (e.metadata["policy"] for e in rec.events)
    assert allowed["digest"] == denied["digest"] == s.digest and allowed["query"] == "data.agent.authz.allow"
    assert allowed["engine"] == "rego" and allowed["result"] is True and denied["result"] is False
    doc = v.policy_input(token, context=CTX)
    assert allowed["input_sha256"] == hashlib.sha256(canonical_json(doc)).hexdigest()
    assert s.decide(json.loads(json.dumps(doc))).allowed


def test_the_verifier_refuses_what_is_not_a_policy_set():
    with pytest.raises(UsageError):
        Verifier(StaticTrust({}), recorder=NO_AUDIT, policies=["seed.rego"])
