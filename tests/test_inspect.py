"""`agentctl inspect` (SPEC, "Delegation"): decode any agentctl token and show every hop (signer,
delegate, on whose behalf, scopes and how each hop narrowed them, validity window and time left, and
whether each hop's signature verifies), for a person and as JSON. It never calls a token valid unless
`verify` would: for every attack of the catalogue its verdict is verify's."""

from __future__ import annotations

import re
import time

import pytest

from agentctl.clock import rfc3339
from agentctl.durations import format_duration

from helpers_tokens import (
    digest,
    ACTION,
    ALICE,
    ATTACKS,
    BOT,
    OTHER,
    SUB,
    THIRD,
    Attack,
    b64,
    header,
    jws,
    make_world,
    parts,
    tamper,
)


@pytest.fixture
def world(home):
    return make_world(home)


def inspect_json(cli, token: str) -> tuple[int, dict]:
    r = cli("--json", "inspect", token)
    assert "Traceback" not in r.stderr
    return r.code, r.json()


def verify_json(cli, token: str) -> dict:
    r = cli("--json", "verify", token)
    assert r.code in (0, 1)
    return r.json()


def chain3(world) -> list[str]:
    root = world.grant(ALICE, BOT, "pull_request.*:acme/* issues.read", max_depth=2, aud="api.github", ttl=7200)
    mid = world.grant(BOT, SUB, "pull_request.create:acme/* issues.read", parent=root, ttl=3600, aud="api.github")
    leaf = world.grant(SUB, THIRD, "pull_request.create:acme/web", parent=mid, ttl=1800, aud="api.github")
    return [root, mid, leaf]


# --- what it shows --------------------------------------------------------------------------------------


def test_json_shows_every_hop(world, cli):
    root, mid, leaf = chain3(world)
    code, doc = inspect_json(cli, leaf)
    assert code == 0
    assert doc["ok"] is True and doc["type"] == "grant"
    assert doc["chain"] == [ALICE, BOT, SUB, THIRD]
    assert doc["agent"] == THIRD and doc["on_behalf_of"] == ALICE
    hops = doc["hops"]
    assert [(h["hop"], h["iss"], h["delegate"], h["on_behalf_of"]) for h in hops] == [
        (1, ALICE, BOT, ALICE), (2, BOT, SUB, ALICE), (3, SUB, THIRD, ALICE)]
    assert [h["signature_verifies"] for h in hops] == [True, True, True]
    assert all(h["signature"] == "verifies" for h in hops)
    assert hops[0]["kid"] == world.kid(ALICE) and hops[1]["kid"] == world.kid(BOT) and hops[2]["kid"] == world.kid(SUB)
    for h, token in zip(hops, (root, mid, leaf)):
        c = parts(token)[1]
        assert h["jti"] == c["jti"] and h["max_depth"] == c["max_depth"]
        assert h["not_before"] == rfc3339(c["nbf"]) and h["expires_at"] == rfc3339(c["exp"])
        assert h["expired"] is False and h["aud"] == ["api.github"]
        assert h["scope"] == c["scope"]
    # time left: from the moment inspect ran, to each hop's expiry
    for h, token in zip(hops, (root, mid, leaf)):
        exp = parts(token)[1]["exp"]
        assert h["time_left"] in {format_duration(exp - t) for t in range(world.now, int(time.time()) + 2)}
    # scopes, and how each hop narrowed them
    assert hops[0]["scopes"] == [{"scope": "pull_request.*:acme/*", "from": None, "how": "granted"},
                                 {"scope": "issues.read", "from": None, "how": "granted"}]
    assert hops[1]["scopes"] == [{"scope": "pull_request.create:acme/*", "from": "pull_request.*:acme/*", "how": "narrowed"},
                                 {"scope": "issues.read", "from": "issues.read", "how": "unchanged"}]
    assert hops[2]["scopes"] == [{"scope": "pull_request.create:acme/web", "from": "pull_request.create:acme/*", "how": "narrowed"}]
    # valid here is what verify says without --audience: the grant is for api.github only
    assert doc["valid"] is False and doc["reason"] == verify_json(cli, leaf)["reason"] == "audience_mismatch"


