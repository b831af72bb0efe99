"""Public keys as they enter a home: did:key (with or without a matching fragment), a JWK (inline or a
file) or raw base64url, each checked (small order and off-curve keys are refused)."""

from __future__ import annotations

from pathlib import Path

from . import crypto
from .encoding import EncodingError, b64u_decode, did_key, jwk, loads_strict, public_from_did_key, public_from_jwk, thumbprint
from .errors import NotFoundError, UsageError

__all__ = ["parse_public_key", "public_formats"]


def _checked_public(raw: bytes, what: str) -> bytes:
    try:
        return crypto.check_public_key(raw)
    except crypto.InvalidKey as e:
        raise UsageError(f"refused {what}: {e}") from None


def parse_public_key(text: str, base: Path | None = None) -> bytes:
    """A public key given as did:key, a JWK (inline or in a file) or base64url; validated as a point."""
    text = text.strip()
    if text.startswith("did:"):
        did, hash_, fragment = text.partition("#")
        # did:key:z6Mk…#z6Mk… (a verification method id) names the key of its DID, and only that
        if hash_ and fragment != did[len("did:key:"):]:
            raise UsageError("bad did:key: its #fragment names another key than the DID itself")
        try:
            return _checked_public(public_from_did_key(did), "did:key")
        except EncodingError as e:
            raise UsageError(f"bad did:key: {e}") from None
    if text.startswith("{"):
        data = text
    else:
        path = Path(text) if base is None else base / text
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except (OSError, ValueError):  # too long or a NUL: no file name, so the key itself
            is_dir = is_file = False
        if is_dir:
            raise UsageError(f"cannot read {path}: it is a directory")
        if path.suffix.lower() in (".json", ".jwk") or is_file:
            try:
                data = path.read_text("utf-8")
            except FileNotFoundError:
                raise NotFoundError(f"no such file: {path}") from None
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise UsageError(f"cannot read {str(path)[:200]}: {getattr(e, 'strerror', None) or e}") from None
            if not data.strip():
                raise UsageError(f"bad JWK: {path} is empty")
        else:
            try:
                raw = b64u_decode(text)
            except EncodingError as e:
                raise UsageError(f"bad public key: not a did:key, a JWK file or base64url ({e})") from None
            if len(raw) != 32:
                raise UsageError(f"bad public key: base64url of {len(raw)} bytes, an Ed25519 key is 32")
            return _checked_public(raw, "public key")
    try:
        doc = loads_strict(data)
        if isinstance(doc, dict) and "keys" in doc:  # a JWKS with one key
            keys = doc["keys"]
            if not isinstance(keys, list) or len(keys) != 1:
                raise EncodingError("a JWKS given to import must hold exactly one key")
            doc = keys[0]
        return _checked_public(public_from_jwk(doc), "JWK")
    except EncodingError as e:
        raise UsageError(f"bad JWK: {e}") from None


def public_formats(public: bytes) -> dict:
    return {"did": did_key(public), "jwk": jwk(public, kid=True), "b64": jwk(public)["x"], "kid": thumbprint(public)}
