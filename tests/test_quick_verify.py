"""The quick paths of grant verification, from the attacker's side: a grant token read in one pass
(grants.quick_hop) is exactly the hop the full parse gives, and whatever the full parse refuses the
quick path never accepts; the values it remembers (headers, names, holder keys, scope claims,
coverage of a hop) are remembered only once they passed, so a bad token after good ones is refused
with the same reason and detail; revocations are asked at every check."""

from __future__ import annotations

import json
import os

import pytest

from agentctl import crypto, jws
from agentctl.encoding import b64u_encode
from agentctl.errors import VerificationError
from agentctl.grants import grant_claims, hop_from, parse_chain, quick_hop
from agentctl.models import Revocation, Revocations
from agentctl.presentation import parse_grants
from agentctl.scopes import parse_scopes
from agentctl.verify import NO_AUDIT, StaticTrust, Verifier
from agentctl.verify.trust import Trust

NOW = 1_800_000_000
ALICE, BOT, SUB = os.urandom(32), os.urandom(32), os.urandom(32)


def claims(signer: str, to: str, to_seed: bytes, scope: str, parent: str | None = None, max_depth: int = 0) -> dict:
    hop = parse_chain(parent).leaf if parent else None
    return grant_claims(iss=signer, sub="user:alice", delegate=to, delegate_public=crypto.public_key(to_seed),
                        scopes=parse_scopes(scope), now=NOW, ttl=3600, max_depth=max_depth, audience=None, parent=hop)


def signed(payload: bytes, seed: bytes = ALICE, signature: bytes | None = None) -> str:
    """A grant token over exactly ``payload`` (its JSON text as given)."""
    header = {"alg": "EdDSA", "typ": jws.GRANT, "kid": b64u_encode(b"k" * 32)}
    from agentctl.encoding import thumbprint

    header["kid"] = thumbprint(crypto.public_key(seed))
    h = b64u_encode(json.dumps(header, separators=(",", ":")).encode())
    p = b64u_encode(payload)
    sig = crypto.sign(seed, f"{h}.{p}".encode()) if signature is None else signature
    return f"{h}.{p}.{b64u_encode(sig)}"


def root(scope: str = "deploy.*:api/**", max_depth: int = 1) -> str:
    return jws.encode(jws.GRANT, claims("user:alice", "agent:bot", BOT, scope, max_depth=max_depth), ALICE)


def child(parent: str, scope: str) -> str:
    return parent + "~" + jws.encode(jws.GRANT, claims("agent:bot", "agent:sub", SUB, scope, parent=parent), BOT)


def verifier(**kw) -> Verifier:
    from agentctl.clock import FixedClock

    return Verifier(StaticTrust({"user:alice": crypto.public_key(ALICE)}, **kw), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))


def full(token: str):
    """The hop the full parse gives, or its error as (reason, detail)."""
    try:
        t = jws.decode(token, (jws.GRANT, jws.APPROVAL, jws.ACTION), clean=True)
        if t.typ != jws.GRANT:
            return ("malformed", "not a grant")
        return hop_from(t, token)
    except VerificationError as e:
        return (e.reason, e.detail)


def good_payload() -> str:
    return json.dumps(claims("user:alice", "agent:bot", BOT, "deploy.*:api/**"), separators=(",", ":"))


