"""The caches of the verification hot path, from the attacker's side: a long-running verifier sees a
revocation made after it looked the ids up (for a grant it has verified before, and for a home that had
no revocation store yet), and a bad token after good ones is still refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl import jws
from agentctl.encoding import EncodingError, canonical_json, loads_strict
from agentctl.errors import VerificationError
from agentctl.grants import parse_chain
from agentctl.home import Home
from agentctl.identity import revoke_grant, revoke_principal
from agentctl.verify import NO_AUDIT, Verifier

from test_actions import World
from test_revocation_store import ctx_at, jti


def verifier(w: World) -> Verifier:
    return Verifier.for_home(Home(w.tool), recorder=NO_AUDIT)


@pytest.mark.parametrize("first_store", [False, True], ids=["no-store-yet", "store-held"])
def test_a_grant_revoked_after_it_verified_is_refused_by_the_same_verifier(cli, tmp_path, first_store):
    w = World(cli, tmp_path)
    if first_store:  # the store exists, holding something else
        revoke_grant(ctx_at(w.tool), jti(7))
    v = verifier(w)
    for _ in range(3):  # verified, remembered
        v.verify_grant(w.grant, action="deploy.staging", resource="api/web")
    revoke_grant(ctx_at(w.tool), parse_chain(w.grant).leaf.jti)
    with pytest.raises(VerificationError) as e:
        v.verify_grant(w.grant, action="deploy.staging", resource="api/web")
    assert e.value.reason == "revoked"


def test_an_action_under_a_remembered_grant_sees_a_later_revocation_of_its_root(cli, tmp_path):
    w = World(cli, tmp_path)
    revoke_grant(ctx_at(w.tool), jti(7))
    v = verifier(w)
    tokens = [w.sign() for _ in range(2)]
    v.verify_action(tokens[0])
    revoke_principal(ctx_at(w.tool), "user:alice")
    with pytest.raises(VerificationError) as e:
        v.verify_action(tokens[1])
    assert e.value.reason == "revoked" and "user:alice" in e.value.detail


def test_a_large_integer_after_good_payloads_is_still_refused():
    good = b'{"iat":1800000000,"jti":"1234567890123456789"}'
    for _ in range(3):
        assert loads_strict(good)["iat"] == 1800000000
    for bad in (b'{"iat":9007199254740992}', b'{"a":{"b":[-90071992547409920]}}', b'{"iat":1,"iat":2}'):
        with pytest.raises(EncodingError):
            loads_strict(bad)
    assert loads_strict(b'{"n":9007199254740991}')["n"] == 2**53 - 1
    assert jws  # the token module is what calls it


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False) | st.integers(2**53, 2**60),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_canonical_json_writes_what_the_reference_writer_writes(value):
    """The C encoder's path (taken when the plain check passes) and the reference RFC 8785 writer agree,
    or both refuse; a value that is not plain after plain ones still goes the checking way."""
    from agentctl.encoding import _jcs

    out: list = []
    try:
        _jcs(value, out)
        want: object = "".join(out).encode("utf-8")
    except EncodingError:
        want = EncodingError
    try:
        got: object = canonical_json({"a": "b", "seq": 1})  # a plain one first
        got = canonical_json(value)
    except EncodingError:
        got = EncodingError
    assert got == want


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="AQgw-_/+=.Z09az \u00e9", min_size=18, max_size=30) | st.text(max_size=130))
def test_the_jti_check_accepts_exactly_what_strict_base64url_of_16_bytes_is(jti):
    from agentctl.encoding import b64u_decode
    from agentctl.grants import MAX_JTI, jti_claim

    try:
        want = len(jti) <= MAX_JTI and len(b64u_decode(jti)) >= 16
    except EncodingError:
        want = False
    try:
        got = jti_claim({"jti": jti}) == jti
    except VerificationError as e:
        assert e.reason == "malformed"
        got = False
    assert got == want


def test_a_bad_action_or_resource_after_good_ones_is_still_malformed():
    from agentctl.actions import action_from

    def token(**claims):
        base = {"iss": "agent:deployer", "sub": "user:alice", "action": "deploy.staging", "resource": "api/web",
                "iat": 1_800_000_000, "exp": 1_800_000_060, "jti": "A" * 22, "payload": {"sha256": "0" * 64}}
        t = object.__new__(jws.Jws)
        t.__dict__.update(header={}, claims={**base, **claims}, signing_input=b"", signature=b"", token="")
        return t

    for _ in range(3):
        assert action_from(token()).action == "deploy.staging"
    for bad in ({"resource": "api/*"}, {"resource": "api web"}, {"resource": 7}, {"action": "Deploy"},
                {"action": "deploy.*"}, {"iss": "x"}, {"sub": 3}):
        with pytest.raises(VerificationError) as e:
            action_from(token(**bad))
        assert e.value.reason == "malformed"
