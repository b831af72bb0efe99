"""Approvals from the attacker's side, on the library (SPEC "Approvals", step 10 and step 12): every
way to reuse, forge, stretch or self-issue an approval is refused with its reason."""

from __future__ import annotations

import hashlib

import pytest

from agentctl import (ApprovalRules, FixedClock, MemoryRecorder, MemorySeenStore, StaticTrust, VerificationError,
                      Verifier, approve_with, delegate_with, request_with, sign_action_with, signer_from_seed)
from agentctl.errors import UsageError
from agentctl.models import Key, Principal, Revocation, Revocations
from agentctl import crypto
from helpers_tokens import digest, parts, resign

NOW = 1_800_000_000
SEEDS = {n: hashlib.sha256(n.encode()).digest() for n in
         ("user:alice", "agent:deployer", "user:carol", "user:mallory", "agent:other")}
AUD = "deploy-gate"
PAYLOAD = b'{"version": "1.2.3"}'


def principal(name, *, seeds=(), roles=(), attrs=()):
    keys = tuple(Key(crypto.public_key(s), 0.0, "retired", 1.0) for s in seeds) + (Key(crypto.public_key(SEEDS[name]), 0.0),)
    return Principal(name, "imported", 0.0, keys, roles=tuple(roles), attrs=tuple(attrs))


def signer(name, seed=None):
    return signer_from_seed(name, seed or SEEDS[name])


class World:
    def __init__(self, **kw):
        self.clock = FixedClock(NOW)
        self.principals = {n: principal(n) for n in SEEDS}
        self.principals["user:carol"] = principal("user:carol", roles=("approver",))
        self.principals.update(kw.pop("principals", {}))
        self.revocations = kw.pop("revocations", Revocations())
        self.rules = ApprovalRules(AUD, ("deploy.production:**",), kw.pop("approvers", ("role:approver",)),
                                   kw.pop("max_ttl", 900), True, kw.pop("same_person", None))
        self.seen = MemorySeenStore()
        self.recorder = MemoryRecorder()
        self.grant, _ = delegate_with(signer("user:alice"), to="agent:deployer",
                                      to_public=crypto.public_key(SEEDS["agent:deployer"]),
                                      scopes=["deploy.*:**"], ttl=3600, clock=self.clock)

    def verifier(self, **kw):
        trust = StaticTrust(self.principals, self.revocations, authority={"user:alice": ["deploy.*:**"]})
        return Verifier(trust, recorder=self.recorder, clock=self.clock, seen=self.seen, approvals=self.rules, **kw)

    def request(self, *, resource="web", data=PAYLOAD, agent="agent:deployer", grant=True):
        return request_with(signer(agent), action="deploy.production", resource=resource, audience=AUD,
                            grant=self.grant if grant else None, data=data, clock=self.clock)

    def approve(self, request=None, by="user:carol", seed=None, **kw):
        return approve_with(signer(by, seed), request or self.request(), clock=self.clock, **kw)

    def act(self, approval=None, *, resource="web", data=PAYLOAD, agent="agent:deployer", seed=None):
        return sign_action_with(signer(agent, seed), action="deploy.production", resource=resource,
                                grant=self.grant, data=data, clock=self.clock, approval=approval)

    def verify(self, token, **kw):
        return self.verifier().verify(token, data=kw.pop("data", PAYLOAD), **kw)


def refused(w: World, token: str, reason: str, check: str | None = None, **kw) -> VerificationError:
    with pytest.raises(VerificationError) as e:
        w.verify(token, **kw)
    assert e.value.reason == reason, e.value.detail
    if check is not None:
        assert e.value.detail.startswith(check + ":"), e.value.detail
    return e.value


def test_honest_approval_allows_and_names_the_approver():
    w = World()
    approval = w.approve(note="ship it")
    result = w.verify(w.act(approval))
    doc = result.verdict()
    assert doc["approval"]["by"] == "user:carol" and doc["approval"]["jti"] == parts(approval)[1]["jti"]
    event = w.recorder.events[-1]
    assert event.metadata["approval"]["by"] == "user:carol"
    assert event.metadata["approval"]["req"] == parts(approval)[1]["req"]