def variants() -> dict[str, bytes]:
    """Payloads around a good one: each either refused by the full parse or unusual in its text."""
    g = good_payload()
    body = g[1:-1]
    return {
        "duplicate key": ("{" + body + ',"iss":"user:alice"}').encode(),
        "duplicate nested key": g.replace('"kty":"OKP"', '"kty":"OKP","kty":"OKP"').encode(),
        "integer past 2^53": g.replace('"max_depth":0', '"max_depth":9007199254740992').encode(),
        "huge integer elsewhere": ("{" + body + ',"x":-' + "9" * 40 + "}").encode(),
        "NaN": ("{" + body + ',"x":NaN}').encode(),
        "float overflow": ("{" + body + ',"x":1e400}').encode(),
        "escaped name": g.replace('"iss":"user:alice"', '"iss":"user:\\u0061lice"').encode(),
        "lone surrogate escape": ("{" + body + ',"x":"\\ud800"}').encode(),
        "whitespace before colon": g.replace('"iss":', '"iss" :').encode(),
        "duplicate key behind whitespace": ("{" + body + ',"iss"\t:"user:alice"}').encode(),
        "duplicate key behind a newline": ("{" + body + ',"sub"\n:"user:alice"}').encode(),
        "duplicate key beside a value starting with a colon": ("{" + body + ',"aud":":x","iss":"user:alice"}').encode(),
        "value starting with a colon": ("{" + body + ',"aud":":x"}').encode(),
        "duplicate act member": g.replace('"act":{"sub":"agent:bot"}', '"act":{"sub":"agent:bot","sub":"agent:bot"}').encode(),
        "duplicate cnf member": g.replace('"cnf":{"jwk":', '"cnf":{"jwk":{},"jwk":').encode(),
        "an unknown claim": ("{" + body + ',"note":"hello"}').encode(),
        "an unknown claim hiding a duplicate": ("{" + body + ',"note":{"iss":"a","iss":"b"}}').encode(),
        "trailing bytes": (g + " ").encode(),
        "trailing object": (g + "{}").encode(),
        "not an object": b"[1,2]",
        "not utf-8": g.encode()[:-2] + b"\xff}",
        "deep nesting": ("{" + body + ',"x":' + "[" * 5000 + "]" * 5000 + "}").encode(),
        "unknown nested claim": ("{" + body + ',"x":{"y":[1,{"z":null}]}}').encode(),
        "name never seen": g.replace('"iss":"user:alice"', '"iss":"user:mallory"').encode(),
        "bad name": g.replace('"iss":"user:alice"', '"iss":"user alice"').encode(),
        "exp before nbf": g.replace(f'"exp":{NOW + 3600}', f'"exp":{NOW}').encode(),
        "jti too short": g.replace('"jti":"', '"jti":"x', 1).replace('"jti":"x', '"jti":"AAAA"', 1).encode(),
        "scope empty": g.replace('"scope":"deploy.*:api/**"', '"scope":" "').encode(),
        "scope a list": g.replace('"scope":"deploy.*:api/**"', '"scope":["deploy.*:api/**"]').encode(),
        "prf a token": ("{" + body + ',"prf":"a.b.c"}').encode(),
        "audience list": ("{" + body + ',"aud":["svc:a","svc:b"]}').encode(),
        "bad audience": ("{" + body + ',"aud":[]}').encode(),
    }


def test_a_usual_grant_is_read_quickly_and_exactly_as_the_full_parse_reads_it():
    token = root()
    parse_grants([token])  # its header, names, holder key and scope, met once
    quick = quick_hop(token)
    assert quick is not None and quick == full(token)
    assert quick.digest == full(token).digest


@pytest.mark.parametrize("name", sorted(variants()))
def test_the_quick_reading_never_accepts_what_the_full_parse_refuses(name):
    parse_grants([root()])  # the good values are remembered first
    token = signed(variants()[name])
    expected = full(token)
    quick = quick_hop(token)
    if isinstance(expected, tuple):  # refused: the quick path says nothing, and the parse refuses alike
        assert quick is None
        with pytest.raises(VerificationError) as e:
            parse_grants([token])
        assert (e.value.reason, e.value.detail) == expected
    else:
        assert quick is None or quick == expected
        assert parse_grants([token]).hops[0] == expected


def test_a_short_signature_after_good_tokens_is_still_malformed():
    for _ in range(3):
        parse_grants([root()])
    h, p, _ = root().split(".")
    token = f"{h}.{p}.{b64u_encode(b'x' * 63)}"
    assert quick_hop(token) is None
    with pytest.raises(VerificationError) as e:
        parse_grants([token])
    assert e.value.reason == "malformed" and "64 bytes" in e.value.detail


@pytest.mark.parametrize("name, reason", [("duplicate key", "malformed"), ("integer past 2^53", "malformed"),
                                          ("name never seen", "untrusted_root"), ("escaped name", None)])
def test_a_verifier_that_accepted_good_grants_judges_a_bad_one_as_ever(name, reason):
    v = verifier()
    for _ in range(3):
        v.verify_grant(root())
    token = signed(variants()[name])
    if reason is None:  # an escape spells the same name: the same grant, verified
        assert v.verify_grant(token).on_behalf_of == "user:alice"
        return
    with pytest.raises(VerificationError) as e:
        v.verify_grant(token)
    assert e.value.reason == reason
    expected = full(token)
    if isinstance(expected, tuple):
        assert (e.value.reason, e.value.detail) == expected


