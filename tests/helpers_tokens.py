"""Forging agentctl tokens for tests: any header, any claims, any key, any encoding.

The builders here are written from SPEC.md ("Token format"), not from agentctl's own minting code, so
a test that verifies a forged token does not lean on the code it checks. Signatures are made with
:func:`agentctl.crypto.sign` and seeds taken from the keystore (``signer_for(ctx, name).seed``).

:class:`World` is a home with a cast of principals and their seeds; :data:`ATTACKS` is a catalogue of
forged or damaged grants, each with the reason ``verify`` must give. ``test_grant_attacks`` checks each
against the CLI and the library, ``test_inspect`` checks that ``inspect`` agrees with ``verify``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from agentctl import crypto
from agentctl.clock import FixedClock, rfc3339
from agentctl.context import Context
from agentctl.encoding import b64u_encode, thumbprint
from agentctl.home import Home

GRANT = "agentctl-grant+jwt"
ACTION = "agentctl-action+jwt"
ROTATION = "agentctl-rotation+jwt"
REVOCATIONS = "agentctl-revocations+jwt"

ALICE, BOT, SUB, THIRD, OTHER = "user:alice", "agent:bot", "agent:sub", "agent:third", "agent:other"
CAST = (ALICE, BOT, SUB, THIRD, OTHER)
SCOPE = "pull_request.*:acme/*"


# --- encoding ---------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return b64u_encode(data)


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def segment(part: dict | bytes | str) -> str:
    """A JWS segment: a dict is JSON-encoded, bytes are taken as the JSON text, a str is used as is."""
    if isinstance(part, dict):
        return b64(dumps(part))
    if isinstance(part, bytes):
        return b64(part)
    return part


def public(seed: bytes) -> bytes:
    return crypto.public_key(seed)


def kid_of(seed: bytes) -> str:
    return thumbprint(crypto.public_key(seed))


def jwk_of(seed_or_public: bytes, *, is_seed: bool = True) -> dict:
    pub = crypto.public_key(seed_or_public) if is_seed else seed_or_public
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}


def header(seed: bytes | None = None, typ: str | None = GRANT, alg: str = "EdDSA", **extra) -> dict:
    h: dict = {"alg": alg}
    if typ is not None:
        h["typ"] = typ
    if seed is not None:
        h["kid"] = kid_of(seed)
    h.update(extra)
    return h


def jws(head: dict | bytes | str, payload: dict | bytes | str, seed: bytes | None, *, signature: bytes | None = None) -> str:
    """A compact JWS. With ``seed`` the signing input is signed with Ed25519; else ``signature`` is used."""
    h, p = segment(head), segment(payload)
    if signature is None:
        signature = crypto.sign(seed, f"{h}.{p}".encode("ascii")) if seed is not None else b""
    return f"{h}.{p}.{b64(signature)}"


def last(presentation: str) -> str:
    """The last token of a presentation (the token itself when there is one)."""
    return presentation.rpartition("~")[2]


def prefix(presentation: str) -> str:
    """What stands before the last token of a presentation, with its '~' ("" when nothing)."""
    head, sep, _ = presentation.rpartition("~")
    return head + sep


def digest(token: str) -> str:
    """How a grant's ``prf`` or an action's ``grant`` names a token: base64url SHA-256 of its text."""
    return b64(hashlib.sha256(last(token).encode("ascii")).digest())


def parts(token: str) -> tuple[dict, dict, str]:
    """Header and claims (parsed leniently, for tests) and the signature segment of the last token."""
    import base64

    def load(s: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))

    h, p, s = last(token).split(".")
    return load(h), load(p), s


def resign(token: str, seed: bytes, *, head: dict | None = None, claims: dict | None = None, drop: tuple = (), drop_header: tuple = ()) -> str:
    """``token`` with header entries and claims changed (``None`` values deleted), signed again by ``seed``
    (of a presentation: its last token, the tokens before it kept)."""
    h, c, _ = parts(token)
    h = {k: v for k, v in {**h, **(head or {})}.items() if v is not None and k not in drop_header}
    c = {k: v for k, v in {**c, **(claims or {})}.items() if v is not None and k not in drop}
    return prefix(token) + jws(h, c, seed)


def tamper(token: str, **claims) -> str:
    """``token`` with claims changed but the original signature kept (of a presentation: its last token)."""
    h, c, s = last(token).split(".")
    _, old, _ = parts(token)
    return f"{prefix(token)}{h}.{segment({**old, **claims})}.{s}"


def hs256(token_header: dict, claims: dict, key: bytes) -> str:
    h, p = segment(token_header), segment(claims)
    mac = hmac.new(key, f"{h}.{p}".encode("ascii"), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(mac)}"


def new_jti() -> str:
    return b64(secrets.token_bytes(16))


def grant_claims(
    iss: str,
    sub: str,
    delegate: str,
    delegate_public: bytes,
    *,
    scope: str = SCOPE,
    iat: int,
    nbf: int | None = None,
    exp: int,
    jti: str | None = None,
    max_depth: int = 0,
    aud: str | list | None = None,
    parent: str | None = None,
    act: dict | None = None,
) -> dict:
    """Grant claims as SPEC lays them out; ``act`` nests the parent's ``act`` under the delegate."""
    if act is None:
        act = {"sub": delegate}
        if parent is not None:
            act["act"] = parts(parent)[1]["act"]
    c: dict = {
        "iss": iss,
        "sub": sub,
        "act": act,
        "cnf": {"jwk": jwk_of(delegate_public, is_seed=False)},
        "scope": scope,
        "iat": iat,
        "nbf": iat if nbf is None else nbf,
        "exp": exp,
        "jti": jti or new_jti(),
        "max_depth": max_depth,
    }
    if aud is not None:
        c["aud"] = aud
    if parent is not None:
        c["prf"] = digest(parent)
    return c


