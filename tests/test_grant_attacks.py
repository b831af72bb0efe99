"""Attacks on grants (SPEC, "Token format" and "Verification"): every forged, damaged or misused grant
is denied by ``agentctl verify`` with exit 1 and the named reason, and the library's Verifier gives the
same reason. First failure wins, in the order of the pipeline's steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import agentctl.encoding
import agentctl.jws
from agentctl.clock import FixedClock
from agentctl.errors import REASONS, VerificationError
from agentctl.identity import rotate
from agentctl.jws import MAX_TOKEN_BYTES

from helpers_tokens import (
    ACTION,
    ALICE,
    ATTACKS,
    BOT,
    OTHER,
    SUB,
    THIRD,
    Attack,
    digest,
    huge_token,
    jws,
    header,
    make_world,
    parts,
    prf_chain,
    tamper,
)


@pytest.fixture
def world(home):
    return make_world(home)


def denied(cli, token: str, *args: str) -> str:
    """Run ``agentctl verify`` in both output modes; check the denial's shape; return the reason."""
    r = cli("verify", token, *args)
    assert r.code == 1, r.stderr
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("agentctl: denied: ")]
    assert len(lines) == 1, r.stderr
    reason = lines[0].split(": ")[2]
    j = cli("--json", "verify", token, *args)
    assert j.code == 1
    doc = j.json()
    assert doc["ok"] is False and doc["reason"] == reason and doc["detail"]
    assert f"agentctl: denied: {reason}: {doc['detail']}" in j.stderr
    return reason


def allowed(cli, token: str, *args: str) -> dict:
    r = cli("--json", "verify", token, *args)
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["ok"] is True and doc["reason"] is None
    return doc


# --- the baseline: what the attacks start from verifies -------------------------------------------------


def test_an_honest_chain_verifies(world, cli):
    tokens = world.chain(3)
    doc = allowed(cli, tokens[-1])
    assert doc["type"] == "grant"
    assert doc["chain"] == [ALICE, BOT, SUB, THIRD]
    assert doc["agent"] == THIRD and doc["on_behalf_of"] == ALICE
    assert world.library_reason(tokens[-1]) is None
    for t in tokens:
        assert world.library_reason(t) is None


# --- the catalogue --------------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_denied_with_its_reason(world, cli, attack: Attack):
    token = attack.build(world)
    assert attack.reason in REASONS
    assert denied(cli, token) == attack.reason
    assert world.library_reason(token) == attack.reason


def test_the_catalogue_covers_every_reason_a_grant_can_fail_with():
    # stale_* are the verifying home's state, not a token's: tests/test_sync.py denies with them;
    # policy_denied: tests/test_verify_policy.py; approval_*: tests/test_approval_attacks.py
    grant_reasons = set(REASONS) - {"scope_denied", "payload_mismatch", "replayed", "stale_revocations", "stale_trust",
                                    "policy_denied", "approval_required", "approval_invalid"}
    assert {a.reason for a in ATTACKS} == grant_reasons


# --- step 1: refused before parsing ---------------------------------------------------------------------


def _explode(*_a, **_k):
    raise AssertionError("an oversized token reached the decoder")


def test_a_10_mb_token_is_refused_before_any_decoding(world, cli, monkeypatch):
    token = huge_token()
    for module in (agentctl.jws, agentctl.encoding):
        monkeypatch.setattr(module, "loads_strict", _explode)
        monkeypatch.setattr(module, "b64u_decode", _explode)
    monkeypatch.setattr(agentctl.encoding.json, "loads", _explode)
    for form in (token, token.encode("ascii")):
        with pytest.raises(VerificationError) as e:
            world.verifier().verify_grant(form)
        assert e.value.reason == "malformed" and "larger than" in e.value.detail
    r = cli("verify", token)  # the CLI, its audit record of the denial included, decodes nothing either
    assert r.code == 1 and "denied: malformed: token is larger than" in r.stderr


@pytest.mark.parametrize("size", [MAX_TOKEN_BYTES + 1, 1024 * 1024])
def test_the_size_limit_is_64_kib(world, size):
    assert world.library_reason(huge_token(size)) == "malformed"


def test_an_action_or_rotation_token_is_not_a_grant(world):
    root = world.grant(ALICE, BOT)
    action = jws(header(world.seed(BOT), typ=ACTION), {"iss": BOT, "sub": ALICE, "grant": root}, world.seed(BOT))
    for token in (action, ATTACKS_BY_NAME["rotation token as a grant"].build(world)):
        with pytest.raises(VerificationError) as e:
            world.verifier().verify_grant(token)
        assert e.value.reason == "malformed" and "expected a agentctl-grant+jwt" in e.value.detail


