"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519, and tlog checkpoints
(https://c2sp.org/tlog-checkpoint).

A signed note is a text ending in a newline, a blank line, then one or more signature lines::

    — <key name> base64(4-byte key ID || 64-byte Ed25519 signature of the text)

The key ID of an Ed25519 key is ``SHA-256(key name || 0x0A || 0x01 || public key)[:4]``. A verifier
key is written ``<name>+<key ID in hex>+base64(0x01 || public key)``.

A checkpoint is the text of a note: the origin line, the tree size in decimal, the base64 root hash
of the RFC 6962 tree, then optional non-empty extension lines.

Parsing is strict: base64 is standard, padded and canonical; a note must be UTF-8 without control
characters other than newline; a malformed signature line, even one by an unknown key, rejects the
whole note (as golang.org/x/mod/sumdb/note does). Signature lines by other keys are otherwise
ignored, as the spec requires; every line by the expected key must verify, at least one must exist,
and the expected key may sign only once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from .. import crypto
from ..errors import DeniedError, UsageError

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "NoteError",
    "key_id",
    "verifier_key",
    "parse_verifier_key",
    "sign_note",
    "verify_note",
    "checkpoint_body",
    "parse_checkpoint",
    "parse_kept_checkpoint",
]

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
MAX_NOTE_BYTES = 1 << 20
_DASH = "\u2014 "  # em dash, space
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class NoteError(DeniedError, ValueError):
    """A note, key or checkpoint that is malformed, or a signature that does not verify."""


# --- encodings --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Standard base64 with padding, canonical (no stray bits, no whitespace)."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{what} is not base64") from None
    if _b64(data) != text:
        raise NoteError(f"{what} is not canonical padded base64")
    return data


_BAD_CHARS = re.compile("[\x00-\x09\x0b-\x1f\ud800-\udfff]")


def _check_text(text: str, what: str) -> None:
    """Valid Unicode (encodable as UTF-8) with no control character but newline."""
    bad = _BAD_CHARS.search(text)
    if bad:
        ch = bad.group()
        kind = "a lone surrogate, not valid Unicode" if ch >= "\ud800" else "a control character"
        raise NoteError(f"{what} holds {kind} ({ch!r})")


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise NoteError(f"a key name is a string, not {type(name).__name__}")
    if not name:
        raise NoteError("a key name must not be empty")
    for ch in name:
        if ch.isspace() or ch == "+" or ch < " " or "\ud800" <= ch <= "\udfff":
            raise NoteError(f"key name {name!r} holds {ch!r}: no spaces, '+' or control characters")
    return name