# --- a world: a home with principals and their seeds -------------------------------------------------


@dataclass
class World:
    home: Path
    now: int
    ctx: Context
    seeds: dict[str, bytes] = field(default_factory=dict)

    def seed(self, name: str) -> bytes:
        return self.seeds[name]

    def public(self, name: str) -> bytes:
        return crypto.public_key(self.seeds[name])

    def kid(self, name: str) -> str:
        return kid_of(self.seeds[name])

    def at(self, offset: int = 0) -> str:
        """RFC 3339 text for ``now + offset``, for ``verify --at``."""
        return rfc3339(self.now + offset)

    def grant(
        self,
        signer: str,
        to: str,
        scope: str = SCOPE,
        *,
        parent: str | None = None,
        iss: str | None = None,
        sub: str | None = None,
        iat: int | None = None,
        nbf: int | None = None,
        exp: int | None = None,
        ttl: int = 3600,
        max_depth: int | None = None,
        aud=None,
        jti: str | None = None,
        act: dict | None = None,
        cnf_public: bytes | None = None,
        seed: bytes | None = None,
        head: dict | None = None,
    ) -> str:
        """A grant from ``signer`` to ``to``, well formed unless told otherwise; under ``parent`` (a
        presentation), ``sub`` defaults to the parent's and the parent's ``exp`` caps the default ``exp``,
        and the result is the parent's presentation extended by the new grant."""
        iat = self.now - 60 if iat is None else iat
        if parent is not None:
            pc = parts(parent)[1]
            sub = pc["sub"] if sub is None else sub
            exp = min(iat + ttl, pc["exp"]) if exp is None else exp
            max_depth = max(pc["max_depth"] - 1, 0) if max_depth is None else max_depth
        claims = grant_claims(
            iss or signer, sub or signer, to, cnf_public or self.public(to), scope=scope, iat=iat, nbf=nbf,
            exp=iat + ttl if exp is None else exp, jti=jti, max_depth=0 if max_depth is None else max_depth,
            aud=aud, parent=parent, act=act,
        )
        key = seed or self.seed(signer)
        token = jws(header(key, **(head or {})), claims, key)
        return token if parent is None else f"{parent}~{token}"

    def chain(self, depth: int = 3, scope: str = SCOPE, **kw) -> list[str]:
        """A valid chain alice > bot > sub > third, cut to ``depth`` hops; the presentation of every
        prefix of it, root first (the last is the whole chain)."""
        holders = [ALICE, BOT, SUB, THIRD]
        out = [self.grant(ALICE, BOT, scope, max_depth=depth - 1, **kw)]
        for i in range(1, depth):
            out.append(self.grant(holders[i], holders[i + 1], scope, parent=out[-1]))
        return out

    def verifier(self, **kw):
        from agentctl.store import Store
        from agentctl.verify import NO_AUDIT, StoreTrust, Verifier

        return Verifier(StoreTrust(Store(Home(self.home))), recorder=NO_AUDIT, clock=FixedClock(self.now), **kw)

    def library_reason(self, token: object, **kw) -> str | None:
        """None when the library verifies ``token`` as a grant, else the reason it gives."""
        from agentctl.errors import VerificationError

        try:
            self.verifier().verify_grant(token, **kw)
        except VerificationError as e:
            return e.reason
        return None

    def revoke(self, kind: str, ident: str) -> None:
        from agentctl import identity

        {"principal": identity.revoke_principal, "key": identity.revoke_key, "grant": identity.revoke_grant}[kind](self.ctx, ident)


