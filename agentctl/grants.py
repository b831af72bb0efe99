"""Delegation grants: parsing a chain of hops, and minting root and re-delegated grants.

A grant is an ``agentctl-grant+jwt`` (SPEC, "Token format"). A re-delegated grant names its parent by
digest in ``prf``; the chain travels as a presentation, its grants joined by ``~``, root first
(:mod:`agentctl.presentation` reads it, each token once). Parsing checks shape and types only (step 1
of the pipeline); :mod:`agentctl.verify` decides whether a chain holds.
"""

from __future__ import annotations

import re
from typing import Any

from . import crypto, jws
from .encoding import _B64U_VALUE, _TAIL_BITS, EncodingError, b64u_decode, jwk, public_from_jwk, thumbprint
from .errors import UsageError, VerificationError
from .frozen import dataclass, field
from .names import is_name
from .presentation import check_reference, digest
from .scopes import parse_scopes
from .values import check_int

__all__ = ["MAX_CHAIN", "Hop", "Chain", "parse_chain", "hop_from", "quick_hop", "parse_scope_claim", "act_chain", "grant_claims"]

MAX_CHAIN = 8  # hops in a chain, root included
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: any later time cannot even be printed
MAX_JTI = 128  # characters; what 'agentctl revoke --grant' accepts, so that every grant can be revoked


def _bad(detail: str) -> VerificationError:
    return VerificationError("malformed", detail)


def int_claim(claims: dict, name: str) -> int:
    value = claims.get(name)
    if type(value) is int and 0 <= value <= MAX_TIME:  # the common case, without the calls
        return value
    return check_int(value, f"claim {name!r}", low=0, high=MAX_TIME)  # values.py: the one place for bounds


def _name(v: object, what: str) -> str:
    if type(v) is str and v in _NAMES:  # a name met before (the same few come again and again): checked once
        return v
    if not is_name(v):
        raise _bad(f"{what} is not a valid principal name")
    if len(_NAMES) >= 4096:
        _NAMES.clear()
    _NAMES.add(v)
    return v


_NAMES: set = set()


def parse_scope_claim(value: object):
    if not isinstance(value, str) or not value.strip():
        raise _bad("claim 'scope' must be a non-empty space-separated string")
    try:
        scopes = parse_scopes(value)
    except UsageError as e:
        raise _bad(f"claim 'scope': {e.message}") from None
    if type(value) is str:  # a claim that passed: quick_hop takes it from here
        if len(_SCOPE_CLAIMS) >= 4096:
            _SCOPE_CLAIMS.clear()
        _SCOPE_CLAIMS[value] = scopes
    return scopes


_SCOPE_CLAIMS: dict = {}


def audience_claim(claims: dict) -> tuple[str, ...] | None:
    if "aud" not in claims:
        return None
    aud = claims["aud"]
    if isinstance(aud, str):
        aud = [aud]
    if not isinstance(aud, list) or not aud or not all(isinstance(a, str) and a and a.isprintable() for a in aud):
        raise _bad("claim 'aud' must be a non-empty string or list of strings")
    return tuple(aud)


def jti_claim(claims: dict) -> str:
    """The ``jti`` of a grant or an action: base64url of at least 128 random bits, at most
    :data:`MAX_JTI` characters (what ``revoke --grant`` accepts, so that everything can be revoked)."""
    jti = claims.get("jti")
    # what strict b64u_decode accepts, decoding to 16 bytes or more (22 characters or more), without decoding
    if type(jti) is str and _JTI.fullmatch(jti) is not None:
        rest = len(jti) % 4
        if rest != 1 and not (rest and _B64U_VALUE[jti[-1]] & _TAIL_BITS[rest]):
            return jti
    try:
        if not isinstance(jti, str) or len(jti) > MAX_JTI or len(b64u_decode(jti)) < 16:
            raise ValueError
    except (EncodingError, ValueError):
        raise _bad(f"claim 'jti' must be base64url of at least 128 random bits, at most {MAX_JTI} characters") from None
    return jti


_JTI = re.compile(r"[A-Za-z0-9_-]{22,%d}" % MAX_JTI)


def act_chain(act: object) -> tuple[str, ...]:
    """The actors of an RFC 8693 ``act`` claim, outermost (current) first."""
    out = []
    while act is not None:
        if type(act) is not dict or not act.keys() <= _ACT_KEYS:
            raise _bad("claim 'act' must be {'sub': NAME, 'act': {...}}")
        out.append(_name(act.get("sub"), "act.sub"))
        act = act.get("act")
        if len(out) > MAX_CHAIN:
            raise VerificationError("chain_broken", f"the chain is longer than {MAX_CHAIN} hops")
    if not out:
        raise _bad("claim 'act' is missing")
    return tuple(out)


_ACT_KEYS = frozenset(("sub", "act"))