def test_missing_approval_for_a_required_scope():
    w = World()
    refused(w, w.act(), "approval_required")


def test_grant_alone_asked_about_a_required_action():
    w = World()
    with pytest.raises(VerificationError) as e:
        w.verifier().verify(w.grant, action="deploy.production", resource="web")
    assert e.value.reason == "approval_required"
    assert w.verifier().verify(w.grant, action="deploy.staging", resource="web").agent == "agent:deployer"


@pytest.mark.parametrize("what", ["resource", "payload", "agent"])
def test_approval_replayed_for_another_binding(what):
    w = World()
    approval = w.approve()
    if what == "resource":
        w.grant = w.grant  # same grant, another deploy target
        token, data = w.act(resource="db", approval=None), PAYLOAD
        # the agent cannot even put a mismatching approval in with sign; forge the presentation by hand
        token = _splice(token, approval, SEEDS["agent:deployer"])
    elif what == "payload":
        data = b'{"version": "6.6.6"}'
        token = _splice(w.act(data=data), approval, SEEDS["agent:deployer"])
    else:
        w.grant, _ = delegate_with(signer("user:alice"), to="agent:other", to_public=crypto.public_key(SEEDS["agent:other"]),
                                   scopes=["deploy.*:**"], ttl=3600, clock=w.clock)
        data = PAYLOAD
        token = _splice(w.act(agent="agent:other"), approval, SEEDS["agent:other"])
    refused(w, token, "approval_invalid", "binding", data=data)


def test_approval_for_another_grant():
    w = World()
    approval = w.approve()
    w.grant, _ = delegate_with(signer("user:alice"), to="agent:deployer", to_public=crypto.public_key(SEEDS["agent:deployer"]),
                               scopes=["deploy.*:**"], ttl=1800, clock=w.clock)
    refused(w, _splice(w.act(), approval, SEEDS["agent:deployer"]), "approval_invalid", "binding")


def test_sign_refuses_an_approval_for_another_action():
    w = World()
    approval = w.approve()
    with pytest.raises(UsageError):
        w.act(approval, resource="db")


def _splice(presentation: str, approval: str, seed: bytes) -> str:
    """Put ``approval`` before the action and re-sign the action with its ``approval`` digest."""
    tokens = presentation.split("~")
    action = resign(tokens[-1], seed, claims={"approval": digest(approval)})
    return "~".join(tokens[:-1] + [approval, action])


def test_approval_for_another_audience():
    w = World()
    request = request_with(signer("agent:deployer"), action="deploy.production", resource="web", audience="other-gate",
                           grant=w.grant, data=PAYLOAD, clock=w.clock)
    refused(w, w.act(w.approve(request)), "approval_invalid", "audience")


def test_agent_approving_itself():
    w = World(approvers=())
    refused(w, w.act(w.approve(by="agent:deployer")), "approval_invalid", "four eyes")


def test_user_approving_its_own_agent():
    w = World(approvers=())
    refused(w, w.act(w.approve(by="user:alice")), "approval_invalid", "four eyes")


def test_same_person_under_two_names_with_a_shared_key():
    # mallory holds the agent's key as a retired key of her own: an alias of the agent
    w = World(approvers=(), principals={"user:mallory": principal("user:mallory", seeds=(SEEDS["agent:deployer"],))})
    refused(w, w.act(w.approve(by="user:mallory")), "approval_invalid", "four eyes")


def test_approver_key_is_the_roots_key():
    w = World(approvers=(), principals={"user:mallory": principal("user:mallory", seeds=(SEEDS["user:alice"],))})
    refused(w, w.act(w.approve(by="user:mallory")), "approval_invalid", "four eyes")


def test_same_person_attribute():
    attrs = (("email", "alice@example.com"),)
    w = World(approvers=(), same_person="email", principals={
        "user:alice": principal("user:alice", attrs=attrs), "user:mallory": principal("user:mallory", attrs=attrs)})
    refused(w, w.act(w.approve(by="user:mallory")), "approval_invalid", "four eyes")


def test_approver_not_on_the_list():
    w = World()
    refused(w, w.act(w.approve(by="user:mallory")), "approval_invalid", "approver")