def make_world(home: Path, now: int | None = None) -> World:
    """A home (the test's AGENTCTL_HOME) with user:alice and four agents, all local, keys made an
    hour before ``now`` (default: the real time, so CLI commands without --at agree)."""
    from agentctl.identity import keygen, signer_for

    now = int(time.time()) if now is None else now
    ctx = Context(Home(home, os.environ), clock=FixedClock(now - 3600), env=os.environ)
    world = World(home, now, ctx)
    for name in CAST:
        keygen(ctx, name)
        world.seeds[name] = signer_for(ctx, name).seed
    ctx.clock = FixedClock(now)
    return world


# --- the catalogue of attacks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    reason: str
    build: Callable[[World], str]


OUTSIDER = bytes(range(32))  # a key no home trusts
SMALL_ORDER = (  # encodings of points of small order (the identity first); none is a usable key
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
)


def _root(w: World, **kw) -> str:
    return w.grant(ALICE, BOT, **kw)


def _with_header(w: World, **head) -> str:
    c = parts(_root(w))[1]
    return jws(header(w.seed(ALICE), **head), c, w.seed(ALICE))


def _alg_none(w: World) -> str:
    c = parts(_root(w))[1]
    return jws({"alg": "none", "typ": GRANT, "kid": w.kid(ALICE)}, c, None)


def _hs256(w: World) -> str:
    c = parts(_root(w))[1]
    return hs256({"alg": "HS256", "typ": GRANT, "kid": w.kid(ALICE)}, c, w.public(ALICE))


def _hs256_jwk_text(w: World) -> str:  # the classic: HMAC keyed with the public key as the verifier stores it
    c = parts(_root(w))[1]
    return hs256({"alg": "HS256", "typ": GRANT, "kid": w.kid(ALICE)}, c, dumps(jwk_of(w.seed(ALICE))))


def _no_typ(w: World) -> str:
    return resign(_root(w), w.seed(ALICE), drop_header=("typ",))


def _typ(value) -> Callable[[World], str]:
    return lambda w: resign(_root(w), w.seed(ALICE), head={"typ": value})


def _rotation_token(w: World) -> str:
    from agentctl.encoding import jwk

    claims = {"iss": ALICE, "sub": ALICE, "iat": w.now, "jti": new_jti(), "old_kid": w.kid(ALICE),
              "new_kid": thumbprint(crypto.public_key(OUTSIDER)), "new_jwk": jwk(crypto.public_key(OUTSIDER))}
    return jws(header(w.seed(ALICE), typ=ROTATION), claims, w.seed(ALICE))


