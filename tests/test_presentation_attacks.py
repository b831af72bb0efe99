"""Attacks on the order of a presentation (SPEC, "Token format"): every one is refused, with the
reason the SPEC gives, by the library and by `agentctl verify`."""

from __future__ import annotations

import hashlib

import pytest

from agentctl.errors import VerificationError
from agentctl.presentation import digest as lib_digest, parse
from helpers_tokens import ACTION, ALICE, BOT, OTHER, SUB, THIRD, b64, digest, header, jws, last, make_world, new_jti, parts, prf_chain


@pytest.fixture
def world(home):
    return make_world(home)


def action_under(w, presentation: str | None, signer: str, **claims) -> str:
    c = {"iss": signer, "sub": ALICE, "action": "pull_request.create", "resource": "acme/web", "iat": w.now - 60,
         "exp": w.now + 240, "jti": new_jti(), "payload": {"sha256": hashlib.sha256(b"").hexdigest()}}
    if presentation is not None:
        c["grant"] = digest(presentation)
    c.update(claims)
    token = jws(header(w.seed(signer), typ=ACTION), c, w.seed(signer))
    return f"{presentation}~{token}" if presentation is not None else token


def reason(w, token: str) -> str | None:
    try:
        w.verifier().verify(token)
    except VerificationError as e:
        return e.reason
    return None


@pytest.fixture
def three(world):
    """root (alice > bot), child (bot > sub), grandchild (sub > third): the three tokens."""
    return world.chain(3)[-1].split("~")


def test_the_honest_presentations_verify(world, three):
    assert reason(world, "~".join(three)) is None
    assert reason(world, action_under(world, "~".join(three), THIRD)) is None
    assert lib_digest(three[0]) == digest(three[0]) == parts(three[1])[1]["prf"]


CASES = {
    "swap two hops": (lambda w, t: "~".join([t[0], t[2], t[1]]), "malformed"),
    "reorder: leaf first": (lambda w, t: "~".join([t[2], t[0], t[1]]), "malformed"),
    "drop the middle hop": (lambda w, t: "~".join([t[0], t[2]]), "chain_broken"),
    "drop the root": (lambda w, t: "~".join([t[1], t[2]]), "chain_broken"),
    "repeat a hop": (lambda w, t: "~".join([t[0], t[1], t[1], t[2]]), "malformed"),
    "insert a foreign root before the chain": (lambda w, t: "~".join([w.grant(ALICE, OTHER), *t]), "malformed"),
    "insert a sibling hop": (lambda w, t: "~".join([t[0], last(w.grant(BOT, OTHER, parent=t[0])), t[1], t[2]]), "malformed"),
    "a digest that matches a different parent": (
        lambda w, t: "~".join([w.grant(ALICE, BOT, max_depth=2), t[1], t[2]]), "chain_broken"),
    "empty token between '~'": (lambda w, t: "~".join([t[0], "", t[1]]), "malformed"),
    "trailing '~'": (lambda w, t: "~".join(t) + "~", "malformed"),
    "inner whitespace": (lambda w, t: t[0] + " ~" + t[1], "malformed"),
    "inner newline": (lambda w, t: t[0] + "~\n" + t[1], "malformed"),
    "an action before a grant": (lambda w, t: "~".join([last(action_under(w, t[0], BOT)), t[1]]), "malformed"),
    "two actions": (lambda w, t: action_under(w, action_under(w, "~".join(t), THIRD), THIRD), "malformed"),
    "an action whose grant digest names no token present": (
        lambda w, t: f"{t[0]}~{last(action_under(w, t[1], SUB))}", "chain_broken"),
    "an action naming the root, not the leaf": (lambda w, t: f"{'~'.join(t)}~{last(action_under(w, t[0], BOT))}", "malformed"),
    "an action with no grant after grants": (lambda w, t: f"{t[0]}~{action_under(w, None, BOT)}", "malformed"),
    "more than 8 grants": (lambda w, t: prf_chain(w, 9), "chain_broken"),
    "over 64 KiB": (lambda w, t: "~".join(t) + "~" + "A" * (64 * 1024), "malformed"),
    "an approval nothing references": (
        lambda w, t: "~".join([t[0], jws(header(w.seed(ALICE), typ="agentctl-approval+jwt"), {"iss": ALICE}, w.seed(ALICE))]),
        "malformed"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_attack_on_the_order_is_refused(world, three, name):
    build, expected = CASES[name]
    token = build(world, three)
    assert reason(world, token) == expected


@pytest.mark.parametrize("name", ["swap two hops", "drop the middle hop", "two actions", "repeat a hop"])
def test_the_cli_refuses_them_too(world, three, cli, name):
    build, expected = CASES[name]
    r = cli("verify", build(world, three))
    assert r.code == 1 and f"denied: {expected}:" in r.stderr


def test_the_nested_form_is_unsupported_with_a_hint_to_remint(world, three):
    """A grant or an action of the earlier nested form (a whole token in prf or grant)."""
    nested_grant = jws(header(world.seed(BOT)), {**parts(three[1])[1], "prf": three[0]}, world.seed(BOT))
    nested_action = last(action_under(world, three[0], BOT, grant=three[0]))
    for token in (nested_grant, f"{three[0]}~{nested_grant}", nested_action):
        with pytest.raises(VerificationError) as e:
            world.verifier().verify(token)
        assert e.value.reason == "unsupported" and "nested form" in e.value.detail
        assert "re-mint" in e.value.hint


def test_an_approval_of_the_wrong_shape_is_malformed(world, three):
    approval = jws(header(world.seed(ALICE), typ="agentctl-approval+jwt"), {"iss": ALICE}, world.seed(ALICE))
    grants = "~".join(three)
    token = action_under(world, grants, THIRD)
    head, _, act = token.rpartition("~")
    c = parts(act)[1]
    c["approval"] = digest(approval)
    signed = jws(header(world.seed(THIRD), typ=ACTION), c, world.seed(THIRD))
    p = parse(f"{grants}~{approval}~{signed}")  # the position is parsed generically
    assert p.approval is not None and p.action is not None and len(p.chain.hops) == 3
    assert reason(world, f"{grants}~{approval}~{signed}") == "malformed"  # step 10 never sees it
    assert reason(world, f"{grants}~{signed}") == "chain_broken"  # the approval it names is not there


def test_each_token_is_parsed_once_and_a_cached_prefix_still_checks_references(world, three):
    v = world.verifier()
    good = action_under(world, "~".join(three), THIRD)
    v.verify(good)
    bad = f"{three[0]}~{three[1]}~{last(good)}"  # the same action under a prefix it does not name
    with pytest.raises(VerificationError) as e:
        v.verify(bad)
    assert e.value.reason == "chain_broken"
    assert b64(hashlib.sha256(three[2].encode()).digest()) == parts(good)[1]["grant"]
