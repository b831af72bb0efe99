"""The identity library (agentctl.identity): keygen, import, rotate, revoke and signer_for, used
directly, as a tool server would. Signatures are checked with nacl directly, not with agentctl."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import nacl.signing
import pytest

from agentctl import crypto, jws
from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.encoding import b58_encode, b64u_encode, did_key, jwk, thumbprint
from agentctl.errors import (
    DeniedError,
    ExistsError,
    NotFoundError,
    SecretFormatError,
    UsageError,
    VerificationError,
)
from agentctl.home import Home
from agentctl.identity import (
    import_principal,
    import_rotation,
    keygen,
    parse_public_key,
    public_formats,
    revoke_grant,
    revoke_key,
    revoke_principal,
    rotate,
    signer_for,
)
from agentctl.keystore import KeyringKeystore
from agentctl.secret import decode_secret
from agentctl.store import Store

from conftest import snapshot

T0 = 1_800_000_000.0
P = 2**255 - 19


def ctx_for(path, clock=None, **env) -> Context:
    environ = dict(os.environ, **env)
    return Context(Home(path, environ), clock=clock or FixedClock(T0), env=environ)


@pytest.fixture
def ctx(tmp_path) -> Context:
    return ctx_for(tmp_path / "home")


@pytest.fixture
def other(tmp_path) -> Context:
    """A second machine."""
    return ctx_for(tmp_path / "other")


def b64u_dec(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc7638(x: str) -> str:
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


def nacl_verifies(public: bytes, token: str) -> bool:
    h, p, s = token.split(".")
    try:
        nacl.signing.VerifyKey(public).verify(f"{h}.{p}".encode(), b64u_dec(s))
        return True
    except Exception:
        return False


def did_from_raw(raw: bytes) -> str:
    return "did:key:z" + b58_encode(b"\xed\x01" + raw)


# --- keygen -------------------------------------------------------------------------------------


def test_keygen_creates_a_principal_whose_secret_is_in_the_keystore(ctx):
    p, secret = keygen(ctx, "agent:code-reviewer:prod", roles=("reviewer", "reviewer", "ops"), attrs=("team=platform", "env=prod"))
    assert secret is None
    assert p.name == "agent:code-reviewer:prod" and p.origin == "local" and p.created == T0
    assert p.roles == ("reviewer", "ops")
    assert dict(p.attrs) == {"team": "platform", "env": "prod"}
    assert p.keystore == "keyring"
    assert len(p.keys) == 1 and p.current.status == "current" and p.current.created == T0
    assert p.current.kid == rfc7638(b64u_encode(p.current.public))
    assert Store(ctx.home).get(p.name) == p
    signer = signer_for(ctx, p.name)
    assert signer.public == p.current.public and signer.source == "keyring"
    assert KeyringKeystore().get(p.name, p.current.kid) == signer.seed


def test_keygen_with_the_file_keystore(tmp_path):
    ctx = ctx_for(tmp_path / "home", AGENTCTL_KEYSTORE="file")
    p, _ = keygen(ctx, "agent:a")
    assert p.keystore == "file"
    assert (tmp_path / "home" / "keys" / f"{p.current.kid}.key").is_file()
    assert signer_for(ctx, "agent:a").source == "file"


def test_keygen_gives_every_principal_a_fresh_key(ctx):
    kids = {keygen(ctx, f"agent:n{i}")[0].current.kid for i in range(10)}
    assert len(kids) == 10


def test_keygen_refuses_an_existing_name_and_changes_nothing(ctx):
    keygen(ctx, "agent:a")
    before = snapshot(ctx.home.path)
    with pytest.raises(ExistsError, match="already exists") as info:
        keygen(ctx, "agent:a")
    assert "rotate" in info.value.hint
    assert snapshot(ctx.home.path) == before


@pytest.mark.parametrize(
    "kw",
    [{"roles": ("Bad Role",)}, {"attrs": ("novalue",)}, {"attrs": ("Key=v",)}, {"attrs": ("k=" + "v" * 257,)}, {"attrs": ("k=a\nb",)}, {"store_secret": False}],
    ids=["role", "attr without =", "attr upper key", "attr too long", "attr control", "no-store without export"],
)
def test_keygen_validates_everything_before_it_writes(ctx, kw):
    with pytest.raises(UsageError):
        keygen(ctx, "agent:a", **kw)
    assert not ctx.home.path.exists()


def test_keygen_export_secret_no_store_keeps_nothing_on_this_machine(ctx, tmp_path):
    p, secret = keygen(ctx, "agent:ci", store_secret=False, export_secret=True)
    assert p.keystore is None
    s = decode_secret(secret)
    assert s.name == "agent:ci"
    assert nacl.signing.SigningKey(s.seed).verify_key.encode() == p.current.public
    assert KeyringKeystore().get("agent:ci", p.current.kid) is None
    assert not (ctx.home.path / "keys").exists()
    everything = b"".join(snapshot(tmp_path).values())
    assert secret.encode() not in everything and s.seed not in everything
    with pytest.raises(NotFoundError, match="no secret key"):
        signer_for(ctx, "agent:ci")


def test_keygen_export_secret_with_store_keeps_the_same_key(ctx):
    p, secret = keygen(ctx, "agent:a", export_secret=True)
    assert decode_secret(secret).seed == signer_for(ctx, "agent:a").seed


# --- the exported secret signs anywhere ---------------------------------------------------------


def test_a_fresh_empty_home_signs_with_the_exported_secret(ctx, tmp_path):
    p, secret = keygen(ctx, "agent:ci", store_secret=False, export_secret=True)
    runner = ctx_for(tmp_path / "ci-runner", AGENTCTL_SECRET_KEY=secret)
    signer = signer_for(runner, "agent:ci")
    assert signer.source == "env" and signer.public == p.current.public and signer.kid == p.current.kid
    token = jws.encode(jws.ACTION, {"iss": "agent:ci", "action": "deploy"}, signer.seed)
    assert nacl_verifies(p.current.public, token)
    assert not (tmp_path / "ci-runner").exists(), "signing with the environment secret writes nothing"
    with pytest.raises(NotFoundError):
        rotate(runner, "agent:ci")  # nothing to rotate in an empty home
    with pytest.raises(NotFoundError):
        signer_for(runner, "agent:other")  # the secret names its principal


@pytest.mark.parametrize("damage", ["truncated", "mistyped"])
def test_a_damaged_exported_secret_is_a_clear_error_that_does_not_echo_it(ctx, tmp_path, damage):
    _, secret = keygen(ctx, "agent:ci", store_secret=False, export_secret=True)
    if damage == "truncated":
        bad = secret[:-5]
    else:
        i = len(secret) // 2
        bad = secret[:i] + ("A" if secret[i] != "A" else "B") + secret[i + 1 :]
    runner = ctx_for(tmp_path / "ci-runner", AGENTCTL_SECRET_KEY=bad)
    with pytest.raises(SecretFormatError) as info:
        signer_for(runner, "agent:ci")
    assert info.value.exit_code == 2
    body = bad[len("AGENTCTL-SECRET-KEY-1"):]
    for i in range(len(body) - 6):
        assert body[i : i + 6] not in info.value.message + (info.value.hint or "")


def test_an_exported_secret_that_is_not_the_current_key_is_refused(ctx, tmp_path):
    _, secret = keygen(ctx, "agent:a", export_secret=True)
    rotate(ctx, "agent:a")
    stale = ctx_for(ctx.home.path, AGENTCTL_SECRET_KEY=secret)
    with pytest.raises(UsageError, match="not its current key"):
        signer_for(stale, "agent:a")


def test_the_environment_secret_of_another_principal_is_ignored(ctx, tmp_path):
    keygen(ctx, "agent:a")
    _, secret_b = keygen(ctx, "agent:b", store_secret=False, export_secret=True)
    c = ctx_for(ctx.home.path, AGENTCTL_SECRET_KEY=secret_b)
    assert signer_for(c, "agent:a").source == "keyring"
    assert signer_for(c, "agent:b").source == "env"


# --- public keys ----------------------------------------------------------------------------------


def test_public_formats_agree(ctx):
    p, _ = keygen(ctx, "agent:a")
    f = public_formats(p.current.public)
    assert b64u_dec(f["b64"]) == p.current.public
    assert f["did"] == did_from_raw(p.current.public)
    assert f["jwk"]["kty"] == "OKP" and f["jwk"]["crv"] == "Ed25519" and f["jwk"]["x"] == f["b64"]
    assert f["jwk"]["kid"] == f["kid"] == rfc7638(f["b64"]) == p.current.kid


def test_parse_public_key_accepts_every_public_form(ctx, tmp_path):
    p, _ = keygen(ctx, "agent:a")
    raw = p.current.public
    (tmp_path / "key.jwk").write_text(json.dumps(jwk(raw)))
    (tmp_path / "key.json").write_text(json.dumps({"keys": [jwk(raw, kid=True)]}))
    (tmp_path / "plainfile").write_text(json.dumps(jwk(raw)))
    forms = [
        did_key(raw),
        b64u_encode(raw),
        json.dumps(jwk(raw)),
        json.dumps(jwk(raw, kid=True)),
        json.dumps({"keys": [jwk(raw)]}),
        str(tmp_path / "key.jwk"),
        str(tmp_path / "key.json"),
        str(tmp_path / "plainfile"),
        "  " + did_key(raw) + "\n",
    ]
    for form in forms:
        assert parse_public_key(form) == raw, form


def _off_curve() -> bytes:
    d = (-121665 * pow(121666, P - 2, P)) % P
    for y in range(2, 100):
        x2 = (y * y - 1) * pow(d * y * y + 1, P - 2, P) % P
        if x2 and pow(x2, (P - 1) // 2, P) != 1:
            return y.to_bytes(32, "little")
    raise AssertionError("no off-curve y found")


SMALL_ORDER = {
    "identity (0x01, 31 zero bytes)": bytes([1]) + bytes(31),
    "order 4 (y=0)": bytes(32),
    "order 4 (y=0, sign bit)": bytes(31) + b"\x80",
    "order 2 (y=-1)": (P - 1).to_bytes(32, "little"),
    "order 8": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    "order 8 (other)": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
}
BAD_POINTS = {
    **SMALL_ORDER,
    "non-canonical y=p": P.to_bytes(32, "little"),
    "non-canonical y=p+1": (P + 1).to_bytes(32, "little"),
    "mixed order (key + order-8 point)": bytes.fromhex("9158312a9a8d6e3b34c891d6d61444f8b8211c5117ebad15bdb0bd68b07e0245"),
    "not on the curve": _off_curve(),
}


@pytest.mark.parametrize("raw", list(BAD_POINTS.values()), ids=list(BAD_POINTS))
@pytest.mark.parametrize("form", ["did", "b64", "jwk"])
def test_keys_of_small_order_or_off_the_curve_are_refused_in_every_form(ctx, raw, form):
    text = {"did": did_from_raw(raw), "b64": b64u_encode(raw), "jwk": json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(raw)})}[form]
    with pytest.raises(UsageError) as info:
        parse_public_key(text)
    assert "refused" in info.value.message
    with pytest.raises(UsageError):
        import_principal(ctx, "agent:evil", text)
    assert not ctx.home.path.exists()


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"kty":"OKP","crv":"X25519","x":"%s"}', "crv must be Ed25519"),
        ('{"kty":"OKP","crv":"Ed448","x":"%s"}', "crv must be Ed25519"),
        ('{"kty":"EC","crv":"P-256","x":"%s","y":"%s"}', "kty must be OKP"),
        ('{"kty":"OKP","crv":"Ed25519","x":"%s","d":"%s"}', "private key"),
        ('{"kty":"OKP","crv":"Ed25519"}', "no 'x'"),
        ('{"kty":"OKP","crv":"Ed25519","x":"%s","x":"%s"}', "duplicate"),
        ('{"keys":[{"kty":"OKP","crv":"Ed25519","x":"%s"},{"kty":"OKP","crv":"Ed25519","x":"%s"}]}', "exactly one key"),
        ('{"kty":"OKP","crv":"Ed25519","x":"AAAA"}', "32 bytes"),
        ('{"keys": "not a list"}', "exactly one key"),
        ("{not json", "not JSON"),
    ],
)
def test_bad_jwks_are_refused(text, match):
    x = b64u_encode(bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
    text = text.replace("%s", x)
    with pytest.raises(UsageError, match=match):
        parse_public_key(text)


@pytest.mark.parametrize(
    "text",
    ["did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc", "did:web:example.com", "did:key:zzzz", "did:key:z0OIl", "AAAA", "not a key", b64u_encode(bytes(31)), b64u_encode(bytes(33)) + "="],
)
def test_other_keys_and_junk_are_refused(text):
    with pytest.raises(UsageError):
        parse_public_key(text)


def test_a_missing_jwk_file_is_not_found(tmp_path):
    with pytest.raises(NotFoundError):
        parse_public_key(str(tmp_path / "nope.jwk"))


# --- import -------------------------------------------------------------------------------------


def test_import_trusts_a_principal_made_elsewhere(ctx, other):
    theirs, _ = keygen(other, "agent:theirs")
    mine = import_principal(ctx, "agent:theirs", did_key(theirs.current.public), roles=("partner",))
    assert mine.origin == "imported" and mine.keystore is None and mine.roles == ("partner",)
    assert mine.current.public == theirs.current.public
    with pytest.raises(NotFoundError, match="imported"):
        signer_for(ctx, "agent:theirs")
    with pytest.raises(UsageError, match="imported"):
        rotate(ctx, "agent:theirs")


def test_import_refuses_an_existing_name(ctx, other):
    theirs, _ = keygen(other, "agent:x")
    import_principal(ctx, "agent:x", did_key(theirs.current.public))
    before = snapshot(ctx.home.path)
    with pytest.raises(ExistsError, match="already trusted"):
        import_principal(ctx, "agent:x", b64u_encode(theirs.current.public))
    mallory, _ = keygen(other, "agent:mallory")
    with pytest.raises(ExistsError, match="another key") as info:
        import_principal(ctx, "agent:x", did_key(mallory.current.public))
    assert "--rotation" in info.value.hint
    assert snapshot(ctx.home.path) == before


def test_import_refuses_a_revoked_key(ctx, other):
    theirs, _ = keygen(other, "agent:x")
    import_principal(ctx, "agent:x", did_key(theirs.current.public))
    revoke_key(ctx, theirs.current.kid)
    with pytest.raises(DeniedError, match="revoked"):
        import_principal(ctx, "agent:y", did_key(theirs.current.public))


# --- rotate -------------------------------------------------------------------------------------


def test_rotate_retires_the_old_key_and_signs_a_statement_with_it(tmp_path):
    clock = FixedClock(T0)
    ctx = ctx_for(tmp_path / "home", clock)
    p, _ = keygen(ctx, "agent:a")
    old = signer_for(ctx, "agent:a")
    clock.advance(3600)
    updated, statement, _ = rotate(ctx, "agent:a")
    assert [k.status for k in updated.keys] == ["retired", "current"]
    assert updated.keys[0].kid == p.current.kid and updated.keys[0].retired == T0 + 3600
    assert updated.current.created == T0 + 3600
    assert Store(ctx.home).get("agent:a") == updated
    new = signer_for(ctx, "agent:a")
    assert new.public == updated.current.public != old.public
    assert KeyringKeystore().get("agent:a", old.kid) is None, "the retired secret is removed"
    # the statement: an agentctl-rotation+jwt signed by the old key, naming the new one
    h, c, _ = statement.split(".")
    header, claims = json.loads(b64u_dec(h)), json.loads(b64u_dec(c))
    assert header == {"alg": "EdDSA", "typ": "agentctl-rotation+jwt", "kid": old.kid}
    assert claims["iss"] == claims["sub"] == "agent:a"
    assert claims["old_kid"] == old.kid and claims["new_kid"] == new.kid
    assert b64u_dec(claims["new_jwk"]["x"]) == new.public
    assert claims["iat"] == int(T0 + 3600)
    assert nacl_verifies(old.public, statement)
    assert not nacl_verifies(new.public, statement)


def test_rotate_with_the_file_keystore_and_a_passphrase(tmp_path):
    ctx = ctx_for(tmp_path / "home", AGENTCTL_KEYSTORE="file", AGENTCTL_PASSPHRASE="correct horse")
    p, _ = keygen(ctx, "agent:a")
    updated, _, _ = rotate(ctx, "agent:a")
    assert not (tmp_path / "home" / "keys" / f"{p.current.kid}.key").exists()
    assert (tmp_path / "home" / "keys" / f"{updated.current.kid}.key").read_text().startswith("AGENTCTL-SEALED-KEY-1 ")
    assert signer_for(ctx, "agent:a").public == updated.current.public


def test_rotate_unknown_principal(ctx):
    with pytest.raises(NotFoundError):
        rotate(ctx, "agent:nope")


def test_rotate_with_the_environment_secret_of_a_no_store_principal(ctx):
    p, secret = keygen(ctx, "agent:ci", store_secret=False, export_secret=True)
    c = ctx_for(ctx.home.path, AGENTCTL_SECRET_KEY=secret)
    with pytest.raises(UsageError, match="must be exported"):  # the new secret would be lost
        rotate(c, "agent:ci")
    updated, statement, new_secret = rotate(c, "agent:ci", store_secret=False, export_secret=True)
    assert nacl_verifies(p.current.public, statement)
    assert updated.keys[0].status == "retired"
    assert updated.keystore is None
    from agentctl.secret import decode_secret

    assert crypto.public_key(decode_secret(new_secret).seed) == updated.current.public


# --- import --rotation ----------------------------------------------------------------------------


@pytest.fixture
def pair(ctx, other):
    """agent:theirs made on `other` and trusted on `ctx`."""
    theirs, _ = keygen(other, "agent:theirs")
    import_principal(ctx, "agent:theirs", did_key(theirs.current.public))
    return ctx, other


def test_import_rotation_moves_trust_to_the_new_key(pair):
    ctx, other = pair
    old_kid = Store(ctx.home).require("agent:theirs").current.kid
    theirs, statement, _ = rotate(other, "agent:theirs")
    mine = import_rotation(ctx, "agent:theirs", statement)
    assert mine.current.public == theirs.current.public
    assert mine.key(old_kid).status == "retired"
    assert mine.origin == "imported"
    # applying it again changes nothing
    before = snapshot(ctx.home.path)
    assert import_rotation(ctx, "agent:theirs", statement) == mine
    assert snapshot(ctx.home.path) == before


def test_a_rotation_back_to_a_retired_key_is_refused(pair):
    ctx, other = pair
    first_public = Store(ctx.home).require("agent:theirs").current.public
    _, statement, _ = rotate(other, "agent:theirs")
    import_rotation(ctx, "agent:theirs", statement)
    # the holder of the new key signs a statement that names the retired key again
    from agentctl.identity import signer_for

    current = signer_for(other, "agent:theirs")
    claims = {"iss": "agent:theirs", "sub": "agent:theirs", "iat": int(T0), "jti": "A" * 22, "old_kid": current.kid,
              "new_kid": thumbprint(first_public), "new_jwk": jwk(first_public)}
    back = jws.encode(jws.ROTATION, claims, current.seed)
    before = snapshot(ctx.home.path)
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", back)
    assert info.value.reason == "chain_broken"
    assert "already used and retired" in info.value.detail
    assert snapshot(ctx.home.path) == before


def test_import_rotations_in_order_and_out_of_order(pair):
    ctx, other = pair
    _, first, _ = rotate(other, "agent:theirs")
    theirs, second, _ = rotate(other, "agent:theirs")
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", second)
    assert info.value.reason == "unknown_key"
    import_rotation(ctx, "agent:theirs", first)
    mine = import_rotation(ctx, "agent:theirs", second)
    assert mine.current.public == theirs.current.public
    assert [k.status for k in mine.keys] == ["retired", "retired", "current"]
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", first)  # an old statement signed by a retired key
    assert info.value.reason == "chain_broken"


def test_a_tampered_rotation_statement_is_refused_and_changes_nothing(pair):
    ctx, other = pair
    _, statement, _ = rotate(other, "agent:theirs")
    mallory, _ = keygen(other, "agent:mallory")
    h, c, s = statement.split(".")
    claims = json.loads(b64u_dec(c))
    claims["new_jwk"] = jwk(mallory.current.public)
    claims["new_kid"] = mallory.current.kid
    forged = f"{h}.{b64u_encode(json.dumps(claims).encode())}.{s}"
    before = snapshot(ctx.home.path)
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", forged)
    assert info.value.reason == "bad_signature"
    assert snapshot(ctx.home.path) == before


def test_a_rotation_statement_for_another_principal_is_refused(pair, other):
    ctx, _ = pair
    keygen(other, "agent:else")
    _, statement, _ = rotate(other, "agent:else")
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", statement)
    assert info.value.reason == "chain_broken"


def test_a_token_of_another_type_is_not_a_rotation_statement(pair, other):
    ctx, _ = pair
    seed = signer_for(other, "agent:theirs").seed
    claims = {"iss": "agent:theirs", "sub": "agent:theirs", "iat": int(T0)}
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", jws.encode(jws.GRANT, claims, seed))
    assert info.value.reason == "malformed"


def test_a_rotation_statement_from_the_future_is_refused(tmp_path):
    ctx = ctx_for(tmp_path / "home", FixedClock(T0))
    other = ctx_for(tmp_path / "other", FixedClock(T0 + 3600))
    theirs, _ = keygen(other, "agent:theirs")
    import_principal(ctx, "agent:theirs", did_key(theirs.current.public))
    _, statement, _ = rotate(other, "agent:theirs")
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", statement)
    assert info.value.reason == "not_yet_valid"


def test_a_rotation_of_a_revoked_principal_is_refused(pair):
    ctx, other = pair
    _, statement, _ = rotate(other, "agent:theirs")
    revoke_principal(ctx, "agent:theirs")
    with pytest.raises(VerificationError) as info:
        import_rotation(ctx, "agent:theirs", statement)
    assert info.value.reason == "revoked"


def test_import_rotation_of_an_unknown_principal(ctx, other):
    keygen(other, "agent:theirs")
    _, statement, _ = rotate(other, "agent:theirs")
    with pytest.raises(NotFoundError):
        import_rotation(ctx, "agent:theirs", statement)


# --- revoke -------------------------------------------------------------------------------------


def test_revoke_principal_is_recorded_permanent_and_idempotent(ctx):
    keygen(ctx, "agent:a")
    kids = [keygen(ctx, "agent:b")[0].current.kid]
    entry, new = revoke_principal(ctx, "agent:a", "compromised")
    assert new and entry.kind == "principal" and entry.id == "agent:a" and entry.reason == "compromised" and entry.at == T0
    assert Store(ctx.home).revocations().principal("agent:a") == entry
    before = snapshot(ctx.home.path)
    again, new = revoke_principal(ctx, "agent:a", "another reason")
    assert not new and again == entry
    assert snapshot(ctx.home.path) == before
    assert Store(ctx.home).revocations().principal("agent:b") is None and kids


def test_a_revoked_principal_cannot_sign_or_rotate(ctx):
    p, _ = keygen(ctx, "agent:a")
    revoke_principal(ctx, "agent:a")
    with pytest.raises(DeniedError, match="revoked"):
        signer_for(ctx, "agent:a")
    with pytest.raises(DeniedError, match="revoked"):
        rotate(ctx, "agent:a")
    assert KeyringKeystore().get("agent:a", p.current.kid) is None, "its secret is removed from the keystore"


def test_a_revoked_principal_cannot_sign_with_its_exported_secret_either(ctx):
    _, secret = keygen(ctx, "agent:ci", store_secret=False, export_secret=True)
    revoke_principal(ctx, "agent:ci")
    c = ctx_for(ctx.home.path, AGENTCTL_SECRET_KEY=secret)
    with pytest.raises(DeniedError, match="revoked"):
        signer_for(c, "agent:ci")
    with pytest.raises(DeniedError, match="revoked"):
        rotate(c, "agent:ci")


def test_a_revoked_key_cannot_sign_even_from_the_environment(ctx):
    p, secret = keygen(ctx, "agent:ci", store_secret=False, export_secret=True)
    revoke_key(ctx, p.current.kid)
    c = ctx_for(ctx.home.path, AGENTCTL_SECRET_KEY=secret)
    with pytest.raises(DeniedError, match="revoked"):
        signer_for(c, "agent:ci")


def test_revoke_key(ctx):
    p, _ = keygen(ctx, "agent:a")
    old = p.current.kid
    rotated, _, _ = rotate(ctx, "agent:a")
    entry, new = revoke_key(ctx, old, "leaked backup")
    assert new and entry.kind == "key" and entry.id == old
    assert signer_for(ctx, "agent:a").kid == rotated.current.kid, "revoking a retired key leaves the current one"
    entry, new = revoke_key(ctx, rotated.current.kid)
    assert new
    with pytest.raises(DeniedError):
        signer_for(ctx, "agent:a")
    assert not revoke_key(ctx, old)[1]


def test_revoke_grant(ctx):
    jti = "aGVsbG8td29ybGQtMTIzNA"
    entry, new = revoke_grant(ctx, jti, "scope too wide")
    assert new and Store(ctx.home).revocations().grant(jti) == entry
    assert revoke_grant(ctx, jti) == (entry, False)


@pytest.mark.parametrize(
    "call,exc",
    [
        (lambda c: revoke_principal(c, "agent:nope"), NotFoundError),
        (lambda c: revoke_principal(c, "Agent:X"), UsageError),
        (lambda c: revoke_key(c, "A" * 43), NotFoundError),
        (lambda c: revoke_key(c, "short"), UsageError),
        (lambda c: revoke_key(c, "A" * 42 + "!"), UsageError),
        (lambda c: revoke_grant(c, "short"), UsageError),
        (lambda c: revoke_grant(c, "x" * 16 + " y"), UsageError),
        (lambda c: revoke_grant(c, "j" * 22, "line\nbreak"), UsageError),
        (lambda c: revoke_grant(c, "j" * 22, "r" * 501), UsageError),
    ],
    ids=["unknown principal", "bad name", "unknown key", "short kid", "bad kid", "short jti", "jti with space", "reason with newline", "reason too long"],
)
def test_bad_revocations_are_refused_and_change_nothing(ctx, call, exc):
    keygen(ctx, "agent:a")
    before = snapshot(ctx.home.path)
    with pytest.raises(exc):
        call(ctx)
    assert snapshot(ctx.home.path) == before