def test_unknown_approver():
    w = World(approvers=())
    stranger = signer_from_seed("user:stranger", b"s" * 32)
    refused(w, w.act(approve_with(stranger, w.request(), clock=w.clock)), "approval_invalid", "key")


def test_approver_revoked():
    w = World(revocations=Revocations((Revocation("principal", "user:carol", 0.0),)))
    refused(w, w.act(w.approve()), "approval_invalid", "key")


def test_expired_approval():
    w = World()
    approval = w.approve(ttl=60)
    action = w.act(approval)  # valid for 5 minutes: the approval runs out first
    w.clock.advance(61 + 60)
    refused(w, action, "approval_invalid", "time")


def test_future_approval():
    w = World()
    w.clock.advance(3600)
    approval = w.approve()
    w.clock.advance(-3600)
    token = _splice(w.act(), approval, SEEDS["agent:deployer"])
    refused(w, token, "approval_invalid", "time")


def test_over_long_approval():
    w = World()
    refused(w, w.act(w.approve(ttl=901)), "approval_invalid", "time")


def test_approval_issued_after_the_action():
    w = World()
    request = w.request()
    action = w.act()
    w.clock.advance(10)
    approval = w.approve(request)
    token = _splice(action, approval, SEEDS["agent:deployer"])
    refused(w, token, "approval_invalid", "time")


def test_revoked_approval_jti():
    w = World()
    approval = w.approve()
    w.revocations = Revocations((Revocation("grant", parts(approval)[1]["jti"], 0.0),))
    refused(w, w.act(approval), "approval_invalid", "revocation")


def test_approval_reused_without_once():
    w = World()
    approval = w.approve()
    w.verify(w.act(approval))
    refused(w, w.act(approval), "replayed")  # a fresh action token, the same approval


def test_same_presentation_twice_without_once():
    w = World()
    token = w.act(w.approve())
    w.verify(token)
    refused(w, token, "replayed")


def test_unrequired_but_invalid_approval_is_still_refused_and_never_reaches_policy():
    w = World(approvers=())
    request = request_with(signer("agent:deployer"), action="deploy.staging", resource="web", audience=AUD,
                           grant=w.grant, data=PAYLOAD, clock=w.clock)
    approval = approve_with(signer("agent:deployer"), request, clock=w.clock)  # self-approval
    token = sign_action_with(signer("agent:deployer"), action="deploy.staging", resource="web", grant=w.grant,
                             data=PAYLOAD, clock=w.clock, approval=approval)
    refused(w, token, "approval_invalid", "four eyes")
    with pytest.raises(VerificationError) as e:  # no policy input is built from it either
        w.verifier().policy_input(token, data=PAYLOAD)
    assert e.value.reason == "approval_invalid"


def test_forged_approval_signature():
    w = World()
    approval = w.approve()
    forged = resign(approval, SEEDS["user:mallory"], head={"alg": "EdDSA", "typ": "agentctl-approval+jwt",
                                                          "kid": parts(approval)[0]["kid"]})
    refused(w, _splice(w.act(), forged, SEEDS["agent:deployer"]), "approval_invalid", "signature")


def test_policy_input_holds_the_accepted_approval():
    w = World()
    approval = w.approve(note="ok by me")
    doc = w.verifier().policy_input(w.act(approval), data=PAYLOAD)
    assert doc["approval"]["by"] == "user:carol" and doc["approval"]["note"] == "ok by me"
    assert doc["approval"]["jti"] == parts(approval)[1]["jti"]


def test_library_refuses_approval_rules_without_a_seen_store():
    w = World()
    with pytest.raises(UsageError):
        Verifier(StaticTrust(w.principals), recorder=w.recorder, approvals=w.rules)


@pytest.mark.parametrize("kind", ["approval", "request"])
def test_approval_or_request_presented_as_grant_or_action(kind):
    w = World()
    token = w.approve() if kind == "approval" else w.request().split("~")[-1]
    for expect in (None, "grant", "action"):
        with pytest.raises(VerificationError) as e:
            w.verifier().verify(token, expect=expect)
        assert e.value.reason == "malformed"
