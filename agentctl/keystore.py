"""Keystores: where secret keys (32-byte Ed25519 seeds) live.

* :class:`KeyringKeystore`: the OS keyring through the ``keyring`` package.
* :class:`FileKeystore`: one 0600 file per key under ``HOME/keys``, sealed with Argon2id + SecretBox
  when a passphrase is given, plain otherwise (like an ssh key with an empty passphrase).
* ``auto``: the keyring when a working backend exists, else the file keystore.
* The environment secret ``AGENTCTL_SECRET_KEY`` is consulted before any store (see :func:`resolve_seed`).

Every stored value is an exported secret line, so it carries the principal's name and a checksum.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Callable, Mapping

from .encoding import EncodingError, b64u_decode, b64u_encode
from .errors import KeystoreError, PassphraseError, SecretFormatError, StoreError
from .home import Home, atomic_write, check_private_file
from .secret import decode_secret, encode_secret

__all__ = ["Keystore", "FileKeystore", "KeyringKeystore", "open_keystore", "keyring_available", "SERVICE"]

SERVICE = "agentctl"
PassphraseSource = Callable[[str], "bytes | None"]  # purpose ("new" or "unlock") -> passphrase or None


class Keystore(ABC):
    """Stores seeds by principal name and key id."""

    name: str

    @abstractmethod
    def put(self, principal: str, kid: str, seed: bytes) -> None: ...

    @abstractmethod
    def get(self, principal: str, kid: str) -> bytes | None: ...

    @abstractmethod
    def delete(self, principal: str, kid: str) -> None: ...


def _check(principal: str, text: str, where: str) -> bytes:
    try:
        secret = decode_secret(text)
    except SecretFormatError as e:
        raise StoreError(f"damaged secret in {where}: {e.message}") from None
    if secret.name != principal:
        raise StoreError(f"damaged secret in {where}: it belongs to {secret.name!r}, not {principal!r}")
    return secret.seed


class FileKeystore(Keystore):
    name = "file"
    SEALED = "AGENTCTL-SEALED-KEY-1"

    def __init__(self, home: Home, env: Mapping[str, str] | None = None, prompt: PassphraseSource | None = None) -> None:
        self.home = home
        self.env = os.environ if env is None else env
        self.prompt = prompt

    def path(self, kid: str):
        return self.home.keys_dir / f"{kid}.key"

    def _passphrase(self, purpose: str) -> bytes | None:
        value = self.env.get("AGENTCTL_PASSPHRASE")
        if value:
            return value.encode("utf-8")
        if self.prompt is not None:
            return self.prompt(purpose) or None
        return None

    def put(self, principal: str, kid: str, seed: bytes) -> None:
        line = encode_secret(principal, seed)
        passphrase = self._passphrase("new")
        if passphrase:
            from .crypto import seal

            sealed = seal(passphrase, line.encode("ascii"))
            fields = [self.SEALED, sealed["kdf"], str(sealed["opslimit"]), str(sealed["memlimit"])]
            fields += [b64u_encode(sealed[k]) for k in ("salt", "nonce", "ciphertext")]
            data = " ".join(fields) + "\n"
        else:
            data = line + "\n"
        self.home.ensure("keys")
        atomic_write(self.path(kid), data.encode("ascii"))

    def get(self, principal: str, kid: str) -> bytes | None:
        path = self.path(kid)
        if not path.exists():
            return None
        check_private_file(path)
        try:
            text = path.read_text("ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise StoreError(f"cannot read key file {path}: {getattr(e, 'strerror', None) or e}") from None
        if text.startswith(self.SEALED):
            text = self._unseal(text, path)
        return _check(principal, text, str(path))

    def _unseal(self, text: str, path) -> str:
        parts = text.split(" ")
        try:
            if len(parts) != 7:
                raise ValueError
            sealed = {"kdf": parts[1], "opslimit": int(parts[2]), "memlimit": int(parts[3])}
            for k, v in zip(("salt", "nonce", "ciphertext"), parts[4:]):
                sealed[k] = b64u_decode(v)
        except (ValueError, EncodingError):
            raise StoreError(f"damaged key file {path}") from None
        passphrase = self._passphrase("unlock")
        if not passphrase:
            raise PassphraseError(
                f"key file {path} is encrypted and no passphrase was given",
                hint="set AGENTCTL_PASSPHRASE or run on a terminal to be asked",
            )
        from .crypto import unseal

        plain = unseal(passphrase, sealed)
        if plain is None:
            raise PassphraseError(f"wrong passphrase for key file {path}", hint="check AGENTCTL_PASSPHRASE")
        return plain.decode("ascii")

    def delete(self, principal: str, kid: str) -> None:
        try:
            os.unlink(self.path(kid))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise KeystoreError(f"cannot remove key file {self.path(kid)}: {e.strerror or e}") from None


def _keyring_error(action: str, e: BaseException) -> KeystoreError:
    return KeystoreError(
        f"os keyring failed to {action}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}",
        hint="unlock the keyring, or use the file keystore: AGENTCTL_KEYSTORE=file or keystore = \"file\" in config.toml",
    )


class KeyringKeystore(Keystore):
    """The OS keyring. Entries: service ``agentctl``, user ``NAME/KID``, value the exported secret."""

    name = "keyring"

    def __init__(self) -> None:
        ok, why = keyring_available()
        if not ok:
            raise KeystoreError(
                f"no usable os keyring: {why}",
                hint="use the file keystore: set AGENTCTL_KEYSTORE=file or keystore = \"file\" in config.toml",
            )
        import keyring

        self._kr = keyring.get_keyring()

    def put(self, principal: str, kid: str, seed: bytes) -> None:
        try:
            self._kr.set_password(SERVICE, f"{principal}/{kid}", encode_secret(principal, seed))
        except Exception as e:  # a backend may raise anything (dbus, OS errors): report, never leak
            raise _keyring_error("store a key", e) from None

    def get(self, principal: str, kid: str) -> bytes | None:
        try:
            text = self._kr.get_password(SERVICE, f"{principal}/{kid}")
        except Exception as e:  # see put()
            raise _keyring_error("read a key", e) from None
        return None if text is None else _check(principal, text, f"os keyring entry {principal}/{kid}")

    def delete(self, principal: str, kid: str) -> None:
        import keyring.errors

        try:
            self._kr.delete_password(SERVICE, f"{principal}/{kid}")
        except keyring.errors.PasswordDeleteError:
            pass
        except Exception as e:  # see put()
            raise _keyring_error("delete a key", e) from None


_availability: tuple[bool, str] | None = None


def keyring_available() -> tuple[bool, str]:
    """Whether the ``keyring`` package has a working backend here, and if not, why."""
    global _availability
    if _availability is not None:
        return _availability
    try:
        import keyring
        from keyring.backends import fail

        kr = keyring.get_keyring()
        backends = getattr(kr, "backends", None)
        if isinstance(kr, fail.Keyring) or (backends is not None and not backends):
            _availability = (False, "no keyring backend is available on this machine")
        elif type(kr).__module__.startswith("keyring.backends.null"):
            _availability = (False, "the keyring backend is the null backend")
        else:
            kr.get_password(SERVICE, "agentctl-probe")  # a locked or absent service fails here
            _availability = (True, type(kr).__name__)
    except Exception as e:  # any backend failure means "not usable"
        _availability = (False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}")
    return _availability


def open_keystore(
    mode: str,
    home: Home,
    env: Mapping[str, str] | None = None,
    prompt: PassphraseSource | None = None,
    notify: Callable[[str], None] | None = None,
) -> Keystore:
    """The keystore for ``mode`` (``auto``, ``keyring`` or ``file``)."""
    if mode == "file":
        return FileKeystore(home, env, prompt)
    if mode == "keyring":
        return KeyringKeystore()
    ok, why = keyring_available()
    if ok:
        return KeyringKeystore()
    if notify is not None:
        notify(f"no usable os keyring ({why}); keeping secret keys in the file keystore under {home.keys_dir}")
    return FileKeystore(home, env, prompt)