def test_a_grant_is_not_an_action(world):
    with pytest.raises(VerificationError) as e:
        world.verifier().verify_action(world.grant(ALICE, BOT))
    assert e.value.reason == "malformed"


# --- depth ----------------------------------------------------------------------------------------------


def test_a_chain_of_8_hops_verifies_and_9_does_not(world, cli):
    assert world.library_reason(prf_chain(world, 8)) is None
    allowed(cli, prf_chain(world, 8))
    assert denied(cli, prf_chain(world, 9)) == "chain_broken"


def test_a_presentation_grows_linearly_and_more_than_8_grants_are_refused_before_parsing(world):
    """A presentation names each parent by a 43-character digest, so it grows by about one token per
    hop (an 8-hop chain stays under 8 KB, the common HTTP header limit); a ninth grant is refused by
    count (chain_broken) before any grant is parsed, and over 64 KiB by size (malformed)."""
    eight, twelve = prf_chain(world, 8), prf_chain(world, 12)
    assert len(eight) < 8 * 1024
    assert len(eight.split("~")[-1]) < 1000  # the leaf does not carry its parents
    assert world.library_reason(twelve) == "chain_broken"
    garbage = "~".join(["e30.e30.AAAA"] * 9)  # nine unparseable "grants": the count refuses first
    assert world.library_reason(garbage) in ("chain_broken", "malformed")
    assert world.library_reason(eight + "~" + "A" * MAX_TOKEN_BYTES) == "malformed"


# --- prf swaps: which step catches them ------------------------------------------------------------------


def test_a_swapped_prf_to_the_same_delegate_breaks_the_childs_signature(world, cli):
    """The swapped-in parent was given to the same key, so the keys of step 2 line up; the child's own
    signature covers its prf, so step 3 refuses it: bad_signature."""
    g1 = world.grant(ALICE, BOT, "pull_request.create:acme/web", max_depth=1)
    g2 = world.grant(ALICE, BOT, "pull_request.*:acme/*", max_depth=1)
    child = world.grant(BOT, SUB, "pull_request.create:acme/web", parent=g1)
    allowed(cli, child)
    swapped = tamper(f"{g2}~{child.rpartition('~')[2]}", prf=digest(g2))
    assert denied(cli, swapped) == "bad_signature"
    assert world.library_reason(swapped) == "bad_signature"


# --- rotation --------------------------------------------------------------------------------------------


def test_a_retired_key_verifies_only_what_it_signed_before_retirement(world, cli):
    old = world.seed(ALICE)
    before = world.grant(ALICE, BOT, iat=world.now - 900)
    world.ctx.clock = FixedClock(world.now - 600)
    rotate(world.ctx, ALICE)
    after = world.grant(ALICE, BOT, seed=old, iat=world.now - 300)
    allowed(cli, before)
    assert world.library_reason(before) is None
    assert denied(cli, after) == "bad_signature"
    assert "after it was retired" in cli("--json", "verify", after).json()["detail"]
    assert world.library_reason(after) == "bad_signature"


def test_a_grant_by_the_new_key_verifies_after_rotation(world, cli):
    from agentctl.identity import signer_for

    rotate(world.ctx, ALICE)
    new = signer_for(world.ctx, ALICE).seed
    allowed(cli, world.grant(ALICE, BOT, seed=new))


# --- time -------------------------------------------------------------------------------------------------


def test_expiry_with_at_and_leeway(world, cli):
    token = world.grant(ALICE, BOT, iat=world.now, ttl=3600)
    exp = world.now + 3600
    allowed(cli, token, "--at", world.at(3600 + 59))  # within the default 60 s leeway
    assert denied(cli, token, "--at", world.at(3600 + 60)) == "expired"
    allowed(cli, token, "--at", world.at(3599), "--leeway", "0")
    assert denied(cli, token, "--at", world.at(3600), "--leeway", "0") == "expired"
    allowed(cli, token, "--at", world.at(3600 + 250), "--leeway", "5m")
    v = world.verifier()
    assert v.verify_grant(token, at=exp + 59)
    with pytest.raises(VerificationError, match="expired"):
        v.verify_grant(token, at=exp + 60)


