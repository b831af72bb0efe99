"""Interop (SPEC, "Token format"): a single-hop grant verifies with any JOSE library given the signer's
public JWK, and a grant made by another JOSE library with the same claims, headers and key verifies
with `agentctl verify`. Ed25519 (RFC 8037 EdDSA, and the RFC 9864 "Ed25519" name on verify)."""

from __future__ import annotations

import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt as jose_jwt
from joserfc.jwk import OKPKey

from agentctl.encoding import b64u_encode

from helpers_tokens import ALICE, BOT, SUB, digest, grant_claims, make_world, parts

GRANT_TYP = "agentctl-grant+jwt"

# joserfc warns that RFC 9864 deprecates the name EdDSA; agentctl signs with it (SPEC) and accepts both.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture
def world(home):
    return make_world(home)


def public_jwk(cli, name: str) -> dict:
    r = cli("pubkey", name, "--format", "jwk")
    assert r.code == 0
    return r.json()


def mint(cli, *args: str) -> str:
    r = cli("delegate", *args)
    assert r.code == 0, r.stderr
    return r.stdout.strip()


def private_jwk(world, name: str) -> dict:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(world.public(name)), "d": b64u_encode(world.seed(name))}


# --- agentctl's grants, read by others --------------------------------------------------------------------


def test_pyjwt_verifies_a_grant_and_reads_the_same_claims(world, cli):
    token = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "pull_request.*:acme/*", "--scope", "issues.read",
                 "--audience", "api.github", "--ttl", "30m", "--max-depth", "1")
    key = pyjwt.PyJWK(public_jwk(cli, ALICE))
    claims = pyjwt.decode(token, key, algorithms=["EdDSA"], audience="api.github",
                          options={"require": ["iss", "sub", "exp", "nbf", "iat", "jti"]})
    assert claims == parts(token)[1]
    assert claims["iss"] == ALICE and claims["act"] == {"sub": BOT}
    assert claims["scope"].split(" ") == ["pull_request.*:acme/*", "issues.read"]
    assert claims["cnf"]["jwk"]["x"] == public_jwk(cli, BOT)["x"]
    header = pyjwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": GRANT_TYP, "kid": public_jwk(cli, ALICE)["kid"]}
    verdict = cli("--json", "verify", token, "--audience", "api.github").json()
    assert verdict["ok"] and verdict["jti"] == claims["jti"] and verdict["agent"] == claims["act"]["sub"]


def test_pyjwt_refuses_a_grant_under_the_wrong_key_or_altered(world, cli):
    token = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a")
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, pyjwt.PyJWK(public_jwk(cli, BOT)), algorithms=["EdDSA"])
    h, p, s = token.split(".")
    with pytest.raises(pyjwt.InvalidSignatureError):
        flipped = s[:10] + ("B" if s[10] != "B" else "C") + s[11:]  # always a different signature
        pyjwt.decode(f"{h}.{p}.{flipped}", pyjwt.PyJWK(public_jwk(cli, ALICE)), algorithms=["EdDSA"])


def test_joserfc_verifies_a_grant_and_reads_the_same_claims(world, cli):
    token = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "deploy.*:web/**", "--audience", "api.ci")
    key = OKPKey.import_key(public_jwk(cli, ALICE))
    decoded = jose_jwt.decode(token, key, algorithms=["EdDSA"])
    assert decoded.claims == parts(token)[1]
    assert decoded.header["typ"] == GRANT_TYP and decoded.header["kid"] == key.thumbprint()
    jose_jwt.JWTClaimsRegistry(now=int(time.time()), aud={"essential": True, "value": "api.ci"},
                               iss={"essential": True, "value": ALICE}).validate(decoded.claims)