def test_human_output_shows_every_hop(world, cli):
    _, _, leaf = chain3(world)
    r = cli("inspect", leaf)
    assert r.code == 0
    out = r.stdout
    assert out.splitlines()[0].startswith(f"grant: {ALICE} > {BOT} > {SUB} > {THIRD}  (3 hops; NOT VALID: audience_mismatch:")
    assert f"hop 1: {ALICE} -> {BOT}" in out and f"hop 2: {BOT} -> {SUB}" in out and f"hop 3: {SUB} -> {THIRD}" in out
    assert out.count(f"on behalf of   {ALICE}") == 3
    assert f"signed by      {ALICE}, key {world.kid(ALICE)}" in out
    assert f"signed by      {SUB}, holder key of hop 2" in out
    assert out.count("signature      verifies") == 3
    assert "pull_request.create:acme/*  (narrowed from pull_request.*:acme/*)" in out
    assert "issues.read  (unchanged)" in out
    assert "pull_request.create:acme/web  (narrowed from pull_request.create:acme/*)" in out
    assert re.search(r"valid +\S+Z to \S+Z \(2[89]m[0-9]*s? left\)", out)
    assert "audience       api.github" in out
    assert "re-delegation  0 more hop(s) allowed" in out


def test_a_valid_grant_is_called_valid(world, cli):
    token = world.chain(2)[-1]
    code, doc = inspect_json(cli, token)
    assert code == 0 and doc["valid"] is True and doc["reason"] is None
    assert verify_json(cli, token)["ok"] is True
    assert "(2 hops; valid)" in cli("inspect", token).stdout


def test_expired_hops_are_marked(world, cli):
    root = world.grant(ALICE, BOT, max_depth=1, iat=world.now - 7200, ttl=3600)
    child = world.grant(BOT, SUB, parent=root, iat=world.now - 5000)
    code, doc = inspect_json(cli, child)
    assert code == 0 and doc["valid"] is False and doc["reason"] == "expired"
    assert [h["expired"] for h in doc["hops"]] == [True, True]
    assert [h["time_left"] for h in doc["hops"]] == ["0s", "0s"]
    assert "(expired)" in cli("inspect", child).stdout


def test_per_hop_signature_status(world, cli):
    root = world.grant(ALICE, BOT, max_depth=1)
    stranger = world.grant(OTHER, SUB, parent=root, iss=BOT)
    _, doc = inspect_json(cli, stranger)
    assert [h["signature_verifies"] for h in doc["hops"]] == [True, False]
    assert "not signed by the parent's holder key" in doc["hops"][1]["signature"]
    forged_root = tamper(root, scope="*")
    child = world.grant(BOT, SUB, "*", parent=forged_root)
    _, doc = inspect_json(cli, child)
    assert [h["signature_verifies"] for h in doc["hops"]] == [False, True]
    assert doc["valid"] is False and doc["reason"] == "bad_signature"


def test_an_untrusted_root_is_shown_as_unknown(world, cli):
    token = world.grant("user:mallory", BOT, seed=bytes(range(32)))
    _, doc = inspect_json(cli, token)
    assert doc["hops"][0]["signature_verifies"] is None
    assert "not trusted here" in doc["hops"][0]["signature"]
    assert doc["valid"] is False and doc["reason"] == "untrusted_root"


def test_a_widened_scope_is_named(world, cli):
    root = world.grant(ALICE, BOT, "pull_request.create:acme/web", max_depth=1)
    child = world.grant(BOT, SUB, "pull_request.*:acme/*", parent=root)
    _, doc = inspect_json(cli, child)
    how = doc["hops"][1]["scopes"][0]["how"]
    assert how.startswith("WIDER than the parent's: would allow ")
    assert doc["reason"] == "scope_escalation"


def test_a_scope_covered_by_the_union_of_the_parents(world, cli):
    root = world.grant(ALICE, BOT, "a.*:x/* a.*:y/*", max_depth=1)
    child = world.grant(BOT, SUB, "a.b:x/1 a.c:y/2", parent=root)
    _, doc = inspect_json(cli, child)
    assert [d["from"] for d in doc["hops"][1]["scopes"]] == ["a.*:x/*", "a.*:y/*"]
    assert doc["valid"] is True


