"""Fuzzing the verifier (SPEC, "Verification"; STYLE: a verifier returns the verified thing or raises
VerificationError). Whatever it is given (arbitrary text or bytes, valid tokens with bytes flipped,
segments swapped or cut, random JSON in a segment, claims replaced and signed again by the right key),
the library raises nothing but VerificationError with a known reason, and `agentctl verify` exits 0 or
1 without a traceback."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentctl.clock import FixedClock
from agentctl.errors import REASONS, VerificationError
from agentctl.verify import NO_AUDIT, StaticTrust, Verifier

from helpers_tokens import ACTION, ALICE, BOT, SUB, GRANT, b64, digest, grant_claims, header, jws, parts, prefix, public

NOW = 1_800_000_000
SEEDS = {ALICE: bytes([1]) * 32, BOT: bytes([2]) * 32, SUB: bytes([3]) * 32}


def _grant(signer: str, to: str, scope: str, parent: str | None = None, max_depth: int = 2, **kw) -> str:
    sub = parts(parent)[1]["sub"] if parent else signer
    claims = grant_claims(signer, sub, to, public(SEEDS[to]), scope=scope, iat=NOW - 60, exp=NOW + 3600,
                          max_depth=max_depth, parent=parent, **kw)
    token = jws(header(SEEDS[signer]), claims, SEEDS[signer])
    return f"{parent}~{token}" if parent else token


ROOT = _grant(ALICE, BOT, "pull_request.*:acme/* issues.read", aud=["api.a", "api.b"])
CHILD = _grant(BOT, SUB, "pull_request.create:acme/*", parent=ROOT, max_depth=1, aud="api.a")
ACTION_TOKEN = jws(header(SEEDS[SUB], typ=ACTION), {
    "iss": SUB, "sub": ALICE, "action": "pull_request.create", "resource": "acme/web", "iat": NOW - 10,
    "exp": NOW + 290, "jti": b64(bytes(16)), "aud": "api.a",
    "payload": {"sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}, "grant": digest(CHILD),
}, SEEDS[SUB])
ACTION_TOKEN = f"{CHILD}~{ACTION_TOKEN}"
VALID = (ROOT, CHILD)
SIGNER_OF = {ROOT: ALICE, CHILD: BOT}

VERIFIER = Verifier(StaticTrust({ALICE: public(SEEDS[ALICE])}), recorder=NO_AUDIT, clock=FixedClock(NOW))


def test_the_seeds_of_the_fuzzing_are_valid():
    VERIFIER.verify_grant(ROOT, audience="api.a")
    VERIFIER.verify_grant(CHILD, audience="api.a")
    VERIFIER.verify_action(ACTION_TOKEN, audience="api.a")


def outcome(token: object) -> str | None:
    """Verify ``token`` as a grant and as an action; only VerificationError with a known reason may
    come out. Returns the grant verdict's reason (None when valid)."""
    reason = None
    try:
        VERIFIER.verify_grant(token, audience="api.a")
    except VerificationError as e:
        assert e.reason in REASONS
        assert isinstance(e.detail, str) and e.detail and "\n" not in e.detail
        reason = e.reason
    try:
        VERIFIER.verify_action(token, audience="api.a")
    except VerificationError as e:
        assert e.reason in REASONS
    return reason


# --- strategies -----------------------------------------------------------------------------------------

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TRICKY_STRINGS = st.sampled_from([
    "", " ", "*", "**", ":", ".", "user:alice", "agent:bot", "agent:sub", "user:Alice", "agent:", "a" * 300,
    "pull_request.*:acme/*", "*:**", "a.*.b", "a:***", "EdDSA", "Ed25519", "none", GRANT, ACTION, "\x00",
    "\u202e", "é", "AAAA", b64(bytes(16)), b64(bytes(8)), ROOT, CHILD, ROOT + ".", "a" * 129,
])
TRICKY_INTS = st.sampled_from([0, -1, 1, NOW, NOW + 10**6, 2**31, 2**53, 2**63, 2**64, 253402300799, 253402300800, 10**20])
SCALARS = st.none() | st.booleans() | st.integers() | TRICKY_INTS | st.floats(allow_nan=True, allow_infinity=True) \
    | st.text(max_size=20) | TRICKY_STRINGS
JSON = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8) | TRICKY_STRINGS, c, max_size=4),
                    max_leaves=12)
CLAIM_NAMES = st.sampled_from(["iss", "sub", "act", "cnf", "scope", "iat", "nbf", "exp", "jti", "aud", "max_depth", "prf"]) \
    | st.text(max_size=6)
HEADER_NAMES = st.sampled_from(["alg", "typ", "kid", "crit", "cty", "jwk", "jku", "b64", "x5c"]) | st.text(max_size=6)


def json_bytes(value) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":")).encode("utf-8")
    except ValueError:
        return b"{}"


@st.composite
def flipped(draw) -> str:
    token = draw(st.sampled_from(VALID))
    chars = list(token)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chars) - 1))
        chars[i] = draw(st.sampled_from(B64_ALPHABET + ".=+/ \n") | st.characters())
    return "".join(chars)


@st.composite
def shuffled(draw) -> str:
    pool = [s for t in VALID + (ACTION_TOKEN,) for s in t.split(".")]
    n = draw(st.integers(0, 5))
    return ".".join(draw(st.sampled_from(pool)) for _ in range(n))


