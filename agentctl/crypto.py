"""The only module that imports nacl: Ed25519 keys and signatures, passphrase sealing.

Public keys are checked wherever they enter (:func:`check_public_key`): exactly 32 bytes, a canonical
encoding of a point on the curve, in the prime-order subgroup and not of small order. Signature
verification is libsodium's (``crypto_sign_open``, which runs ``crypto_sign_verify_detached``):
cofactorless, and it refuses a non-canonical ``S`` and small-order ``R`` and ``A``.
"""

from __future__ import annotations

import os

import nacl.bindings as _b
import nacl.exceptions as _nexc
from nacl._sodium import ffi as _ffi, lib as _lib

__all__ = [
    "SEED_BYTES",
    "PUBLIC_BYTES",
    "SIGNATURE_BYTES",
    "InvalidKey",
    "new_seed",
    "public_key",
    "sign",
    "verify",
    "check_public_key",
    "seal",
    "unseal",
    "SealParams",
]

SEED_BYTES = 32
PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64

# Ed25519 group order L, little-endian bytes comparison for S < L.
_L = 2**252 + 27742317777372353535851937790883648493


class InvalidKey(ValueError):
    """A public key that is not a usable Ed25519 point (wrong size, small order, off the curve)."""


def new_seed() -> bytes:
    return os.urandom(SEED_BYTES)


def _secret_key(seed: bytes) -> bytes:
    if len(seed) != SEED_BYTES:
        raise ValueError("an Ed25519 seed is 32 bytes")
    _pk, sk = _b.crypto_sign_seed_keypair(seed)
    return sk


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed."""
    if len(seed) != SEED_BYTES:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return _b.crypto_sign_seed_keypair(seed)[0]


def sign(seed: bytes, message: bytes) -> bytes:
    """A 64-byte detached Ed25519 signature of ``message``."""
    return _b.crypto_sign(message, _secret_key(seed))[:SIGNATURE_BYTES]


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid signature of ``message`` by ``public``; never raises.

    libsodium's verification (``crypto_sign_open``, which runs ``crypto_sign_verify_detached``):
    cofactorless, refuses ``S >= L``, small-order or non-canonical ``A`` and small-order ``R``. It
    does not refuse an ``A`` with a torsion component: callers check keys with
    :func:`check_public_key` when they enter. The C function is called directly, without an output
    buffer (libsodium writes the opened message only where it is given one): the binding PyNaCl
    wraps it in allocates two and copies the message out, which a verifier never reads.
    """
    if type(public) is not bytes or type(message) is not bytes or type(signature) is not bytes:  # the usual case is bytes
        if not all(isinstance(v, (bytes, bytearray, memoryview)) for v in (public, message, signature)):
            return False
        public, message, signature = bytes(public), bytes(message), bytes(signature)
    if len(public) != PUBLIC_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    if signature[63] >= 0x10 and int.from_bytes(signature[32:], "little") >= _L:  # S < 2^252 < L needs no sum
        return False  # non-canonical S (malleability)
    try:
        return _open(_NULL, _NULL, signature + message, len(message) + SIGNATURE_BYTES, public) == 0
    except (_nexc.CryptoError, ValueError, TypeError, OverflowError):
        return False


_open = _lib.crypto_sign_open
_NULL = _ffi.NULL


def check_public_key(public: object) -> bytes:
    """Return ``public`` if it is a canonical, prime-order Ed25519 point; raise :class:`InvalidKey`."""
    if not isinstance(public, (bytes, bytearray)) or len(public) != PUBLIC_BYTES:
        raise InvalidKey("an Ed25519 public key is 32 bytes")
    public = bytes(public)
    if public in _VALID_KEYS:  # the subgroup check costs as much as a signature check: once per key
        return public
    # libsodium: on the curve, canonical, in the main subgroup, not of small order.
    if not _b.crypto_core_ed25519_is_valid_point(public):
        raise InvalidKey("not a valid Ed25519 public key (small order, non-canonical or not on the curve)")
    # is_valid_point accepts the non-canonical encoding of y with the sign bit set on x = 0; refuse
    # any y >= p as well.
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    if y >= 2**255 - 19:
        raise InvalidKey("not a valid Ed25519 public key (non-canonical encoding)")
    if len(_VALID_KEYS) >= 4096:
        _VALID_KEYS.clear()
    _VALID_KEYS.add(public)
    return public


_VALID_KEYS: set[bytes] = set()


# --- passphrase sealing (file keystore) -------------------------------------------------------


class SealParams:
    """Argon2id cost parameters; kept with the sealed data so they can be raised later."""

    OPSLIMIT = _b.crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE
    MEMLIMIT = _b.crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE
    SALT_BYTES = _b.crypto_pwhash_SALTBYTES
    NONCE_BYTES = _b.crypto_secretbox_NONCEBYTES


_OPSLIMIT_MIN = _b.crypto_pwhash_argon2id_OPSLIMIT_MIN
_MEMLIMIT_MIN = _b.crypto_pwhash_argon2id_MEMLIMIT_MIN
_OPSLIMIT_CAP = _b.crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE
_MEMLIMIT_CAP = _b.crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE


def _kdf(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return _b.crypto_pwhash_alg(
        _b.crypto_secretbox_KEYBYTES, passphrase, salt, opslimit, memlimit, _b.crypto_pwhash_ALG_ARGON2ID13
    )


def seal(passphrase: bytes, plaintext: bytes) -> dict:
    """Encrypt with a key from Argon2id(passphrase) and XSalsa20-Poly1305; return the parameters."""
    salt = os.urandom(SealParams.SALT_BYTES)
    nonce = os.urandom(SealParams.NONCE_BYTES)
    key = _kdf(passphrase, salt, SealParams.OPSLIMIT, SealParams.MEMLIMIT)
    box = _b.crypto_secretbox(plaintext, nonce, key)
    return {
        "kdf": "argon2id",
        "opslimit": SealParams.OPSLIMIT,
        "memlimit": SealParams.MEMLIMIT,
        "salt": salt,
        "nonce": nonce,
        "ciphertext": box,
    }


def _limit(value, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        n = int(value)
    except ValueError:
        return None
    return n if low <= n <= high else None


def unseal(passphrase: bytes, sealed: dict) -> bytes | None:
    """The plaintext, or None when the passphrase is wrong or the data was altered."""
    if not isinstance(passphrase, bytes):
        raise TypeError("a passphrase is bytes")  # a caller's mistake, not altered data
    try:
        if not isinstance(sealed, dict) or sealed.get("kdf") != "argon2id":
            return None
        # Bound the cost an altered file could make us pay before any key is derived: at most
        # libsodium's "sensitive" profile (4 passes over 1 GiB), or what seal() currently writes.
        ops = _limit(sealed.get("opslimit"), _OPSLIMIT_MIN, max(_OPSLIMIT_CAP, SealParams.OPSLIMIT))
        mem = _limit(sealed.get("memlimit"), _MEMLIMIT_MIN, max(_MEMLIMIT_CAP, SealParams.MEMLIMIT))
        salt, nonce, box = (sealed.get(k) for k in ("salt", "nonce", "ciphertext"))
        if ops is None or mem is None:
            return None
        if not (isinstance(salt, bytes) and isinstance(nonce, bytes) and isinstance(box, bytes)):
            return None
        if len(salt) != SealParams.SALT_BYTES or len(nonce) != SealParams.NONCE_BYTES:
            return None
        key = _kdf(passphrase, salt, ops, mem)
        return _b.crypto_secretbox_open(box, nonce, key)
    except (_nexc.CryptoError, ValueError, TypeError):
        return None