def test_each_hop_of_a_chain_is_an_ordinary_jws_under_its_signers_key(world, cli):
    parent = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a.*", "--max-depth", "1")
    child = mint(cli, "--parent", parent, "--to", SUB, "--scope", "a.b")
    root, hop = child.split("~")  # a presentation: each token a plain JWS, checked alone
    assert root == parent
    claims = pyjwt.decode(hop, pyjwt.PyJWK(public_jwk(cli, BOT)), algorithms=["EdDSA"])
    assert claims["prf"] == digest(parent) and claims["iss"] == BOT
    assert jose_jwt.decode(hop, OKPKey.import_key(public_jwk(cli, BOT)), algorithms=["EdDSA"]).claims == claims
    root_claims = pyjwt.decode(root, pyjwt.PyJWK(public_jwk(cli, ALICE)), algorithms=["EdDSA"])
    assert jose_jwt.decode(root, OKPKey.import_key(public_jwk(cli, ALICE)), algorithms=["EdDSA"]).claims == root_claims
    with pytest.raises(pyjwt.InvalidTokenError):  # the whole presentation is not one JWS
        pyjwt.decode(child, pyjwt.PyJWK(public_jwk(cli, BOT)), algorithms=["EdDSA"])


# --- others' grants, read by agentctl ---------------------------------------------------------------------


def spec_claims(world, **kw) -> dict:
    return grant_claims(ALICE, ALICE, BOT, world.public(BOT), scope="pull_request.create:acme/*",
                        iat=world.now - 10, exp=world.now + 600, **kw)


def test_a_grant_signed_by_pyjwt_verifies(world, cli):
    key = Ed25519PrivateKey.from_private_bytes(world.seed(ALICE))
    claims = spec_claims(world, aud="api.github", max_depth=1)
    token = pyjwt.encode(claims, key, algorithm="EdDSA", headers={"typ": GRANT_TYP, "kid": world.kid(ALICE)})
    assert pyjwt.get_unverified_header(token)["alg"] == "EdDSA"
    r = cli("--json", "verify", token, "--audience", "api.github", "--action", "pull_request.create", "--resource", "acme/web")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["agent"] == BOT and doc["on_behalf_of"] == ALICE and doc["jti"] == claims["jti"]
    assert world.library_reason(token, audience="api.github") is None
    # and agentctl re-delegates it like its own
    child = mint(cli, "--parent", token, "--to", SUB, "--scope", "pull_request.create:acme/web")
    assert cli("verify", child, "--audience", "api.github").code == 0


def test_a_grant_signed_by_joserfc_verifies(world, cli):
    key = OKPKey.import_key(private_jwk(world, ALICE))
    claims = spec_claims(world)
    token = jose_jwt.encode({"alg": "EdDSA", "typ": GRANT_TYP, "kid": world.kid(ALICE)}, claims, key, algorithms=["EdDSA"])
    r = cli("verify", token)
    assert r.code == 0, r.stderr


def test_the_rfc_9864_name_ed25519_is_accepted_on_verify(world, cli):
    key = OKPKey.import_key(private_jwk(world, ALICE))
    token = jose_jwt.encode({"alg": "Ed25519", "typ": GRANT_TYP, "kid": world.kid(ALICE)}, spec_claims(world), key,
                            algorithms=["Ed25519"])
    assert parts(token)[0]["alg"] == "Ed25519"
    r = cli("--json", "verify", token)
    assert r.code == 0, r.stderr
    assert world.library_reason(token) is None


def test_the_type_is_required_from_other_libraries_too(world, cli):
    """PyJWT's default header (typ JWT) is not an agentctl grant: a token of one type is never another."""
    key = Ed25519PrivateKey.from_private_bytes(world.seed(ALICE))
    token = pyjwt.encode(spec_claims(world), key, algorithm="EdDSA", headers={"kid": world.kid(ALICE)})
    r = cli("verify", token)
    assert r.code == 1 and "denied: malformed:" in r.stderr


def test_a_foreign_grant_signed_with_another_key_is_refused(world, cli):
    key = Ed25519PrivateKey.from_private_bytes(world.seed(SUB))
    token = pyjwt.encode(spec_claims(world), key, algorithm="EdDSA", headers={"typ": GRANT_TYP, "kid": world.kid(ALICE)})
    r = cli("verify", token)
    assert r.code == 1 and "denied: bad_signature:" in r.stderr