def _check_public(public: object) -> bytes:
    try:
        return crypto.check_public_key(public)
    except crypto.InvalidKey as e:
        raise NoteError(str(e)) from None


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 note key: ``SHA-256(name || 0x0A || 0x01 || public)[:4]``."""
    name, public = _check_name(name), _check_public(public)
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def verifier_key(name: str, public: bytes) -> str:
    """The verifier key string ``name+hexkeyid+base64(0x01 || public)``."""
    return f"{name}+{key_id(name, public).hex()}+{_b64(bytes([ALG_ED25519]) + _check_public(public))}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """``(name, public)`` from a verifier key string; the key ID must match the key."""
    if not isinstance(vkey, str):
        raise NoteError("a verifier key is a string")
    name, sep1, rest = vkey.partition("+")
    hex_id, sep2, b64 = rest.partition("+")
    if not (sep1 and sep2) or not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise NoteError("a verifier key is name+keyid+key, with an 8-digit lower-case hex key ID")
    raw = _unb64(b64, "the verifier key")
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise NoteError("the verifier key is not an Ed25519 key (type 0x01 and 32 bytes)")
    public = raw[1:]
    if key_id(name, public).hex() != hex_id:
        raise NoteError(f"the verifier key's ID {hex_id} does not match its name and key")
    return name, public


# --- notes ------------------------------------------------------------------------------------


def _check_body(body: object) -> str:
    if not isinstance(body, str):
        raise NoteError(f"a note text is a string, not {type(body).__name__}")
    if not body.endswith("\n"):
        raise NoteError("a note text must end with a newline")
    _check_text(body, "the note text")
    if len(body.encode("utf-8")) > MAX_NOTE_BYTES // 2:
        raise NoteError("the note text is too long")
    return body


def sign_note(body: str, key_name: str, seed: bytes) -> str:
    """The signed note: ``body``, a blank line and one Ed25519 signature line by ``key_name``."""
    body, name = _check_body(body), _check_name(key_name)
    kid = key_id(name, crypto.public_key(seed))
    signature = crypto.sign(seed, body.encode("utf-8"))
    return f"{body}\n{_DASH}{name} {_b64(kid + signature)}\n"


def _split(text: object) -> tuple[str, list[str]]:
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_NOTE_BYTES:
            raise NoteError(f"the note is over {MAX_NOTE_BYTES} bytes")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("the note is not UTF-8") from None
    if not isinstance(text, str):
        raise NoteError(f"a note is text, not {type(text).__name__}")
    if len(text) > MAX_NOTE_BYTES:
        raise NoteError(f"the note is over {MAX_NOTE_BYTES} bytes")
    _check_text(text, "the note")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise NoteError("the note has no signature lines")
    if not block.endswith("\n"):
        raise NoteError("the note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signature lines; at most {MAX_SIGNATURES} are read")
    return body, lines


def verify_note(text: str, key_name: str, public: bytes) -> str:
    """The text of a signed note that ``key_name`` with ``public`` signed; raise :class:`NoteError`.

    Lines by other keys (another name or another key ID) are ignored, as the spec requires, but
    must be well-formed.
    """
    name, public = _check_name(key_name), _check_public(public)
    kid = key_id(name, public)
    body, lines = _split(text)
    message = body.encode("utf-8")
    ours = 0
    for n, line in enumerate(lines, 1):
        if not line.startswith(_DASH):
            raise NoteError(f"signature line {n} does not start with an em dash and a space")
        signer, sep, b64 = line[len(_DASH) :].partition(" ")
        if not sep:
            raise NoteError(f"signature line {n} has no signature after the key name")
        try:
            _check_name(signer)
        except NoteError as e:
            raise NoteError(f"signature line {n}: {e}") from None
        raw = _unb64(b64, f"the signature on line {n}")
        if len(raw) < 5:
            raise NoteError(f"the signature on line {n} is too short")
        if signer != name or raw[:4] != kid:
            continue  # another key: ignored
        ours += 1
        if ours > 1:
            raise NoteError(f"the note is signed more than once by {name}+{kid.hex()}")
        if not crypto.verify(public, message, raw[4:]):
            raise NoteError(f"the signature by {name}+{kid.hex()} does not verify")
    if not ours:
        raise NoteError(f"the note is not signed by {name}+{kid.hex()}")
    return body


# --- checkpoints ------------------------------------------------------------------------------


def checkpoint_body(origin: str, size: int, root: bytes, *, extensions: tuple[str, ...] = ()) -> str:
    """The note text of a checkpoint: origin, decimal size, base64 root, extension lines."""
    if not isinstance(origin, str) or not origin:
        raise NoteError("a checkpoint origin is a non-empty string")
    _check_text(origin, "the origin")
    if "\n" in origin:
        raise NoteError("the origin is one line")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**64:
        raise NoteError(f"a tree size is an integer in 0..2**64-1, not {size!r}")
    if not isinstance(root, (bytes, bytearray)) or len(root) != 32:
        raise NoteError("a root hash is 32 bytes")
    for ext in extensions:
        if not isinstance(ext, str) or not ext or "\n" in ext:
            raise NoteError("an extension line is a non-empty line")
        _check_text(ext, "an extension line")
    return "".join(f"{line}\n" for line in (origin, str(size), _b64(bytes(root)), *extensions))


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    """``(origin, size, root)`` from a checkpoint's note text (the verified body, not the signed note).

    Extension lines are allowed and not returned.
    """
    if not isinstance(text, str):
        raise NoteError(f"a checkpoint is text, not {type(text).__name__}")
    if not text.endswith("\n"):
        raise NoteError("a checkpoint ends with a newline")
    _check_text(text, "the checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a size and a root hash line")
    if any(not line for line in lines):
        raise NoteError(f"checkpoint line {lines.index('') + 1} is empty")
    origin, size_line, root_line = lines[:3]
    if not _DECIMAL.fullmatch(size_line) or int(size_line) >= 2**64:
        raise NoteError(f"the checkpoint size {size_line[:30]!r} is not a decimal number without leading zeros")
    root = _unb64(root_line, "the checkpoint root hash")
    if len(root) != 32:
        raise NoteError(f"the checkpoint root hash is {len(root)} bytes, not 32")
    return origin, int(size_line), root


def parse_kept_checkpoint(text: str, what: str = "kept checkpoint") -> tuple[int, bytes, str, str]:
    """(size, root, origin, text) of a checkpoint kept elsewhere, read before its signature is checked
    (``verify`` does that, and reports a bad one as tampering); a text that is not a signed checkpoint
    at all is a usage error."""
    split = text.rfind("\n\n") if isinstance(text, str) else -1
    try:
        if isinstance(text, str) and not text.strip():
            raise NoteError("the file is empty")
        if split < 0:
            raise NoteError("it has no blank line before a signature")
        origin, n, root = parse_checkpoint(text[: split + 1])
    except NoteError as e:
        raise UsageError(f"the {what} is not a signed checkpoint: {e}") from None
    return n, root, origin, text