def _revocations_token(w: World) -> str:
    return jws(header(w.seed(ALICE), typ=REVOCATIONS), parts(_root(w))[1], w.seed(ALICE))


def _action_token(w: World, grant: str | None = None) -> str:
    claims = {"iss": BOT, "sub": ALICE, "action": "pull_request.create", "resource": "acme/web", "iat": w.now - 60,
              "exp": w.now + 240, "jti": new_jti(), "payload": {"sha256": hashlib.sha256(b"").hexdigest()}}
    if grant is not None:
        claims["grant"] = grant
    return jws(header(w.seed(BOT), typ=ACTION), claims, w.seed(BOT))


def _action_as_parent(w: World) -> str:
    """A child grant whose ``prf`` is an action token (signed by the holder, so only the type is wrong)."""
    root = _root(w, max_depth=1)
    action = _action_token(w, digest(root))
    c = parts(w.grant(BOT, SUB, parent=root))[1]
    c["prf"] = digest(action)
    return f"{root}~{action}~{jws(header(w.seed(BOT)), c, w.seed(BOT))}"


def _grant_typed_as_action(w: World) -> str:
    return resign(_root(w), w.seed(ALICE), head={"typ": ACTION})


def _raw_json(head: bytes | None = None, payload: bytes | None = None) -> Callable[[World], str]:
    def build(w: World) -> str:
        h, c, _ = parts(_root(w))
        return jws(head if head is not None else h, payload if payload is not None else c, w.seed(ALICE))

    return build


def _dup_header(w: World) -> str:
    h = dumps(header(w.seed(ALICE)))
    return _raw_json(head=h[:-1] + b',"alg":"EdDSA"}')(w)


def _dup_header_alg_none(w: World) -> str:
    h = dumps(header(w.seed(ALICE)))
    return _raw_json(head=h[:-1] + b',"alg":"none"}')(w)


def _dup_payload(w: World) -> str:
    c = dumps(parts(_root(w))[1])
    return _raw_json(payload=c[:-1] + b',"scope":"*"}')(w)


def _dup_nested(w: World) -> str:  # a duplicate inside cnf.jwk: two keys, which one binds?
    c = parts(_root(w))[1]
    text = dumps(c).replace(b'"crv":"Ed25519"', b'"crv":"Ed25519","x":"' + jwk_of(OUTSIDER)["x"].encode() + b'"')
    return _raw_json(payload=text)(w)


def _padded(which: int) -> Callable[[World], str]:
    """A segment with '=' padding (to a multiple of 4, or needless when it already is one)."""

    def build(w: World) -> str:
        segs = _root(w).split(".")
        segs[which] += "=" * (-len(segs[which]) % 4) or "=="
        if which < 2:  # sign again, so only the padding is wrong
            segs[2] = b64(crypto.sign(w.seed(ALICE), f"{segs[0]}.{segs[1]}".encode("ascii")))
        return ".".join(segs)

    return build


def _noncanonical(which: int) -> Callable[[World], str]:
    """A segment whose last character carries a non-zero unused bit: it decodes to the same bytes."""

    def build(w: World) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        for attempt in range(8):  # an unknown header member of varying length moves the header's length
            segs = _root(w, head={"note": "x" * attempt}).split(".")
            s = segs[which]
            if len(s) % 4 not in (2, 3):
                continue
            segs[which] = s[:-1] + alphabet[alphabet.index(s[-1]) | 1]  # the lowest bit is an unused one
            if which < 2:
                segs[2] = b64(crypto.sign(w.seed(ALICE), f"{segs[0]}.{segs[1]}".encode("ascii")))
            return ".".join(segs)
        raise AssertionError("no segment of a suitable length")

    return build


def _std_alphabet(w: World) -> str:
    for _ in range(200):
        token = _root(w, jti=new_jti())
        if "-" in token or "_" in token:
            return token.replace("-", "+").replace("_", "/")
    raise AssertionError("no '-' or '_' in 200 tokens")


def huge_token(size: int = 10 * 1024 * 1024) -> str:
    h = segment(header(OUTSIDER))
    return f"{h}.{'A' * size}.{'A' * 86}"