def test_not_yet_valid_with_at_and_leeway(world, cli):
    nbf = world.now + 600
    token = world.grant(ALICE, BOT, iat=world.now, nbf=nbf, ttl=3600)
    assert denied(cli, token) == "not_yet_valid"
    assert denied(cli, token, "--at", world.at(539)) == "not_yet_valid"
    allowed(cli, token, "--at", world.at(540))
    assert denied(cli, token, "--at", world.at(599), "--leeway", "0") == "not_yet_valid"
    allowed(cli, token, "--at", world.at(600), "--leeway", "0")
    with pytest.raises(VerificationError, match="not_yet_valid"):
        world.verifier(leeway=0).verify_grant(token, at=nbf - 1)


def test_at_takes_a_duration_back_from_now(world, cli):
    token = world.grant(ALICE, BOT, iat=world.now - 7200, ttl=3600)  # expired an hour ago
    assert denied(cli, token) == "expired"
    allowed(cli, token, "--at", "90m")


def test_a_hop_expired_within_a_chain_is_named(world, cli):
    root = world.grant(ALICE, BOT, max_depth=1, iat=world.now - 600, ttl=1200)
    child = world.grant(BOT, SUB, parent=root)
    allowed(cli, child)
    assert denied(cli, child, "--at", world.at(700)) == "expired"
    detail = cli("--json", "verify", child, "--at", world.at(700)).json()["detail"]
    assert "hop 1" in detail


# --- audience ---------------------------------------------------------------------------------------------


def test_audience(world, cli):
    token = world.grant(ALICE, BOT, aud="api.billing")
    allowed(cli, token, "--audience", "api.billing")
    assert denied(cli, token, "--audience", "api.payroll") == "audience_mismatch"
    assert denied(cli, token) == "audience_mismatch"
    assert world.library_reason(token, audience="api.payroll") == "audience_mismatch"
    assert world.library_reason(token, audience="api.billing") is None
    several = world.grant(ALICE, BOT, aud=["api.billing", "api.payroll"])
    allowed(cli, several, "--audience", "api.payroll")
    assert denied(cli, several, "--audience", "api.hr") == "audience_mismatch"


# --- revocation through the CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["middle agent", "root user", "middle grant", "leaf grant", "root key"])
def test_revocation_through_the_cli(world, cli, what):
    tokens = world.chain(3)
    allowed(cli, tokens[-1])
    args = {
        "middle agent": [SUB],
        "root user": [ALICE],
        "middle grant": ["--grant", parts(tokens[1])[1]["jti"]],
        "leaf grant": ["--grant", parts(tokens[2])[1]["jti"]],
        "root key": ["--key", world.kid(ALICE)],
    }[what]
    assert cli("revoke", *args).code == 0
    assert denied(cli, tokens[-1]) == "revoked"
    assert world.library_reason(tokens[-1]) == "revoked"


def test_a_revoked_outsider_leaves_the_chain_alone(world, cli):
    tokens = world.chain(2)
    assert cli("revoke", OTHER).code == 0
    allowed(cli, tokens[-1])


# --- first failure wins -----------------------------------------------------------------------------------


def test_time_is_checked_before_revocation(world, cli):
    """Step 4 comes before step 6: an expired grant whose jti is revoked is 'expired'."""
    token = world.grant(ALICE, BOT, iat=world.now - 7200, ttl=3600)
    world.revoke("grant", parts(token)[1]["jti"])
    assert denied(cli, token) == "expired"
    assert world.library_reason(token) == "expired"
    assert denied(cli, token, "--at", world.at(-6000)) == "revoked"


def test_time_is_checked_before_the_chain_shape(world, cli):
    """Step 4 comes before step 5: an expired child that also widens its scope is 'expired'."""
    root = world.grant(ALICE, BOT, "pull_request.create:acme/web", max_depth=1, iat=world.now - 7200, ttl=3600)
    child = world.grant(BOT, SUB, "pull_request.*:acme/*", parent=root, iat=world.now - 7000)
    assert denied(cli, child) == "expired"
    assert world.library_reason(child) == "expired"
    assert denied(cli, child, "--at", world.at(-6000)) == "scope_escalation"


def test_signatures_are_checked_before_time(world, cli):
    token = tamper(world.grant(ALICE, BOT, iat=world.now - 7200, ttl=3600), scope="*")
    assert denied(cli, token) == "bad_signature"


