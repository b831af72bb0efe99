"""Values that parse but could not be stored or shown are refused where they enter (SPEC "Token format":
I-JSON integers, times from 0 to the year 9999, no lone surrogates, no infinite numbers), and `typ`
compares as RFC 7515 §4.1.9 says. Attacks come as signed tokens: the signature holds, the value is wrong."""

from __future__ import annotations

import json

import pytest

from agentctl import jws as jws_mod
from agentctl.encoding import EncodingError, b64u_decode, b64u_encode, loads_strict
from agentctl.errors import VerificationError
from agentctl.values import MAX_INT, MAX_TIME, check_int, check_time

from conftest import snapshot
from helpers_tokens import ALICE, BOT, GRANT, header, jws, make_world, parts
from test_actions import World, unaudited

# --- the strict JSON parser ---------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    '{"a":"\\ud800"}',  # a lone high surrogate
    '["x\\udc00"]',  # a lone low surrogate, in an array
    '{"\\ud800":1}',  # in a key
    '"\\ud800\\u0041"',  # a high surrogate not followed by a low one
    '1e400', '-1e400', '[1E999]',  # overflow to infinity
    '9007199254740992', '-9007199254740992', '{"n":100000000000000000000}',  # beyond I-JSON
    '1' + '0' * 5000,  # and very long digit strings
])
def test_values_no_implementation_holds_are_not_json(text):
    with pytest.raises(EncodingError):
        loads_strict(text)
    with pytest.raises(EncodingError):
        loads_strict(text.encode())


def test_what_i_json_allows_still_parses():
    assert loads_strict('{"\\ud83d\\ude00":"\\ud83d\\ude00"}') == {"😀": "😀"}  # a surrogate pair is one character
    assert loads_strict('"\\\\ud800"') == "\\ud800"  # an escaped backslash, not an escape
    assert loads_strict(f"[{MAX_INT},{-MAX_INT},1e308,0.5]") == [MAX_INT, -MAX_INT, 1e308, 0.5]


def test_the_bounds_are_one_place():
    assert check_int(MAX_INT, "n") == MAX_INT and check_time(MAX_TIME, "t") == MAX_TIME
    for bad in (MAX_INT + 1, True, 1.0, "1", None):
        with pytest.raises(VerificationError) as e:
            check_int(bad, "claim 'n'")
        assert e.value.reason == "malformed" and "claim 'n'" in str(e.value.detail)
    for bad in (-1, MAX_TIME + 1, 1.5, False):
        with pytest.raises(VerificationError):
            check_time(bad, "t")


# --- signed tokens carrying them ----------------------------------------------------------------


@pytest.fixture
def w(home):
    return make_world(home)


def _raw_grant(w, payload: str) -> str:
    """A grant signed by alice whose payload is ``payload`` byte for byte."""
    return jws(header(w.seed(ALICE)), payload.encode(), w.seed(ALICE))


def _grant_text(w, **claims) -> str:
    c = parts(w.grant(ALICE, BOT))[1]
    c.update(claims)
    return json.dumps(c)


@pytest.mark.parametrize("change", [
    lambda text: text.replace('"iss"', '"x":"\\udead","iss"'),
    lambda text: text.replace('"iss"', '"x":1e400,"iss"'),
    lambda text: text.replace('"iss"', '"x":9007199254740993,"iss"'),
], ids=["lone-surrogate", "infinity", "beyond-i-json"])
def test_a_signed_grant_with_an_unrepresentable_value_is_malformed(w, change):
    assert w.library_reason(_raw_grant(w, _grant_text(w))) is None  # the same grant, untouched, holds
    assert w.library_reason(_raw_grant(w, change(_grant_text(w)))) == "malformed"


@pytest.mark.parametrize("claim, value", [
    ("exp", 58_889 * 10**9),  # milliseconds-like: past the year 9999
    ("iat", (1_800_000_000 - 60) * 1000),  # iat in milliseconds
    ("nbf", -1),
    ("exp", 2**53),
])
def test_time_claims_outside_the_years_1970_to_9999_are_malformed(w, claim, value):
    token = _raw_grant(w, _grant_text(w, **{claim: value}))
    assert w.library_reason(token) == "malformed"


# --- typ, as RFC 7515 §4.1.9 compares it ----------------------------------------------------------


@pytest.mark.parametrize("typ", ["agentctl-grant+jwt", "AGENTCTL-GRANT+JWT", "application/agentctl-grant+jwt", "Application/Agentctl-Grant+JWT"])
def test_typ_is_a_case_insensitive_media_type_with_optional_application_prefix(w, typ):
    token = w.grant(ALICE, BOT, head={"typ": typ})
    assert w.library_reason(token) is None
    assert jws_mod.peek_typ(token) == GRANT


@pytest.mark.parametrize("typ", [
    "agentctl-grant+jwt; charset=utf-8",  # no parameters
    "text/agentctl-grant+jwt",  # another top-level type
    "application/application/agentctl-grant+jwt",
    "APPLICATION/AGENTCTL-ACTION+JWT",  # another agentctl type, however spelled, is never a grant
    " agentctl-grant+jwt",
])
def test_typ_still_refuses_every_other_type(w, typ):
    assert w.library_reason(w.grant(ALICE, BOT, head={"typ": typ})) == "malformed"