def _huge(w: World) -> str:
    return huge_token()


def _act_depth(n: int) -> Callable[[World], str]:
    def build(w: World) -> str:
        act: dict = {"sub": BOT}
        for i in range(n - 1):
            act = {"sub": f"agent:a{i}", "act": act}
        return w.grant(ALICE, BOT, act=act)

    return build


def prf_chain(w: World, hops: int) -> str:
    """A chain of ``hops`` grants passed back and forth between bot and sub, each signed by its
    parent's holder, every other check in order (the depth alone is wrong)."""
    token = w.grant(ALICE, BOT, max_depth=hops + 10, ttl=7200)
    holders = [BOT, SUB]
    for i in range(1, hops):
        token = w.grant(holders[(i - 1) % 2], holders[i % 2], parent=token, max_depth=hops + 10 - i)
    return token


def _swapped_prf_same_delegate(w: World) -> str:
    """bot holds two grants; the child of one has its prf replaced by the other (not re-signed)."""
    g1 = _root(w, max_depth=1, scope="pull_request.create:acme/web")
    g2 = _root(w, max_depth=1, scope="pull_request.*:acme/*")
    child = w.grant(BOT, SUB, "pull_request.create:acme/web", parent=g1)
    return tamper(f"{g2}~{last(child)}", prf=digest(g2))  # the digest names g2 now, the signature does not


def _swapped_prf_other_delegate(w: World) -> str:
    """A child's prf replaced by a grant to someone else: the child is not signed by that grant's holder."""
    g1 = _root(w, max_depth=1)
    g2 = w.grant(ALICE, OTHER, max_depth=1)
    child = w.grant(BOT, SUB, parent=g1)
    return f"{g2}~{last(child)}"  # the child's prf names g1, which is not there


def _signed_by_stranger(w: World) -> str:
    root = _root(w, max_depth=1)
    return w.grant(OTHER, SUB, parent=root, iss=BOT)


def _signed_by_stranger_claiming_holder_kid(w: World) -> str:
    root = _root(w, max_depth=1)
    return w.grant(BOT, SUB, parent=root, seed=w.seed(OTHER), head={"kid": w.kid(BOT)})


def _widened(w: World) -> str:
    root = _root(w, max_depth=1, scope="pull_request.create:acme/web")
    return w.grant(BOT, SUB, "pull_request.*:acme/*", parent=root)


def _widened_resource(w: World) -> str:
    root = _root(w, max_depth=1, scope="pull_request.*:acme/*")
    return w.grant(BOT, SUB, "pull_request.create:acme/**", parent=root)


def _outlives(w: World) -> str:
    root = _root(w, max_depth=1, ttl=1800)
    return w.grant(BOT, SUB, parent=root, exp=parts(root)[1]["exp"] + 60)


def _sub_changed(w: World) -> str:
    root = _root(w, max_depth=1)
    return w.grant(BOT, SUB, parent=root, sub=BOT)


def _iss_not_holder(w: World) -> str:  # signed with the holder's key, but claims another issuer
    root = _root(w, max_depth=1)
    return w.grant(BOT, SUB, parent=root, iss=OTHER)


def _act_not_extended(w: World) -> str:
    root = _root(w, max_depth=1)
    return w.grant(BOT, SUB, parent=root, act={"sub": SUB, "act": {"sub": OTHER}})


def _depth_exceeded(w: World) -> str:
    root = _root(w, max_depth=0)
    return w.grant(BOT, SUB, parent=root, max_depth=0)


def _depth_exceeded_below(w: World) -> str:  # the child claims more depth than it was given
    root = _root(w, max_depth=1)
    child = w.grant(BOT, SUB, parent=root, max_depth=5)
    return w.grant(SUB, THIRD, parent=child, max_depth=0)


def _expired_parent_fresh_child(w: World) -> str:
    root = _root(w, max_depth=1, iat=w.now - 7200, ttl=3600)  # expired an hour ago
    return w.grant(BOT, SUB, parent=root, iat=w.now - 60, exp=w.now + 600)