def test_the_verdict_is_the_same_from_a_warm_cache(world):
    """The verifier caches the time-independent steps by token; a second look answers the same."""
    token = world.grant(ALICE, BOT, iat=world.now - 7200, ttl=3600)
    world.revoke("grant", parts(token)[1]["jti"])
    v = world.verifier()
    for _ in range(2):
        with pytest.raises(VerificationError) as e:
            v.verify_grant(token)
        assert e.value.reason == "expired"
        with pytest.raises(VerificationError) as e:
            v.verify_grant(token, at=world.now - 6000)
        assert e.value.reason == "revoked"


# --- a verifier never gives up with anything but a reason --------------------------------------------------


def test_a_scope_too_complex_to_compare_is_escalation_not_a_crash(world, cli, monkeypatch):
    """A holder can sign a child whose scopes the covering check cannot decide within its budget;
    the verifier fails closed with a reason (exit 1), not a usage error (exit 2). The budget is made
    small here so that the test is quick; the real one gives up on the same shapes, only later."""
    import agentctl.scopes as scopes

    monkeypatch.setattr(scopes, "_MAX_WORK", 20_000)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    parents = ["a:" + ("*" + "*".join(alphabet[(i + k) % 36] for k in range(100)) + "*")[:254] for i in range(32)]
    child = ("a:" + "*".join(alphabet[k % 36] for k in range(120)))[:256]
    with pytest.raises(Exception) as e:  # the premise: the covering decision gives up on this pair
        scopes.witness(child, scopes.parse_scopes(parents))
    assert "too complex" in str(e.value)
    root = world.grant(ALICE, BOT, " ".join(parents), max_depth=1)
    token = world.grant(BOT, SUB, child, parent=root)
    assert world.library_reason(token) == "scope_escalation"
    assert denied(cli, token) == "scope_escalation"


# --- the installed console script ---------------------------------------------------------------------------


@pytest.mark.subprocess
def test_the_console_script_denies_with_exit_1_and_no_traceback(world, tmp_path):
    """A real process, no in-process shortcuts: the installed console script, a token from a file."""
    agentctl = Path(sys.executable).parent / "agentctl"
    good = world.chain(2)[-1]
    bad = ATTACKS_BY_NAME["child widens the action"].build(world)
    for token, code, reason in ((good, 0, None), (bad, 1, "scope_escalation")):
        f = tmp_path / "grant.jwt"
        f.write_text(token + "\n")
        p = subprocess.run([str(agentctl), "--json", "verify", str(f)], capture_output=True, text=True, timeout=60)
        assert p.returncode == code, p.stderr
        assert p.stdout.count("\n}") == 1 and json.loads(p.stdout)["reason"] == reason
        assert "Traceback" not in p.stderr
    p = subprocess.run([str(agentctl), "inspect", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "NOT VALID: scope_escalation" in p.stdout


# --- keys entering through cnf (Wycheproof-style) ----------------------------------------------------------

from conftest import testdata  # noqa: E402

CCTV = testdata("cctv-ed25519")


def _cctv_bad_keys() -> list[str]:
    """Every public key the CCTV vectors flag as small-order, non-canonical or with a small-order component."""
    bad = {"low_order_A", "non_canonical_A", "low_order_component_A"}
    cases = json.loads((CCTV / "ed25519vectors.json").read_text())
    return sorted({c["key"] for c in cases if bad & set(c.get("flags") or ())})


def test_the_identity_point_as_cnf_is_malformed(world, cli):
    identity = "01" + "00" * 31
    token = world.grant(ALICE, BOT, cnf_public=bytes.fromhex(identity))
    assert denied(cli, token) == "malformed"
    assert "claim 'cnf'" in cli("--json", "verify", token).json()["detail"]


def test_every_bad_key_of_the_cctv_vectors_is_refused_as_cnf(world):
    keys = _cctv_bad_keys()
    assert len(keys) >= 14
    v = world.verifier()
    for hex_key in keys:
        token = world.grant(ALICE, BOT, cnf_public=bytes.fromhex(hex_key))
        with pytest.raises(VerificationError) as e:
            v.verify_grant(token)
        assert e.value.reason == "malformed", hex_key
    # while an ordinary key in the same place is accepted
    assert world.library_reason(world.grant(ALICE, BOT)) is None


def test_a_small_order_cnf_is_refused_in_a_child_too(world, cli):
    root = world.grant(ALICE, BOT, max_depth=1)
    child = world.grant(BOT, SUB, parent=root, cnf_public=bytes.fromhex("ec" + "ff" * 30 + "7f"))
    assert denied(cli, child) == "malformed"


ATTACKS_BY_NAME = {a.name: a for a in ATTACKS}