def test_agentctl_writes_the_short_lower_case_form(w):
    from agentctl.jws import ACTION, encode

    assert parts(encode(ACTION, {"x": 1}, w.seed(BOT)))[0]["typ"] == "agentctl-action+jwt"


# --- revocation lists and rotation statements, through the CLI ------------------------------------


@pytest.fixture
def world(cli, tmp_path):
    return World(cli, tmp_path)


def _resigned_list(world: World, **claims) -> str:
    from agentctl.context import Context
    from agentctl.identity import signer_for

    token = world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice").stdout.strip()
    c = json.loads(b64u_decode(token.split(".")[1]))
    c.update(claims)
    seed = signer_for(Context.for_home(str(world.admin)), "user:alice").seed
    h = token.split(".")[0]
    p = b64u_encode(json.dumps(c).encode())
    from agentctl import crypto

    return f"{h}.{p}.{b64u_encode(crypto.sign(seed, f'{h}.{p}'.encode()))}"


@pytest.mark.parametrize("claims", [{"version": 2**53}, {"version": 2**63}, {"iat": 1_800_000_000_000}, {"iat": -5}, {"version": 1e400}])
def test_a_revocation_list_with_unstorable_numbers_is_refused_before_it_is_applied(world, claims):
    f = world.tmp / "list.txt"
    f.write_text(_resigned_list(world, **claims).replace("1e+400", "1e400") + "\n")
    before = unaudited(world.tool)
    r = world.run(world.tool, "revocations", "import", str(f))
    assert r.code == 1 and r.stderr.startswith("agentctl: denied: malformed: "), r.stderr
    assert "internal error" not in r.stderr
    assert unaudited(world.tool) == before
    good = world.tmp / "good.txt"  # the signer's later, honest lists still apply
    good.write_text(_resigned_list(world, version=5) + "\n")
    assert world.run(world.tool, "revocations", "import", str(good)).code == 0


@pytest.mark.parametrize("iat", [-1, 253402300800, 1_800_000_000_000_000])
def test_a_rotation_statement_dated_outside_the_years_1970_to_9999_is_malformed(cli, home, tmp_path, iat):
    from agentctl import crypto
    from agentctl.encoding import jwk, thumbprint
    from agentctl.secret import decode_secret

    other = tmp_path / "other"
    secret = cli("--home", str(other), "keygen", "agent:x", "--export-secret").stdout.strip()
    old = decode_secret(secret).seed
    assert cli("import", "agent:x", cli("--home", str(other), "pubkey", "agent:x").stdout.strip()).code == 0
    new = bytes(range(1, 33))
    claims = {
        "iss": "agent:x", "sub": "agent:x", "iat": iat, "old_kid": thumbprint(crypto.public_key(old)),
        "new_kid": thumbprint(crypto.public_key(new)), "new_jwk": jwk(crypto.public_key(new)),
    }
    statement = tmp_path / "rotation.jwt"
    statement.write_text(jws_mod.encode(jws_mod.ROTATION, claims, old))
    before = unaudited(home)
    r = cli("import", "agent:x", "--rotation", str(statement))
    assert r.code == 1 and "malformed" in r.stderr and "internal error" not in r.stderr, r.stderr
    assert unaudited(home) == before


# --- times on the command line --------------------------------------------------------------------


@pytest.mark.parametrize("args, says", [
    (("verify", "x.y.z", "--at", "2026-12-31T23:59:60Z"), "leap second"),
    (("verify", "x.y.z", "--at", "2026-02-30T00:00:00Z"), "day is out of range"),
    (("verify", "x.y.z", "--at", "0001-01-01T00:00:00+01:00"), "out of range"),
    (("audit", "--since", "0001-01-01T00:00:00+01:00"), "--since: bad time"),
    (("audit", "--until", "9999-12-31T23:59:59-23:59"), "--until: bad time"),
    (("audit", "export", "--since", "9999-12-31T23:59:59-01:00"), "out of range"),
])
def test_a_time_flag_that_cannot_be_a_time_is_a_usage_error(cli, home, args, says):
    cli("keygen", "user:alice")
    before = snapshot(home)
    r = cli(*args)
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("agentctl: error: ") and says in r.stderr and "internal error" not in r.stderr
    assert "Traceback" not in r.stderr and "(ValueError)" not in r.stderr
    assert snapshot(home) == before


def test_the_pyjwt_example_in_the_docs_checks_typ(w, tmp_path, monkeypatch):
    """The documented PyJWT recipe accepts a grant and refuses an action signed by the same key."""
    import re
    from pathlib import Path

    import jwt

    from agentctl.encoding import jwk

    doc = (Path(__file__).resolve().parents[1] / "docs" / "token-format.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "jwt.decode" in b)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice.jwk").write_text(json.dumps(jwk(w.public(ALICE))))
    (tmp_path / "parent.jwt").write_text(w.grant(ALICE, BOT, head={"typ": "application/Agentctl-Grant+JWT"}))
    scope: dict = {}
    exec(example, scope)
    assert scope["claims"]["iss"] == ALICE
    (tmp_path / "parent.jwt").write_text(w.grant(ALICE, BOT, head={"typ": "agentctl-action+jwt"}))
    with pytest.raises(jwt.InvalidTokenError):
        exec(example, {})