@dataclass(frozen=True)
class Hop:
    """One grant token of a chain, parsed and type-checked but not yet trusted."""

    token: jws.Jws = field(repr=False)
    iss: str
    sub: str
    delegate: str
    actors: tuple[str, ...]  # act chain, outermost first
    cnf: bytes = field(repr=False)
    scopes: tuple
    iat: int
    nbf: int
    exp: int
    jti: str
    aud: tuple[str, ...] | None
    max_depth: int
    prf: str | None = field(repr=False)  # the parent's digest

    @property
    def digest(self) -> str:
        """This token's digest, as its child's ``prf`` (or an action's ``grant``) names it: computed on
        first use (a chain's leaf, verified alone, never needs it)."""
        d = self.__dict__.get("_digest")
        if d is None:
            d = digest(self.token.token)
            object.__setattr__(self, "_digest", d)
        return d

    @property
    def kid(self) -> str:
        return self.token.kid

    @property
    def cnf_kid(self) -> str:  # asked for on every use of the grant: computed once
        kid = self.__dict__.get("_cnf_kid")
        if kid is None:
            kid = thumbprint(self.cnf)
            object.__setattr__(self, "_cnf_kid", kid)
        return kid

    @property
    def scope_text(self) -> str:
        return " ".join(str(s) for s in self.scopes)


def hop_from(t: jws.Jws, text: str | None = None, position: int = 1) -> Hop:
    """One grant of a presentation, from its decoded token (``text``: the token as it travels)."""
    c = t.claims
    cnf = c.get("cnf")
    if not isinstance(cnf, dict) or set(cnf) != {"jwk"}:
        raise _bad("claim 'cnf' must be {'jwk': the delegate's public JWK}")
    cnf_key = _cnf_key(cnf["jwk"])
    jti = jti_claim(c)
    actors = act_chain(c.get("act"))
    prf = c.get("prf")
    if prf is not None:
        prf = check_reference(prf, f"grant {position}'s 'prf'")
    max_depth = int_claim(c, "max_depth")
    iat, nbf, exp = int_claim(c, "iat"), int_claim(c, "nbf"), int_claim(c, "exp")
    if exp <= nbf:
        raise _bad("claim 'exp' is not after 'nbf'")
    hop = _new_hop()  # every field set here, as Hop(...) would (a frozen dataclass, built without its __init__)
    hop.__dict__.update(
        token=t,
        iss=_name(c.get("iss"), "claim 'iss'"),
        sub=_name(c.get("sub"), "claim 'sub'"),
        delegate=actors[0],
        actors=actors,
        cnf=cnf_key,
        scopes=parse_scope_claim(c.get("scope")),
        iat=iat,
        nbf=nbf,
        exp=exp,
        jti=jti,
        aud=audience_claim(c),
        max_depth=max_depth,
        prf=prf,
    )
    if text is not None and text is not t.token and text != t.token:
        hop.__dict__["_digest"] = digest(text)
    return hop


def quick_hop(part: str) -> Hop | None:
    """:func:`hop_from` of a clean grant token (a token of a checked presentation) in one pass, for the
    usual grant: its header, principal names, holder key and scope met before (each remembered only
    once it passed the full checks). None when it cannot tell so quickly, or when anything is wrong:
    then the full parse decides and names the fault. It never returns a hop the full parse refuses.

    The payload comes from the plain JSON scanner (:func:`agentctl.jws.quick_decode`): only the claims
    of :data:`_QUICK_CLAIMS` are taken, each value is checked for its type and content here, and the
    members of the objects read must be as many as the text holds (no key came twice)."""
    read = jws.quick_decode(part, jws.GRANT)
    if read is None:
        return None
    t, members = read
    c = t.claims
    if not c.keys() <= _QUICK_CLAIMS:  # any other claim: the full parse reads it
        return None
    cnf = c.get("cnf")
    if type(cnf) is not dict or len(cnf) != 1:
        return None
    doc = cnf.get("jwk")
    x = doc.get("x") if type(doc) is dict and len(doc) == 3 else None
    key = _CNF_KEYS.get(x) if type(x) is str else None
    if key is None or doc.get("kty") != "OKP" or doc.get("crv") != "Ed25519":  # type: ignore[union-attr]
        return None
    jti = c.get("jti")
    if type(jti) is not str or _JTI.fullmatch(jti) is None:
        return None
    rest = len(jti) % 4
    if rest == 1 or (rest and _B64U_VALUE[jti[-1]] & _TAIL_BITS[rest]):
        return None
    members -= len(c) + 4  # the claims, cnf's one and the JWK's three
    actors = []
    act = c.get("act")
    while act is not None:
        if type(act) is not dict or not act.keys() <= _ACT_KEYS:
            return None
        name = act.get("sub")
        if type(name) is not str or name not in _NAMES:
            return None
        actors.append(name)
        members -= len(act)
        act = act.get("act")
        if len(actors) > MAX_CHAIN:
            return None
    if not actors or members:  # members left over: a key came twice
        return None
    prf = c.get("prf")
    if prf is not None and (type(prf) is not str or _REFERENCE.fullmatch(prf) is None):
        return None
    max_depth, iat, nbf, exp = c.get("max_depth"), c.get("iat"), c.get("nbf"), c.get("exp")
    if not (type(max_depth) is int and type(iat) is int and type(nbf) is int and type(exp) is int
            and 0 <= max_depth <= MAX_TIME and 0 <= iat <= MAX_TIME and 0 <= nbf < exp <= MAX_TIME):
        return None
    iss, sub = c.get("iss"), c.get("sub")
    if type(iss) is not str or iss not in _NAMES or type(sub) is not str or sub not in _NAMES:
        return None
    scope = c.get("scope")
    scopes = _SCOPE_CLAIMS.get(scope) if type(scope) is str else None
    if scopes is None:
        return None
    aud = None
    if "aud" in c:
        try:
            aud = audience_claim(c)
        except VerificationError:
            return None
    hop = _new_hop()
    hop.__dict__.update(token=t, iss=iss, sub=sub, delegate=actors[0], actors=tuple(actors), cnf=key, scopes=scopes,
                        iat=iat, nbf=nbf, exp=exp, jti=jti, aud=aud, max_depth=max_depth, prf=prf)
    return hop


