"""The lean verification path: what is computed once (headers, thumbprints, names, holder keys, scope
hashes, coverage) gives the same answers as computing it every time, and no cache lets an attacker's
token through that the uncached path would refuse."""

from __future__ import annotations

import json
import os
import socket

import pytest

from agentctl import crypto, jws
from agentctl.encoding import EncodingError, b64u_encode, loads_strict, thumbprint
from agentctl.errors import VerificationError
from agentctl.models import Key
from agentctl.scopes import Scope, parse_scopes
from agentctl.scope_cover import uncovered
from helpers_tokens import ALICE, BOT, jwk_of, make_world, resign

# --- strict JSON: the C-integer fast path refuses what the checking path refuses ----------------------


@pytest.mark.parametrize("text", [
    '{"a":1,"a":2}',  # duplicate key
    '{"a":{"b":1,"b":1}}',  # duplicate inside a nested object
    '{"a":9007199254740992}',  # 2^53: outside I-JSON
    '{"a":-9007199254740992}',
    '{"a":12345678901234567890123}',
    '{"a":1e999}',  # overflows to infinity
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":1}x',  # trailing data
    '{"a":1',  # truncated
    '{"a":"\\ud800"}',  # a lone surrogate
])
def test_strict_json_refuses_in_every_path(text):
    with pytest.raises(EncodingError):
        loads_strict(text)
    with pytest.raises(EncodingError):
        loads_strict(text.encode("utf-8"))


@pytest.mark.parametrize("text, value", [
    ('{"a":9007199254740991}', {"a": 9007199254740991}),  # 2^53-1: the largest I-JSON integer
    ('{"a":-9007199254740991}', {"a": -9007199254740991}),
    ('{"jti":"1234567890123456789"}', {"jti": "1234567890123456789"}),  # 16+ digits in a string: the checking path
    (' {"a":[1,2.5,{"b":null}]} ', {"a": [1, 2.5, {"b": None}]}),  # whitespace around: the checking path
    ('{"a":"\\ud83d\\ude00"}', {"a": "\U0001F600"}),  # a surrogate pair is one character
])
def test_strict_json_accepts_the_same_in_every_path(text, value):
    assert loads_strict(text) == value
    assert loads_strict(text.encode("utf-8")) == value


# --- the header cache remembers only headers that passed ----------------------------------------------


def _token(head: dict, claims: dict, seed: bytes) -> str:
    h = b64u_encode(json.dumps(head, separators=(",", ":")).encode())
    p = b64u_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{h}.{p}.{b64u_encode(crypto.sign(seed, f'{h}.{p}'.encode()))}"


def test_a_refused_header_is_refused_every_time():
    seed = crypto.new_seed()
    bad = _token({"alg": "none", "typ": jws.GRANT, "kid": thumbprint(crypto.public_key(seed))}, {"iss": ALICE}, seed)
    for _ in range(3):
        with pytest.raises(VerificationError) as e:
            jws.decode(bad, jws.GRANT)
        assert e.value.reason == "unsupported"


def test_a_cached_header_does_not_excuse_the_payload_or_the_type():
    seed = crypto.new_seed()
    head = {"alg": "EdDSA", "typ": jws.GRANT, "kid": thumbprint(crypto.public_key(seed))}
    good = _token(head, {"iss": ALICE}, seed)
    assert jws.decode(good, jws.GRANT).claims == {"iss": ALICE}  # the header is now remembered
    h, _, sig = good.split(".")
    payload = b64u_encode(b'{"iss":1,"iss":2}')
    dup = f"{h}.{payload}.{sig}"
    with pytest.raises(VerificationError) as e:
        jws.decode(dup, jws.GRANT)
    assert e.value.reason == "malformed" and "duplicate" in e.value.detail
    with pytest.raises(VerificationError) as e:
        jws.decode(good, jws.ACTION)  # the same remembered header, asked as another type
    assert e.value.reason == "malformed"
    assert jws.peek(good, (jws.GRANT,)) == (head, jws.GRANT)


# --- thumbprints once per key -----------------------------------------------------------------------


def test_thumbprint_is_the_rfc7638_value_for_bytes_and_bytearray():
    import hashlib

    public = crypto.public_key(crypto.new_seed())
    members = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % b64u_encode(public)
    expected = b64u_encode(hashlib.sha256(members.encode()).digest())
    assert thumbprint(public) == thumbprint(bytearray(public)) == thumbprint(public) == expected
    key = Key(public, 0.0)
    assert key.kid == expected and key.kid == expected  # computed once, the same after
    assert key == Key(public, 0.0)  # the remembered kid is no part of equality


# --- names and holder keys checked once: a bad one after a good one is still refused -------------------


@pytest.fixture()
def world(tmp_path):
    return make_world(tmp_path / "home")


def test_a_non_text_issuer_after_good_grants_is_malformed_not_a_crash(world):
    assert world.library_reason(world.grant(ALICE, BOT)) is None  # the names are now remembered
    for value in ({"x": 1}, [ALICE], 7):
        token = resign(world.grant(ALICE, BOT), world.seed(ALICE), claims={"iss": value})
        assert world.library_reason(token) == "malformed"