@st.composite
def truncated(draw) -> str:
    token = draw(st.sampled_from(VALID + (ACTION_TOKEN,)))
    i = draw(st.integers(0, len(token)))
    j = draw(st.integers(i, len(token)))
    return token[:i] + token[j:]


@st.composite
def random_segment(draw) -> str:
    """A header or payload replaced by random JSON, signed by the right key or not at all."""
    token = draw(st.sampled_from(VALID))
    segs = token.split(".")
    which = draw(st.integers(0, 2))
    segs[which] = b64(json_bytes(draw(JSON))) if draw(st.booleans()) else b64(draw(st.binary(max_size=80)))
    if which < 2 and draw(st.booleans()):
        from agentctl import crypto

        segs[2] = b64(crypto.sign(SEEDS[SIGNER_OF[token]], f"{segs[0]}.{segs[1]}".encode("ascii")))
    return ".".join(segs)


@st.composite
def resigned(draw) -> str:
    """Claims or header entries replaced with random JSON and signed again by the rightful key: this
    reaches past the signature check into the later steps. Sometimes the damaged root is then wrapped
    by an honest child."""
    target = draw(st.sampled_from(VALID))
    h, c, _ = parts(target)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            name = draw(CLAIM_NAMES)
            if draw(st.integers(0, 5)) == 0:
                c.pop(name, None)
            else:
                c[name] = draw(JSON)
        else:
            h[draw(HEADER_NAMES)] = draw(JSON)
    signer = SEEDS[SIGNER_OF[target]]
    token = prefix(target) + jws(json_bytes(h), json_bytes(c), signer)
    if target is ROOT and draw(st.booleans()):
        cc = parts(CHILD)[1]
        cc["prf"] = digest(token)
        token = f"{token}~{jws(header(SEEDS[BOT]), cc, SEEDS[BOT])}"
    return token


ANYTHING = st.text(max_size=200) | st.binary(max_size=200) | flipped() | shuffled() | truncated() | random_segment() | resigned()


# --- the library ----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.binary(max_size=300) | st.none() | st.integers() | st.lists(st.text(max_size=5), max_size=3))
@example("..")
@example("a.b.c")
@example("\x00.\x00.\x00")
@example(b"\xff\xfe.\x00.x")
@example("e30.e30.")
@example("W10.W10." + "A" * 86)
def test_arbitrary_input(value):
    outcome(value)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flipped() | shuffled() | truncated())
def test_mutated_tokens(token):
    assert outcome(token) is not None or token in VALID


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_segment())
def test_random_json_in_a_segment(token):
    outcome(token)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resigned())
def test_random_claims_signed_by_the_rightful_key(token):
    outcome(token)


TIMES = st.integers(-1, 2**64) | st.integers(NOW - 10**5, NOW + 10**5) | TRICKY_INTS \
    | st.sampled_from([253402300798, 253402300799, 253402300800, 253402300801, 2**52, 2**53 - 1])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), TIMES, TIMES, TIMES, st.sampled_from([None, NOW, 253402300799, 2**52]))
def test_any_times_signed_by_the_rightful_key(target, iat, nbf, exp, at):
    """Times anywhere, even past what a calendar can print, in a correctly signed grant."""
    h, c, _ = parts(target)
    c.update(iat=iat, nbf=nbf, exp=exp)
    token = jws(h, c, SEEDS[SIGNER_OF[target]])
    for when in (at, exp, nbf):
        try:
            VERIFIER.verify_grant(token, audience="api.a", at=when)
        except VerificationError as e:
            assert e.reason in REASONS
        except OverflowError:  # an absurd 'at' from the caller, not from the token
            assert when is at


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resigned(), st.sampled_from([NOW - 10**6, NOW, NOW + 3000, NOW + 10**6]))
def test_the_verdict_is_stable_from_the_cache_and_at_any_time(token, at):
    first = second = None
    for attempt in range(2):
        try:
            VERIFIER.verify_grant(token, audience="api.a", at=at)
            reason = None
        except VerificationError as e:
            reason = e.reason
        if attempt == 0:
            first = reason
        else:
            second = reason
    assert first == second


# --- the CLI --------------------------------------------------------------------------------------------


@pytest.fixture
def trusted_home(home, cli):
    r = cli("import", ALICE, b64(public(SEEDS[ALICE])))
    assert r.code == 0, r.stderr
    return home


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ANYTHING)
def test_the_cli_answers_0_or_1_and_never_a_traceback(trusted_home, cli, token):
    text = token.decode("latin-1") if isinstance(token, bytes) else token
    r = cli("--json", "verify", "-", "--audience", "api.a", "--at", "2027-01-15T08:00:00Z", input=text)
    assert r.code in (0, 1), (r.code, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    doc = r.json()
    assert doc["ok"] is (r.code == 0)
    if r.code == 1:
        assert doc["reason"] in REASONS
        assert r.stderr.startswith(f"agentctl: denied: {doc['reason']}: ") or f"agentctl: denied: {doc['reason']}: " in r.stderr


@pytest.mark.parametrize("text", ["", "\n", "-", "not a token", "a.b", "a.b.c.d", "é.é.é", ROOT.replace(".", "..", 1), "x" * 100_000])
def test_the_cli_on_junk(trusted_home, cli, text):
    r = cli("verify", "-", input=text)
    assert r.code in (1, 2) and "Traceback" not in r.stderr
    if r.code == 1:
        assert "agentctl: denied: malformed:" in r.stderr
