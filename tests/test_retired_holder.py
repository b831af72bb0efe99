"""A key its principal has retired verifies only what it signed before it was retired: also when it
is the holder (cnf) key of a grant, for actions and for re-delegations (SPEC, Verification step 3)."""

from __future__ import annotations

import pytest

from agentctl import jws
from agentctl.actions import action_claims
from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.delegation import delegate
from agentctl.errors import VerificationError
from agentctl.grants import grant_claims, parse_chain
from agentctl.home import Home
from agentctl.identity import keygen, rotate, signer_for
from agentctl.scopes import parse_scopes
from agentctl.store import Store
from agentctl.verify import NO_AUDIT, StoreTrust, Verifier

T0 = 1_800_000_000


@pytest.fixture
def world(tmp_path):
    clock = FixedClock(T0)
    env = {"AGENTCTL_KEYSTORE": "file"}
    ctx = Context(Home(tmp_path / "h", env), clock=clock, env=env)
    keygen(ctx, "user:alice")
    keygen(ctx, "agent:bot")
    keygen(ctx, "agent:helper")
    grant, _ = delegate(ctx, to="agent:bot", scopes=["deploy.*:api/*"], ttl=3600, issuer="user:alice", max_depth=1)
    old = signer_for(ctx, "agent:bot")  # the holder key the grant names
    clock.advance(100)
    rotate(ctx, "agent:bot")  # retired at T0 + 100
    return ctx, clock, grant, old


def verifier(ctx, clock):
    return Verifier(StoreTrust(Store(ctx.home)), recorder=NO_AUDIT, clock=clock)


def action(grant: str, seed: bytes, iat: int) -> str:
    claims = action_claims(iss="agent:bot", sub="user:alice", action="deploy.staging", resource="api/web", data=b"x",
                           embed=False, now=iat, ttl=300, audience=None, grant=parse_chain(grant).leaf.digest)
    return f"{grant}~{jws.encode(jws.ACTION, claims, seed)}"


def test_an_action_signed_by_the_retired_holder_key_after_retirement_is_refused(world):
    ctx, clock, grant, old = world
    token = action(grant, old.seed, T0 + 150)
    with pytest.raises(VerificationError) as info:
        verifier(ctx, clock).verify_action(token, action="deploy.staging", resource="api/web", data=b"x")
    # SPEC step 2: a known actor's signing key must be one of its keys, current or retired after the
    # action's iat; this one was retired before, so the action is not bound to agent:bot (chain_broken).
    assert info.value.reason == "chain_broken"
    assert "retired" in info.value.detail


def test_an_action_it_signed_before_retirement_still_verifies(world):
    ctx, clock, grant, old = world
    token = action(grant, old.seed, T0 + 50)
    v = verifier(ctx, clock).verify_action(token, action="deploy.staging", resource="api/web", data=b"x")
    assert v.agent == "agent:bot"


def test_a_redelegation_signed_by_the_retired_holder_key_after_retirement_is_refused(world):
    ctx, clock, grant, old = world
    parent = parse_chain(grant).leaf
    helper = Store(ctx.home).require("agent:helper").current.public
    claims = grant_claims(iss="agent:bot", sub="user:alice", delegate="agent:helper", delegate_public=helper,
                          scopes=parse_scopes("deploy.staging:api/web"), now=T0 + 150, ttl=600, max_depth=0,
                          audience=None, parent=parent)
    child = f"{grant}~{jws.encode(jws.GRANT, claims, old.seed)}"
    with pytest.raises(VerificationError) as info:
        verifier(ctx, clock).verify_grant(child)
    assert info.value.reason == "bad_signature"
    before = grant_claims(iss="agent:bot", sub="user:alice", delegate="agent:helper", delegate_public=helper,
                          scopes=parse_scopes("deploy.staging:api/web"), now=T0 + 50, ttl=600, max_depth=0,
                          audience=None, parent=parent)
    assert verifier(ctx, clock).verify_grant(f"{grant}~{jws.encode(jws.GRANT, before, old.seed)}").agent == "agent:helper"