#: The claims :func:`quick_hop` reads (every one whose value it checks); a grant with another claim is
#: read by the full parse.
_QUICK_CLAIMS = frozenset(("iss", "sub", "act", "cnf", "scope", "iat", "nbf", "exp", "jti", "max_depth", "prf", "aud"))
_REFERENCE = re.compile(r"[A-Za-z0-9_-]{43}")  # a digest, as presentation.check_reference takes it


def _cnf_key(doc: Any) -> bytes:
    """The delegate's key from its JWK, checked; a JWK met before (the same holders come again and
    again) is looked up, not decoded and checked again."""
    x = doc.get("x") if type(doc) is dict and len(doc) == 3 else None
    if type(x) is str:
        known = _CNF_KEYS.get(x)
        if known is not None and doc.get("kty") == "OKP" and doc.get("crv") == "Ed25519":
            return known
    try:
        key = crypto.check_public_key(public_from_jwk(doc))
    except (EncodingError, crypto.InvalidKey) as e:
        raise _bad(f"claim 'cnf': {e}") from None
    if type(x) is str:
        if len(_CNF_KEYS) >= 4096:
            _CNF_KEYS.clear()
        _CNF_KEYS[x] = key
    return key


_CNF_KEYS: dict[str, bytes] = {}


def _new_hop() -> Hop:
    return object.__new__(Hop)


@dataclass(frozen=True)
class Chain:
    """The hops of a grant, root first. Parsed, not verified."""

    hops: tuple[Hop, ...]

    @property
    def root(self) -> Hop:
        return self.hops[0]

    @property
    def leaf(self) -> Hop:
        return self.hops[-1]

    @property
    def principals(self) -> tuple[str, ...]:
        """Root signer, then each delegate in order."""
        return (self.root.iss,) + tuple(h.delegate for h in self.hops)

    @property
    def text(self) -> str:
        """The chain as a presentation: its grants joined by ``~``, root first."""
        return "~".join(h.token.token for h in self.hops)


def parse_chain(token: object) -> Chain:
    """Parse a grant presentation (its grants joined by ``~``, root first); refuse more than
    :data:`MAX_CHAIN` grants before parsing any."""
    from .presentation import parse

    return parse(token, expect="grant").chain  # type: ignore[return-value]


def grant_claims(
    *,
    iss: str,
    sub: str,
    delegate: str,
    delegate_public: bytes,
    scopes: tuple,
    now: int,
    ttl: int,
    max_depth: int,
    audience: tuple[str, ...] | None,
    parent: Hop | None,
) -> dict:
    act: dict = {"sub": delegate}
    if parent is not None:
        act["act"] = parent.token.claims["act"]
    claims: dict = {
        "iss": iss,
        "sub": sub,
        "act": act,
        "cnf": {"jwk": jwk(delegate_public)},
        "scope": " ".join(str(s) for s in scopes),
    }
    if audience:
        claims["aud"] = audience[0] if len(audience) == 1 else list(audience)
    claims.update(iat=now, nbf=now, exp=now + ttl, jti=_new_jti(), max_depth=max_depth)
    if parent is not None:
        claims["prf"] = parent.digest
    return claims


def _new_jti() -> str:
    import secrets  # minting only: verification never needs it

    return secrets.token_urlsafe(16)