def _expired(w: World) -> str:
    return _root(w, iat=w.now - 7200, ttl=3600)


def _not_yet_valid(w: World) -> str:
    return _root(w, iat=w.now, nbf=w.now + 600, ttl=3600)


def _audience(w: World) -> str:
    return _root(w, aud="api.billing")


def _audience_widened(w: World) -> str:
    root = _root(w, max_depth=1, aud="api.billing")
    return w.grant(BOT, SUB, parent=root)


def _revoked(kind: str, which: Callable[[World, list[str]], str], depth: int = 3) -> Callable[[World], str]:
    def build(w: World) -> str:
        tokens = w.chain(depth)
        w.revoke(kind, which(w, tokens))
        return tokens[-1]

    return build


def _rotated_after(w: World) -> str:
    from agentctl.identity import rotate

    old = w.seed(ALICE)
    w.ctx.clock = FixedClock(w.now - 600)
    rotate(w.ctx, ALICE)
    w.ctx.clock = FixedClock(w.now)
    return w.grant(ALICE, BOT, seed=old, iat=w.now - 300)


def _untrusted(w: World) -> str:
    return w.grant("user:mallory", BOT, seed=OUTSIDER)


def _foreign_kid(w: World) -> str:
    return w.grant(ALICE, BOT, seed=OUTSIDER)


def _small_order_cnf(hex_point: str) -> Callable[[World], str]:
    return lambda w: _root(w, cnf_public=bytes.fromhex(hex_point))


def _root_speaks_for_other(w: World) -> str:
    return w.grant(ALICE, BOT, sub=OTHER)


def _tampered(w: World) -> str:
    return tamper(_root(w), scope="*")


def _short_jti(w: World) -> str:
    return _root(w, jti=b64(secrets.token_bytes(8)))


def _long_jti(w: World) -> str:  # a jti no `revoke --grant` could name
    return _root(w, jti=b64(secrets.token_bytes(120)))


def _absurd_exp(w: World) -> str:
    return _root(w, exp=2**52)