def test_token_from_a_file_or_stdin(world, cli, tmp_path):
    token = world.chain(2)[-1]
    f = tmp_path / "grant.jwt"
    f.write_text(token + "\n")
    assert cli("--json", "inspect", str(f)).json()["valid"] is True
    r = cli("inspect", "-", "--json", input=token + "\n")
    assert r.code == 0 and r.json()["valid"] is True


def test_inspect_changes_nothing(world, cli):
    from conftest import snapshot

    token = world.chain(3)[-1]
    before = snapshot(world.home)
    cli("inspect", token)
    cli("--json", "inspect", token)
    cli("inspect", "junk")
    assert snapshot(world.home) == before


# --- never valid unless verify says so ------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_inspect_agrees_with_verify_on_every_attack(world, cli, attack: Attack):
    token = attack.build(world)
    verdict = verify_json(cli, token)
    assert verdict["ok"] is False and verdict["reason"] == attack.reason
    code, doc = inspect_json(cli, token)
    assert doc["valid"] is False
    assert doc["reason"] == verdict["reason"]
    assert doc["detail"] == verdict["detail"]
    if doc.get("hops"):
        assert code == 0 and doc["ok"] is True
    elif doc["ok"] is False:  # nothing could be decoded, so nothing is shown
        assert code == 1
        assert f"agentctl: denied: {doc['reason']}: " in cli("inspect", token).stderr
    else:  # another kind of token, shown as it is
        assert code == 0 and doc["type"] in ("rotation", "revocations")


def test_a_malformed_token_is_not_valid_in_human_output_either(world, cli):
    r = cli("inspect", "not.a.token")
    assert r.code == 1 and r.stdout == ""
    assert r.stderr.startswith("agentctl: denied: malformed: ")


def action_token(world, grant: str | None, **claims) -> str:
    c = {"iss": SUB, "sub": ALICE, "action": "pull_request.create", "resource": "acme/web", "iat": world.now - 10,
         "exp": world.now + 290, "jti": b64(bytes(range(16))),
         "payload": {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}
    if grant is not None:
        c["grant"] = digest(grant)
    c.update(claims)
    token = jws(header(world.seed(c["iss"]), typ=ACTION), c, world.seed(c["iss"]))
    return f"{grant}~{token}" if grant is not None else token  # the presentation


def test_an_action_shows_the_hops_of_its_grant_and_verifys_verdict(world, cli):
    grant = world.chain(2)[-1]
    token = action_token(world, grant)
    code, doc = inspect_json(cli, token)
    assert code == 0 and doc["type"] == "action"
    assert doc["agent"] == SUB and doc["on_behalf_of"] == ALICE and doc["chain"] == [ALICE, BOT, SUB]
    assert doc["action"] == "pull_request.create" and doc["resource"] == "acme/web"
    assert [h["delegate"] for h in doc["hops"]] == [BOT, SUB]
    assert doc["valid"] is True and verify_json(cli, token)["ok"] is True
    human = cli("inspect", token).stdout
    assert human.startswith(f"action: {SUB} does pull_request.create on acme/web on behalf of {ALICE}")
    assert f"hop 2: {BOT} -> {SUB}" in human


@pytest.mark.parametrize("change", ["scope", "signer", "expired"])
def test_an_invalid_action_is_not_valid(world, cli, change):
    grant = world.chain(2)[-1]
    token = {
        "scope": lambda: action_token(world, grant, action="deploy.prod"),
        "signer": lambda: action_token(world, grant, iss=THIRD),
        "expired": lambda: action_token(world, grant, iat=world.now - 900, exp=world.now - 600),
    }[change]()
    verdict = verify_json(cli, token)
    assert verdict["ok"] is False
    _, doc = inspect_json(cli, token)
    assert doc["valid"] is False and doc["reason"] == verdict["reason"]


def test_other_tokens_are_shown_but_not_valid_as_verify_sees_them(world, cli):
    token = ATTACKS_BY_NAME["rotation token as a grant"].build(world)
    code, doc = inspect_json(cli, token)
    assert code == 0 and doc["type"] == "rotation"
    assert doc["valid"] is False and doc["reason"] == verify_json(cli, token)["reason"] == "malformed"
    assert doc["claims"]["iss"] == ALICE
    assert "it does not vouch for them" in cli("inspect", token).stdout


ATTACKS_BY_NAME = {a.name: a for a in ATTACKS}
