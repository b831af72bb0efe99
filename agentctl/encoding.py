"""Encodings: strict base64url, base58btc, did:key, JWK and RFC 7638 thumbprints, strict and
canonical JSON. Pure functions, no I/O, no nacl.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from typing import Any

__all__ = [
    "b64u_encode",
    "b64u_decode",
    "b58_encode",
    "b58_decode",
    "did_key",
    "public_from_did_key",
    "jwk",
    "public_from_jwk",
    "thumbprint",
    "loads_strict",
    "canonical_json",
    "EncodingError",
]


class EncodingError(ValueError):
    """Input that is not in the expected encoding; the message says what is wrong."""


_B64U = re.compile(r"[A-Za-z0-9_-]*")


def b64u_encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


_B64U_VALUE = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
_PAD = ("", "", "==", "=")  # a length of 1 mod 4 is refused before padding
_TAIL_BITS = (0, 0, 0b1111, 0b11)  # bits of the last character that must be zero, by length % 4


def b64u_decode(text: str) -> bytes:
    """Strict base64url without padding: no '=', no other alphabet, no non-zero trailing bits."""
    # '+', '/' and '=' are standard base64, not base64url; every other stray byte fails strict decoding
    if not isinstance(text, str) or not text.isascii() or "+" in text or "/" in text or "=" in text:
        raise EncodingError("not base64url (only A-Z a-z 0-9 - _ without padding)")
    rest = len(text) % 4
    if rest == 1:
        raise EncodingError("not base64url (impossible length)")
    if rest and _B64U_VALUE.get(text[-1], 0) & _TAIL_BITS[rest]:
        raise EncodingError("not canonical base64url (non-zero trailing bits)")
    try:
        return binascii.a2b_base64((text + _PAD[rest]).encode("ascii").translate(_TO_STANDARD), strict_mode=True)
    except (binascii.Error, ValueError):
        raise EncodingError("not base64url (only A-Z a-z 0-9 - _ without padding)") from None


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58_encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58_decode(text: str) -> bytes:
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise EncodingError(f"not base58btc (character {c!r})")
        n = n * 58 + _B58_INDEX[c]
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


_ED25519_MULTICODEC = b"\xed\x01"


def did_key(public: bytes) -> str:
    """The ``did:key:z6Mk…`` form of an Ed25519 public key (multicodec 0xed01, base58btc)."""
    return "did:key:z" + b58_encode(_ED25519_MULTICODEC + public)


def public_from_did_key(text: str) -> bytes:
    """The 32 raw bytes of an Ed25519 did:key (multicodec 0xed01, base58btc). Not validated as a point."""
    if not text.startswith("did:key:z"):
        raise EncodingError("not an Ed25519 did:key (expected did:key:z6Mk…)")
    raw = b58_decode(text[len("did:key:z"):])
    if raw[:2] != _ED25519_MULTICODEC:
        raise EncodingError("did:key is not an Ed25519 key (multicodec is not 0xed01)")
    if len(raw) != 34:
        raise EncodingError("did:key does not hold a 32-byte Ed25519 key")
    return raw[2:]


def jwk(public: bytes, *, kid: bool = False) -> dict:
    """The public JWK (RFC 8037) of an Ed25519 key, with its ``kid`` when asked."""
    doc = {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(public)}
    if kid:
        doc["kid"] = thumbprint(public)
        doc["alg"] = "EdDSA"
        doc["use"] = "sig"
    return doc


def public_from_jwk(doc: object) -> bytes:
    """The raw bytes of an Ed25519 public JWK; refuses other key types, curves and private keys."""
    if not isinstance(doc, dict):
        raise EncodingError("a JWK is a JSON object")
    if doc.get("kty") != "OKP":
        raise EncodingError(f"JWK kty must be OKP, not {doc.get('kty')!r}")
    if doc.get("crv") != "Ed25519":
        raise EncodingError(f"JWK crv must be Ed25519, not {doc.get('crv')!r}")
    if "d" in doc:
        raise EncodingError("JWK holds a private key ('d'); give the public key only")
    x = doc.get("x")
    if not isinstance(x, str):
        raise EncodingError("JWK has no 'x'")
    raw = b64u_decode(x)
    if len(raw) != 32:
        raise EncodingError("JWK 'x' is not 32 bytes")
    return raw


def thumbprint(public: bytes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key: the key id. The same
    few keys are asked about again and again: each is hashed once."""
    if type(public) is not bytes:
        public = bytes(public)
    kid = _THUMBPRINTS.get(public)
    if kid is None:
        members = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % b64u_encode(public)
        kid = b64u_encode(hashlib.sha256(members.encode("ascii")).digest())
        if len(_THUMBPRINTS) >= 4096:
            _THUMBPRINTS.clear()
        _THUMBPRINTS[public] = kid
    return kid


_THUMBPRINTS: dict[bytes, str] = {}


def _no_duplicates(pairs: list) -> dict:
    doc = dict(pairs)
    if len(doc) != len(pairs):  # a key came twice: name it
        seen: set = set()
        for k, _ in pairs:
            if k in seen:
                raise EncodingError(f"duplicate JSON key {k!r}")
            seen.add(k)
    return doc


def _no_constant(name: str):
    raise EncodingError(f"JSON constant {name} is not allowed")


def _i_json_int(text: str) -> int:
    if len(text) > 17:  # more digits than 2^53 has: refused before int() (which also caps at 4300)
        raise EncodingError(f"integer {text[:20]}… is outside the I-JSON range (at most 2^53-1)")
    value = int(text)
    if abs(value) > _MAX_SAFE:
        raise EncodingError(f"integer {text} is outside the I-JSON range (at most 2^53-1)")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):
        raise EncodingError(f"number {text[:20]} overflows to infinity")
    return value