def test_a_wider_hop_after_covered_ones_is_still_an_escalation():
    v = verifier()
    parent = root("deploy.*:api/**")
    for _ in range(3):  # the same claims, remembered as covered
        assert v.verify_grant(child(parent, "deploy.staging:api/web")).agent == "agent:sub"
    with pytest.raises(VerificationError) as e:
        v.verify_grant(child(parent, "admin.*:api/web"))
    assert e.value.reason == "scope_escalation" and "hop 2 widens scope admin.*:api/web" in e.value.detail
    with pytest.raises(VerificationError) as e:  # a wider resource, under the same parent claim
        v.verify_grant(child(root("deploy.*:api/**"), "deploy.staging:**"))
    assert e.value.reason == "scope_escalation"


def test_a_bad_signature_after_good_ones_is_refused_and_so_is_a_repeat():
    v = verifier()
    good = root()
    v.verify_grant(good)
    h, p, s = good.split(".")
    forged = f"{h}.{p}.{b64u_encode(bytes(64))}"
    for _ in range(2):  # first judged, then remembered: the same verdict
        with pytest.raises(VerificationError) as e:
            v.verify_grant(forged)
        assert e.value.reason == "bad_signature"


class SwappableTrust(Trust):
    """A trust given in code whose revocation list its owner replaces while a verifier runs."""

    def __init__(self) -> None:
        self.inner = StaticTrust({"user:alice": crypto.public_key(ALICE)})
        self.held = Revocations()

    def principal(self, name):
        return self.inner.principal(name)

    def revocations(self):
        return self.held

    def authority(self, name):
        return self.inner.authority(name)


@pytest.mark.parametrize("kind", ["grant", "principal", "key"])
def test_a_revocation_made_after_a_grant_verified_is_seen_at_the_next_check(kind):
    trust = SwappableTrust()
    v = Verifier(trust, recorder=NO_AUDIT, clock=lambda: float(NOW + 5))
    token = child(root(), "deploy.staging:api/web")
    for _ in range(3):  # verified and remembered, with nothing revoked anywhere
        v.verify_grant(token)
    chain = parse_chain(token)
    ident = {"grant": chain.leaf.jti, "principal": "agent:sub", "key": chain.leaf.cnf_kid}[kind]
    trust.held = Revocations((Revocation(kind, ident, float(NOW)),))
    with pytest.raises(VerificationError) as e:
        v.verify_grant(token)
    assert e.value.reason == "revoked" and ident in e.value.detail
    trust.held = Revocations()  # (a revocation is permanent in a home; here the list is the owner's)
    assert v.verify_grant(token).agent == "agent:sub"


def test_revocations_given_beside_the_trust_are_looked_up_too():
    token = root()
    jti = parse_chain(token).leaf.jti
    revs = Revocations((Revocation("grant", jti, float(NOW)),))
    for v in (verifier(revocations=revs),
              Verifier(StaticTrust({"user:alice": crypto.public_key(ALICE)}), recorder=NO_AUDIT, revocations=[revs],
                       clock=lambda: float(NOW + 5))):
        with pytest.raises(VerificationError) as e:
            v.verify_grant(token)
        assert e.value.reason == "revoked" and "hop 1" in e.value.detail


# --- the one-pass grant pipeline against the declared one, over the catalogue of attacks ----------------


def _verdicts(world, tokens, monkeypatch, quick: bool, **kw) -> list:
    from agentctl.verify import verifier as verifier_module

    if not quick:
        monkeypatch.setattr(verifier_module, "quick_grant", lambda *a, **k: None)
    v = world.verifier()
    out = []
    for token in tokens:
        for _ in range(2):  # judged, then judged again from the memo
            try:
                out.append(v.verify_grant(token, **kw).verdict(kw.get("action"), kw.get("resource")))
            except VerificationError as e:
                out.append((e.reason, e.detail))
    monkeypatch.undo()
    return out


def _attacks():
    from helpers_tokens import ATTACKS

    return ATTACKS


_REQUESTS = ({}, {"action": "deploy.staging", "resource": "api/web"}, {"action": "admin.delete", "resource": "api/web"},
             {"audience": "svc:x"})


@pytest.mark.parametrize("attack", [None, *_attacks()], ids=lambda a: a.name if a else "honest chains")
def test_the_one_pass_path_gives_every_verdict_the_declared_pipeline_gives(home, monkeypatch, attack):
    from helpers_tokens import make_world

    world = make_world(home)
    tokens = [*world.chain(3), *world.chain(1)] if attack is None else [attack.build(world)]
    for request_kw in _REQUESTS:
        declared = _verdicts(world, tokens, monkeypatch, quick=False, **request_kw)
        quick = _verdicts(world, tokens, monkeypatch, quick=True, **request_kw)
        assert quick == declared, request_kw
        if attack is not None and not request_kw:
            assert declared[0][0] == attack.reason