ATTACKS: tuple[Attack, ...] = (
    Attack("alg none", "unsupported", _alg_none),
    Attack("alg HS256 keyed with the public key", "unsupported", _hs256),
    Attack("alg HS256 keyed with the public JWK", "unsupported", _hs256_jwk_text),
    Attack("alg RS256", "unsupported", lambda w: _with_header(w, alg="RS256")),
    Attack("alg eddsa (wrong case)", "unsupported", lambda w: _with_header(w, alg="eddsa")),
    Attack("no alg", "unsupported", lambda w: resign(_root(w), w.seed(ALICE), drop_header=("alg",))),
    Attack("missing typ", "malformed", _no_typ),
    Attack("typ JWT", "malformed", _typ("JWT")),
    Attack("typ of another product", "malformed", _typ("at+jwt")),
    Attack("typ not a string", "malformed", _typ(["agentctl-grant+jwt"])),
    Attack("rotation token as a grant", "malformed", _rotation_token),
    Attack("revocation list header on grant claims", "malformed", _revocations_token),
    Attack("action token as a parent grant", "malformed", _action_as_parent),
    Attack("grant claims typed as an action", "malformed", _grant_typed_as_action),
    Attack("unknown crit", "unsupported", lambda w: _with_header(w, crit=["exp"], exp=1)),
    Attack("empty crit", "unsupported", lambda w: _with_header(w, crit=[])),
    Attack("jwk in header", "unsupported", lambda w: _with_header(w, jwk=jwk_of(OUTSIDER))),
    Attack("jku in header", "unsupported", lambda w: _with_header(w, jku="https://attacker.example/jwks.json")),
    Attack("x5u in header", "unsupported", lambda w: _with_header(w, x5u="https://attacker.example/cert.pem")),
    Attack("x5c in header", "unsupported", lambda w: _with_header(w, x5c=["MIIB"])),
    Attack("duplicate key in header", "malformed", _dup_header),
    Attack("duplicate alg none in header", "malformed", _dup_header_alg_none),
    Attack("duplicate key in payload", "malformed", _dup_payload),
    Attack("duplicate key in cnf.jwk", "malformed", _dup_nested),
    Attack("padded header", "malformed", _padded(0)),
    Attack("padded payload", "malformed", _padded(1)),
    Attack("padded signature", "malformed", _padded(2)),
    Attack("non-canonical header", "malformed", _noncanonical(0)),
    Attack("non-canonical payload", "malformed", _noncanonical(1)),
    Attack("non-canonical signature", "malformed", _noncanonical(2)),
    Attack("standard base64 alphabet", "malformed", _std_alphabet),
    Attack("10 MB token", "malformed", _huge),
    Attack("act nested 50 deep", "chain_broken", _act_depth(50)),
    Attack("act nested 9 deep", "chain_broken", _act_depth(9)),
    Attack("prf chain of 9 hops", "chain_broken", lambda w: prf_chain(w, 9)),
    Attack("prf chain of 12 hops", "chain_broken", lambda w: prf_chain(w, 12)),
    Attack("swapped prf, same delegate", "bad_signature", _swapped_prf_same_delegate),
    Attack("parent swapped for another grant", "chain_broken", _swapped_prf_other_delegate),
    Attack("child signed by a stranger", "chain_broken", _signed_by_stranger),
    Attack("child signed by a stranger with the holder's kid", "bad_signature", _signed_by_stranger_claiming_holder_kid),
    Attack("child widens the action", "scope_escalation", _widened),
    Attack("child widens the resource", "scope_escalation", _widened_resource),
    Attack("child drops the parent's audience", "scope_escalation", _audience_widened),
    Attack("child outlives its parent", "chain_broken", _outlives),
    Attack("sub changed mid-chain", "chain_broken", _sub_changed),
    Attack("child issued in another's name", "chain_broken", _iss_not_holder),
    Attack("child's act does not extend its parent's", "chain_broken", _act_not_extended),
    Attack("re-delegation of a max_depth 0 grant", "chain_broken", _depth_exceeded),
    Attack("child claims more depth than it was given", "chain_broken", _depth_exceeded_below),
    Attack("root speaks for someone else", "chain_broken", _root_speaks_for_other),
    Attack("expired parent under a fresh child", "expired", _expired_parent_fresh_child),
    Attack("expired", "expired", _expired),
    Attack("not yet valid", "not_yet_valid", _not_yet_valid),
    Attack("revoked middle agent", "revoked", _revoked("principal", lambda w, t: BOT)),
    Attack("revoked root user", "revoked", _revoked("principal", lambda w, t: ALICE)),
    Attack("revoked leaf agent", "revoked", _revoked("principal", lambda w, t: THIRD)),
    Attack("revoked grant jti (middle hop)", "revoked", _revoked("grant", lambda w, t: parts(t[1])[1]["jti"])),
    Attack("revoked grant jti (root)", "revoked", _revoked("grant", lambda w, t: parts(t[0])[1]["jti"])),
    Attack("revoked root key", "revoked", _revoked("key", lambda w, t: w.kid(ALICE))),
    Attack("revoked holder key", "revoked", _revoked("key", lambda w, t: w.kid(SUB))),
    Attack("signed by a rotated-out key after its retirement", "bad_signature", _rotated_after),
    Attack("audience mismatch (no audience given)", "audience_mismatch", _audience),
    Attack("untrusted root", "untrusted_root", _untrusted),
    Attack("kid that is not the root's", "unknown_key", _foreign_kid),
    Attack("payload changed after signing", "bad_signature", _tampered),
    Attack("jti under 128 bits", "malformed", _short_jti),
    Attack("jti too long to revoke", "malformed", _long_jti),
    Attack("exp past the year 9999", "malformed", _absurd_exp),
    *(Attack(f"small-order cnf {h[:8]}", "malformed", _small_order_cnf(h)) for h in SMALL_ORDER),
)