_INF = float("inf")
_MISSING: Any = object()
_STRICT = json.JSONDecoder(  # made once
    object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_int=_i_json_int, parse_float=_finite_float
)
# An escape of a UTF-16 surrogate: a pair decodes to one character, a lone one to a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


# The usual token payload (an object, no whitespace around it, nothing after it) is scanned directly
# by the checking decoder's C scanner, which calls back only for each integer (to bound it): scanning
# the text for long runs of digits first costs more than those few calls.
_STRICT_SCAN = _STRICT.scan_once  # type: ignore[attr-defined]
# The C scanner without any hook (no call back into Python): it keeps the last of a duplicate key and
# takes NaN, huge integers and 1e400. Only for a caller that checks every value it reads and counts
# the members (agentctl.jws.quick_decode with agentctl.grants.quick_hop).
_PLAIN_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads_strict(data: bytes | str) -> object:
    """Parse JSON refusing duplicate keys, NaN/Infinity, numbers that overflow to infinity, integers
    outside the I-JSON range (|n| <= 2^53-1), lone surrogates and invalid UTF-8 (RFC 7493)."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        elif _SURROGATE.search(data):
            raise EncodingError("a lone surrogate is not Unicode text")
        doc = _MISSING
        if data[:1] == "{":
            try:  # the usual token payload: an object, no whitespace around it, nothing after it
                doc, end = _STRICT_SCAN(data, 0)
                if end != len(data):
                    doc = _MISSING
            except EncodingError:
                raise
            except (StopIteration, ValueError, RecursionError):  # the checking decoder says what is wrong
                doc = _MISSING
        if doc is _MISSING:
            doc = _STRICT.decode(data)
    except EncodingError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise EncodingError(f"not JSON: {e}") from None
    if _SURROGATE_ESCAPE.search(data):  # rare: only then look for a lone one among the decoded strings
        _no_lone_surrogates(doc)
    return doc


def _no_lone_surrogates(doc: object) -> None:
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            _no_surrogates(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _jcs(value: Any, out: list) -> None:
    t = type(value)
    if t is str:  # the common cases first, without isinstance chains
        if _SURROGATE.search(value):
            raise EncodingError("a lone surrogate is not Unicode text")
        out.append(_encode_string(value))
    elif t is dict and all(type(k) is str and k.isascii() for k in value):
        out.append("{")
        first = True
        for key in sorted(value):  # ASCII keys: code point order is UTF-16 order
            if not first:
                out.append(",")
            first = False
            out.append(_encode_string(key))
            out.append(":")
            _jcs(value[key], out)
        out.append("}")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise EncodingError("integer out of the I-JSON range")
        out.append(str(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise EncodingError("NaN and Infinity are not JSON")
        out.append(_es_number(value))
    elif isinstance(value, str):
        _no_surrogates(value)
        out.append(_encode_string(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _jcs(item, out)
        out.append("]")
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise EncodingError("JSON object keys are strings")
            _no_surrogates(key)
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _jcs(value[key], out)
        out.append("}")
    else:
        raise EncodingError(f"cannot encode {type(value).__name__} as JSON")


_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON's own string encoder (C): escapes '"', '\\' and control characters as RFC 8785 wants.
_encode_string = json.encoder.encode_basestring


def _no_surrogates(text: str) -> None:
    if _SURROGATE.search(text):
        raise EncodingError("a lone surrogate is not Unicode text")


def _es_number(x: float) -> str:
    """ECMAScript Number.prototype.toString of a finite double (RFC 8785 §3.2.2.3)."""
    from decimal import Decimal

    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    _, digits, exp = Decimal(repr(abs(x))).normalize().as_tuple()
    s = "".join(map(str, digits))
    k = len(s)
    n = int(exp) + k  # a finite number: its exponent is an int
    if k <= n <= 21:
        out = s + "0" * (n - k)
    elif 0 < n <= 21:
        out = s[:n] + "." + s[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + s
    else:
        out = s[0] + ("." + s[1:] if k > 1 else "") + "e" + ("+" if n - 1 >= 0 else "-") + str(abs(n - 1))
    return sign + out


_MAX_SAFE = 2**53 - 1


def _plain(value: Any) -> bool:
    """Whether json's C encoder writes ``value`` exactly as RFC 8785 does: no floats (number
    formatting differs), integers in the I-JSON range, and only ASCII string keys (for which code
    point order is UTF-16 order). Strings and None, most of an event, are passed over without a call."""
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or not k.isascii():
                return False
            if type(v) is not str and v is not None and not _plain(v):
                return False
        return True
    if t is list or t is tuple:
        for v in value:
            if type(v) is not str and v is not None and not _plain(v):
                return False
        return True
    if t is str or value is None or t is bool:
        return True
    if t is int:
        return -_MAX_SAFE <= value <= _MAX_SAFE
    return False


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps(ensure_ascii=False, sort_keys=True, separators=(",", ":"), check_circular=False), made once
_CANONICAL_C = getattr(json.encoder, "c_make_encoder", None)
_CANONICAL = (_CANONICAL_C(None, _not_json, _encode_string, None, ":", ",", True, False, True) if _CANONICAL_C is not None
              else None)


def canonical_json(value: object) -> bytes:
    """RFC 8785 (JCS) canonical JSON, UTF-8 encoded."""
    if _plain(value):  # the common case, written by json's C encoder
        if _CANONICAL is not None and type(value) is dict:
            text = "".join(_CANONICAL(value, 0))
        else:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), check_circular=False)
        if not text.isascii() and _SURROGATE.search(text):
            raise EncodingError("a lone surrogate is not Unicode text")
        return text.encode("utf-8")
    out: list[str] = []
    _jcs(value, out)
    return "".join(out).encode("utf-8")