@pytest.mark.parametrize("change, reason", [
    ({"kty": "EC"}, "malformed"),
    ({"crv": "X25519"}, "malformed"),
    ({"d": "AAAA"}, "malformed"),  # a private member beside a remembered x
])
def test_a_remembered_holder_key_does_not_excuse_its_jwk(world, change, reason):
    assert world.library_reason(world.grant(ALICE, BOT)) is None  # BOT's JWK is now remembered
    jwk = {**jwk_of(world.seed(BOT)), **change}
    token = resign(world.grant(ALICE, BOT), world.seed(ALICE), claims={"cnf": {"jwk": jwk}})
    assert world.library_reason(token) == reason


def test_the_verifier_memo_gives_the_same_verdict_after_eviction(world):
    from agentctl.verify import verifier as vmod

    v = world.verifier()
    first = world.grant(ALICE, BOT)
    tampered = first[:-3] + ("AAA" if not first.endswith("AAA") else "BBB")
    assert v.verify_grant(first).agent == BOT
    with pytest.raises(VerificationError) as e1:
        v.verify_grant(tampered)
    for _ in range(vmod._CACHE_SIZE + 5):  # the first two are evicted
        v.verify_grant(world.grant(ALICE, BOT))
    assert len(v._cache) <= vmod._CACHE_SIZE
    assert v.verify_grant(first).agent == BOT
    with pytest.raises(VerificationError) as e2:
        v.verify_grant(tampered)
    assert (e2.value.reason, e2.value.detail) == (e1.value.reason, e1.value.detail)


# --- scopes: hashed once, covered the same from text or parsed -----------------------------------------


def test_a_scope_hashes_as_its_fields_and_covers_the_same_from_text_or_parsed():
    a, b = Scope.parse("deploy.*:api/**"), Scope("deploy.*", "api/**")
    assert a == b and hash(a) == hash(b) == hash(("deploy.*", "api/**"))
    assert len({a, b}) == 1
    child, parent = "deploy.staging:api/* deploy.prod:web/x", "deploy.*:api/**"
    from_text = uncovered(child, parent)
    from_parsed = uncovered(parse_scopes(child), parse_scopes(parent))
    assert from_text == from_parsed and from_parsed is not None and str(from_parsed[0]) == "deploy.prod:web/x"
    dup = (Scope.parse("a.b"), Scope.parse("a.b"))  # a tuple that is not what parsing gives: parsed again
    assert uncovered(dup, "a.*") is None and uncovered(dup, "c.*") is not None


# --- the cold path --------------------------------------------------------------------------------------


def test_host_name_is_the_socket_host_name():
    from agentctl.audit.log import host_name

    raw = socket.gethostname().lower().split(".")[0]
    expected = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in raw).strip("-_") or "localhost"
    assert host_name() == expected[:60]


def test_a_kept_open_recorder_opens_the_log_once_and_closes_after_recording(world, monkeypatch):
    from agentctl.audit.log import AuditLog
    from agentctl.events import Event
    from agentctl.recording import HomeRecorder

    HomeRecorder(world.ctx).record(Event("verify", "allow", principal=BOT))  # the log exists now
    opened = []
    real = AuditLog.open.__func__

    def counting(cls, home):
        opened.append(home)
        return real(cls, home)

    monkeypatch.setattr(AuditLog, "open", classmethod(counting))
    rec = HomeRecorder(world.ctx, keep_open=True)
    assert rec.log is not None  # opened now: a broken log fails before anything is decided
    rec.record(Event("verify", "deny", principal=BOT, reason="expired"))
    assert rec.log is None and len(opened) == 1
    rec2 = HomeRecorder(world.ctx)  # the default: opened, closed, opened again to record
    rec2.record(Event("verify", "allow", principal=BOT))
    assert len(opened) == 3
    log = AuditLog.open_existing(world.home / "audit.db")
    try:
        assert [e["outcome"] for e in log.query()][:3] == ["allow", "deny", "allow"]
    finally:
        log.close()


def test_verify_imports_nothing_it_does_not_use(world, tmp_path):
    import subprocess
    import sys

    grant = tmp_path / "grant.jwt"
    grant.write_text(world.grant(ALICE, BOT))
    code = ("import sys; from agentctl._cli.entry import main; rc = main(sys.argv[1:]); "
            "print(' '.join(sorted(sys.modules)), file=sys.stderr); sys.exit(rc)")
    env = {**os.environ, "AGENTCTL_HOME": str(world.home)}
    r = subprocess.run([sys.executable, "-c", code, "verify", str(grant), "--action", "pull_request.create",
                        "--resource", "acme/web"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stderr.split())
    for module in ("typer", "rich", "socket", "secrets", "random", "agentctl.policy", "agentctl.scope_cover", "click",
                   "dataclasses", "inspect", "ast", "dis"):  # the values are built by agentctl.frozen
        assert module not in loaded, module
    assert "agentctl.frozen" in loaded
