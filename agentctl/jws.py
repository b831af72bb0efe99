"""JWS compact serialization with Ed25519 (RFC 7515, RFC 8037), parsed strictly.

:func:`decode` performs step 1 of the verification pipeline (SPEC, "Verification"): size, three
segments, strict base64url, JSON objects without duplicate keys, the expected ``typ`` and an allowed
``alg``. It does not check the signature; :func:`check_signature` does, given the key.
"""

from __future__ import annotations

import json

from . import crypto
from . import encoding as _encoding
from .encoding import EncodingError, b64u_decode, b64u_encode, loads_strict, thumbprint
from .errors import VerificationError
from .frozen import dataclass, field

__all__ = ["MAX_TOKEN_BYTES", "ascii_text", "TYPES", "GRANT", "ACTION", "APPROVAL", "REQUEST", "REVOCATIONS", "ROTATION", "TRUST", "Jws", "encode", "decode", "peek", "peek_typ", "media_type"]

MAX_TOKEN_BYTES = 64 * 1024
#: A signed revocation list grows with every revocation (about 80 bytes an entry) and comes from an
#: administrator, not from a requester: it may be larger than a grant or an action.
MAX_LIST_BYTES = 8 * 1024 * 1024
GRANT = "agentctl-grant+jwt"
ACTION = "agentctl-action+jwt"
REVOCATIONS = "agentctl-revocations+jwt"
ROTATION = "agentctl-rotation+jwt"
TRUST = "agentctl-trust+jwt"
APPROVAL = "agentctl-approval+jwt"
REQUEST = "agentctl-request+jwt"
TYPES = (GRANT, ACTION, REVOCATIONS, ROTATION, TRUST, APPROVAL, REQUEST)
ALGS = ("EdDSA", "Ed25519")
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256")
_KNOWN_HEADERS = {"alg", "typ", "kid", "crit", "cty"}


@dataclass(frozen=True)
class Jws:
    header: dict
    claims: dict
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    token: str = field(repr=False)

    @property
    def kid(self) -> str:
        return self.header["kid"]

    @property
    def typ(self) -> str:
        """The type in the short lower-case form (``agentctl-grant+jwt``), however the header spelled it."""
        return media_type(self.header["typ"])

    def verifies_with(self, public: bytes) -> bool:
        return crypto.verify(public, self.signing_input, self.signature)


