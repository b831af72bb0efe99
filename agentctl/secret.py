"""The exported secret: one line that carries a principal's name and 32-byte seed.

Format: ``AGENTCTL-SECRET-KEY-1`` followed by base64url (no padding) of::

    name_length (1 byte) ‖ name (ASCII) ‖ seed (32 bytes) ‖ SHA-256(prefix ‖ name_length ‖ name ‖ seed)[:4]

The checksum makes a truncated or mistyped secret a clear error instead of a different key. Error
messages never repeat any part of the secret.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .encoding import EncodingError, b64u_decode, b64u_encode
from .errors import SecretFormatError
from .names import is_name

__all__ = ["PREFIX", "ExportedSecret", "encode_secret", "decode_secret"]

PREFIX = "AGENTCTL-SECRET-KEY-1"
_B64U = re.compile(r"[A-Za-z0-9_-]+")
_BAD_CHECKSUM = "exported secret has a bad checksum: it was mistyped or altered"


@dataclass(frozen=True)
class ExportedSecret:
    name: str
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not is_name(self.name) or len(self.seed) != 32:
            raise SecretFormatError("an exported secret holds a principal name and a 32-byte seed")

    def __str__(self) -> str:  # never print the seed by accident
        return f"<secret of {self.name}>"


def _checksum(body: bytes) -> bytes:
    return hashlib.sha256(PREFIX.encode("ascii") + body).digest()[:4]


def encode_secret(name: str, seed: bytes) -> str:
    ExportedSecret(name, seed)
    raw = name.encode("ascii")
    body = bytes([len(raw)]) + raw + seed
    return PREFIX + b64u_encode(body + _checksum(body))


def decode_secret(text: str) -> ExportedSecret:
    """Parse an exported secret; raise :class:`SecretFormatError` (never echoing the input)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise SecretFormatError(
            f"not an exported secret: it does not start with {PREFIX}",
            hint="use the line printed by 'agentctl keygen --export-secret'",
        )
    body_text = text[len(PREFIX):]
    try:
        raw = b64u_decode(body_text)
    except EncodingError:
        if _B64U.fullmatch(body_text) and len(body_text) % 4 != 1:
            # only the last character's unused bits are off: a typo in the last character
            raise SecretFormatError(_BAD_CHECKSUM, hint="copy the whole line again") from None
        raise SecretFormatError(
            "exported secret is damaged: it has characters outside base64url or was cut",
            hint="copy the whole line again",
        ) from None
    n = raw[0] if raw else 0
    if not raw or len(raw) != 1 + n + 32 + 4:
        raise SecretFormatError("exported secret is truncated or has extra characters", hint="copy the whole line again")
    body, check = raw[:-4], raw[-4:]
    if _checksum(body) != check:
        raise SecretFormatError(_BAD_CHECKSUM, hint="copy the whole line again")
    try:
        name = body[1 : 1 + n].decode("ascii")
    except UnicodeDecodeError:
        raise SecretFormatError("exported secret holds an invalid principal name") from None
    if not is_name(name):
        raise SecretFormatError("exported secret holds an invalid principal name")
    return ExportedSecret(name, body[1 + n :])