def encode(typ: str, claims: dict, seed: bytes) -> str:
    """Sign ``claims`` as a ``typ`` token with the key of ``seed``."""
    if typ not in TYPES:
        raise ValueError(f"unknown token type {typ!r}")
    header = {"alg": "EdDSA", "typ": typ, "kid": thumbprint(crypto.public_key(seed))}
    h = b64u_encode(json.dumps(header, separators=(",", ":")).encode("ascii"))
    p = b64u_encode(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    signing_input = f"{h}.{p}".encode("ascii")
    return f"{h}.{p}.{b64u_encode(crypto.sign(seed, signing_input))}"


_APPLICATION = "application/"


def media_type(typ: str) -> str:
    """``typ`` compared as RFC 7515 §4.1.9 says: media types are case-insensitive and ``application/``
    may stand before one without another ``/``. Returns the short lower-case form; a value with
    parameters (``;``) or another type is returned lower-cased and matches no agentctl type."""
    t = typ.lower()
    if t.startswith(_APPLICATION) and "/" not in t[len(_APPLICATION):]:
        t = t[len(_APPLICATION):]
    return t


def _malformed(detail: str) -> VerificationError:
    return VerificationError("malformed", detail)


def ascii_text(token: object, limit: int, what: str = "token") -> str:
    """A token (or presentation) as text: bytes decoded as ASCII, at most ``limit`` bytes (checked
    before anything else), outer whitespace dropped, not empty; else ``malformed``."""
    if isinstance(token, (bytes, bytearray)):
        if len(token) > limit:
            raise _malformed(f"{what} is larger than {limit} bytes")
        try:
            token = bytes(token).decode("ascii")
        except UnicodeDecodeError:
            raise _malformed(f"{what} is not ASCII") from None
    if not isinstance(token, str):
        raise _malformed("token is not text")
    if len(token) > limit:
        raise _malformed(f"{what} is larger than {limit} bytes")
    token = token.strip()
    if not token:
        raise _malformed("empty token")
    return token


def _segments(token: object, limit: int = MAX_TOKEN_BYTES) -> tuple[str, str, str]:
    return _split3(ascii_text(token, limit))


def _split3(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed(f"a token has three dot-separated segments, this has {len(parts)}")
    return parts[0], parts[1], parts[2]


def _json_segment(segment: str, what: str) -> dict:
    try:
        doc = loads_strict(b64u_decode(segment))
    except EncodingError as e:
        raise _malformed(f"{what}: {e}") from None
    if not isinstance(doc, dict):
        raise _malformed(f"{what} is not a JSON object")
    return doc


def _header(segment: str) -> dict:
    header = _json_segment(segment, "header")
    alg = header.get("alg")
    if alg not in ALGS:
        raise VerificationError("unsupported", f"algorithm {alg!r} is not allowed (only EdDSA)")
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise VerificationError("unsupported", f"header parameter {name!r} is not allowed")
    if "crit" in header:
        raise VerificationError("unsupported", f"critical header extensions are not supported: {header['crit']!r}")
    typ = header.get("typ")
    if not isinstance(typ, str):
        raise _malformed("header has no typ")
    kid = header.get("kid")
    if not isinstance(kid, str) or len(kid) != 43:
        raise _malformed("header has no valid kid")
    return header


_HEADERS: dict[str, tuple[dict, str]] = {}  # a header segment, checked once: (header, short typ)


def _checked_header(segment: str) -> tuple[dict, str]:
    """The header of ``segment`` checked (step 1) and its type in the short form. The same few headers
    (one per signing key and type) come again and again: each is decoded once and remembered. The
    header dict is shared between tokens: read it, never change it."""
    known = _HEADERS.get(segment)
    if known is not None:
        return known
    header = _header(segment)
    known = (header, media_type(header["typ"]))
    if len(_HEADERS) >= 1024:
        _HEADERS.clear()
    _HEADERS[segment] = known
    return known


def peek_typ(token: object) -> str:
    """The ``typ`` of a well-formed token header (for dispatch); raises like :func:`decode`."""
    h, _p, _s = _segments(token)
    typ = _checked_header(h)[1]
    if typ not in TYPES:
        raise _malformed(f"token type {typ!r} is not an agentctl token")
    return typ


def peek(token: object, typ: str | tuple[str, ...], *, clean: bool = False) -> tuple[dict, str]:
    """The checked header of a token of type ``typ`` (or one of a tuple) and its short type, without
    reading the payload; raises as :func:`decode` does for the same token up to its header.
    ``clean``: see :func:`decode`."""
    if clean and token.count(".") == 2:  # type: ignore[attr-defined]
        h = token.partition(".")[0]  # type: ignore[attr-defined]  # the header alone: the rest is not copied
    else:
        h = (_split3(token) if clean else _segments(token))[0]  # type: ignore[arg-type]
    header, short = _checked_header(h)
    if short not in ((typ,) if isinstance(typ, str) else typ):
        raise _malformed(f"expected a {typ if isinstance(typ, str) else ' or '.join(typ)} token, got {header['typ']!r}")
    return header, short


def decode(token: object, typ: str | tuple[str, ...], *, limit: int = MAX_TOKEN_BYTES, clean: bool = False) -> Jws:
    """Parse a token of type ``typ`` (or of one of the types of a tuple); raise
    :class:`VerificationError` (malformed/unsupported). ``clean``: ``token`` is a ``str`` already
    known to be ASCII, stripped, not empty and within the limit (a token of a checked presentation),
    so :func:`ascii_text` would return it unchanged."""
    h, p, s = _split3(token) if clean else _segments(token, limit)  # type: ignore[arg-type]
    header, short = _checked_header(h)
    if short not in ((typ,) if isinstance(typ, str) else typ):
        raise _malformed(f"expected a {typ if isinstance(typ, str) else ' or '.join(typ)} token, got {header['typ']!r}")
    claims = _json_segment(p, "payload")
    try:
        signature = b64u_decode(s)
    except EncodingError as e:
        raise _malformed(f"signature: {e}") from None
    if len(signature) != crypto.SIGNATURE_BYTES:
        raise _malformed("signature is not 64 bytes")
    t = _new_jws()  # every field set, as Jws(...) would (a frozen dataclass, built without its __init__)
    t.__dict__.update(header=header, claims=claims, signing_input=f"{h}.{p}".encode("ascii"), signature=signature,
                      token=token if clean else f"{h}.{p}.{s}")
    return t


def _new_jws() -> Jws:
    return object.__new__(Jws)


_PLAIN_SCAN = _encoding._PLAIN_SCAN


def quick_decode(token: str, typ: str) -> tuple[Jws, int] | None:
    """A clean token (see ``clean``) of type ``typ`` whose header was met before, read in one call by
    the plain JSON scanner, and the number of object members its payload's text holds; None when that
    is not so or when anything in it is wrong, and then :func:`decode` decides (and names the fault).

    The claims are NOT checked as :func:`decode` checks them: the caller
    (:func:`agentctl.grants.quick_hop`) accepts only claims it knows, checks each value's type and
    content (which refuses NaN, floats and integers out of range), and compares the members its dicts
    hold with the count returned, so that a key that came twice (the plain scanner keeps the last) is
    seen. In a text without escapes every ``"`` opens or closes a string, so ``":`` is the end of a
    key followed by its colon (counted here only where no whitespace comes between them: else None),
    or a string value starting with ``:``, which only makes the count larger than the members (a
    mismatch: the full parse decides); a duplicate key only makes the members fewer."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    h, p, s = parts
    known = _HEADERS.get(h)
    if known is None or known[1] != typ:
        return None
    try:
        text = b64u_decode(p).decode("utf-8")
        signature = b64u_decode(s)
        if text[:1] != "{" or "\\" in text:  # not the usual object without escapes: decode decides
            return None
        if " :" in text or "\n:" in text or "\t:" in text or "\r:" in text:  # a member the count would miss
            return None
        claims, end = _PLAIN_SCAN(text, 0)
    except (EncodingError, UnicodeDecodeError, StopIteration, ValueError, RecursionError):
        return None
    if end != len(text) or type(claims) is not dict or len(signature) != crypto.SIGNATURE_BYTES:
        return None
    t = _new_jws()
    t.__dict__.update(header=known[0], claims=claims, signing_input=f"{h}.{p}".encode("ascii"), signature=signature,
                      token=token)
    return t, text.count('":')
