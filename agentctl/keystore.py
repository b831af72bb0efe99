"""Keystores: where secret keys (32-byte Ed25519 seeds) live.

* :class:`KeyringKeystore`: the OS keyring through the ``keyring`` package.
* :class:`FileKeystore`: one 0600 file per key under ``HOME/keys``, sealed with Argon2id + SecretBox
  when a passphrase is given, plain otherwise (like an ssh key with an empty passphrase).
* ``auto``: the keyring when a working backend exists, else the file keystore, saying so once.
* The environment secret ``AGENTCTL_SECRET_KEY`` is consulted before any store (see
  :func:`agentctl.identity.signer_for`).

Every failure is an :class:`~agentctl.errors.Error`: a locked, absent or frozen OS keyring is a
:class:`KeystoreError` (exit 3), never a traceback or a hang.

Every stored value is an exported secret line, so it carries the principal's name and a checksum.
"""

from __future__ import annotations

import os
import sys
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, TypeVar

from .encoding import EncodingError, b64u_decode, b64u_encode
from .errors import Error, KeystoreError, PassphraseError, SecretFormatError, StoreError, UsageError
from .home import Home, atomic_write, check_private_file
from .secret import decode_secret, encode_secret

__all__ = ["Keystore", "FileKeystore", "KeyringKeystore", "open_keystore", "keyring_available", "SERVICE"]

SERVICE = "agentctl"

#: How long one call into the OS keyring may take before agentctl gives up on it. A keyring daemon
#: that is frozen, or waits on an unlock prompt nobody can see, would otherwise hang agentctl for
#: ever. Where a person may be answering an unlock prompt (a desktop), they get longer.
KEYRING_TIMEOUT = 10.0
KEYRING_PROMPT_TIMEOUT = 120.0

#: purpose ("new", "unlock" or "retry" after a wrong answer) and, when it takes one, the key's label
#: ("agent:x (key AbC…)") -> passphrase or None
PassphraseSource = Callable[..., "bytes | None"]


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

    def _from_env(self) -> bytes | None:
        """``AGENTCTL_PASSPHRASE``, or None when it is not set. Set but empty is refused: an empty
        secret in CI (a missing secret expands to nothing) must not mean "store the key unencrypted"."""
        value = self.env.get("AGENTCTL_PASSPHRASE")
        if value is None:
            return None
        if not value:
            raise PassphraseError(
                "AGENTCTL_PASSPHRASE is set but empty",
                hint="give it a passphrase, or unset it (then a terminal asks, and no answer means an unencrypted key file)",
            )
        return value.encode("utf-8")

    def _ask(self, purpose: str, label: str) -> bytes | None:
        if self.prompt is None:
            return None
        try:  # a prompt may take the key's label (the CLI's does) or only the purpose
            import inspect

            takes_label = len(inspect.signature(self.prompt).parameters) >= 2
        except (TypeError, ValueError):
            takes_label = False
        answer = self.prompt(purpose, label) if takes_label else self.prompt(purpose)
        return answer or None

    def _passphrase(self, purpose: str, label: str = "") -> bytes | None:
        env = self._from_env()
        return env if env is not None else self._ask(purpose, label)

    def put(self, principal: str, kid: str, seed: bytes) -> None:
        line = encode_secret(principal, seed)
        passphrase = self._passphrase("new", _label(principal, kid))
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
            text = self._unseal(text, path, _label(principal, kid))
        return _check(principal, text, str(path))

    def _unseal(self, text: str, path, label: str = "") -> str:
        from .crypto import SealParams

        parts = text.split(" ")
        try:
            if len(parts) != 7 or parts[0] != self.SEALED or parts[1] != "argon2id":
                raise ValueError
            sealed: dict[str, Any] = {"kdf": parts[1], "opslimit": int(parts[2]), "memlimit": int(parts[3])}
            for k, v in zip(("salt", "nonce", "ciphertext"), parts[4:]):
                sealed[k] = b64u_decode(v)
            if len(sealed["salt"]) != SealParams.SALT_BYTES or len(sealed["nonce"]) != SealParams.NONCE_BYTES:
                raise ValueError
        except (ValueError, EncodingError):
            raise StoreError(f"damaged key file {path}", hint="restore it from a backup, or rotate the key if you still hold it elsewhere") from None
        from .crypto import unseal

        env = self._from_env()
        tries = 1 if env is not None or self.prompt is None else PASSPHRASE_TRIES
        plain = None
        for attempt in range(tries):
            passphrase = env if env is not None else self._ask("unlock" if not attempt else "retry", label)
            if not passphrase:
                raise PassphraseError(
                    f"key file {path} of {label} is encrypted and no passphrase was given",
                    hint="run on a terminal to be asked, or set AGENTCTL_PASSPHRASE in scripts" if env is None and self.prompt is None else None,
                )
            plain = unseal(passphrase, sealed)
            if plain is not None:
                break
        if plain is None:
            if env is not None:
                raise PassphraseError(f"wrong passphrase for key file {path} of {label}, or the file was altered", hint="check AGENTCTL_PASSPHRASE")
            raise PassphraseError(
                f"wrong passphrase for key file {path} of {label} ({tries} tries), or the file was altered",
                hint=None if tries > 1 else "run on a terminal to be asked",
            )
        try:
            return plain.decode("ascii")
        except UnicodeDecodeError:
            raise StoreError(f"damaged key file {path}") from None

    def delete(self, principal: str, kid: str) -> None:
        try:
            os.unlink(self.path(kid))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise KeystoreError(f"cannot remove key file {self.path(kid)}: {e.strerror or e}") from None


_T = TypeVar("_T")

#: How many times a person at a terminal may answer a key file's passphrase prompt.
PASSPHRASE_TRIES = 3


def _label(principal: str, kid: str) -> str:
    return f"{principal} (key {kid[:12]}…)"

_FILE_HINT = 'use the file keystore: AGENTCTL_KEYSTORE=file or keystore = "file" in config.toml'


def _timeout() -> float:
    desktop = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return KEYRING_PROMPT_TIMEOUT if desktop else KEYRING_TIMEOUT


class _NoAnswer(Exception):
    """A keyring call that did not return in time (it goes on in a daemon thread, abandoned)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")


def _bounded(call: Callable[..., _T], *args: object) -> _T:
    """``call(*args)`` in a daemon thread; its result or its exception, or :class:`_NoAnswer`."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, call(*args)))
        except BaseException as e:  # handed to the caller, whatever it is
            outcome.append((False, e))

    seconds = _timeout()
    worker = threading.Thread(target=run, name="agentctl-keyring", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise _NoAnswer(seconds)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _why(e: BaseException) -> str:
    """One line on why a keyring call failed, with the backend's own words but never a traceback."""
    import keyring.errors

    detail = str(e).splitlines()[0].strip() if str(e).strip() else "no detail"
    if isinstance(e, _NoAnswer):
        return f"the os keyring did not answer ({detail}); it may be frozen or waiting for an unlock prompt"
    if isinstance(e, keyring.errors.KeyringLocked):
        return f"the os keyring is locked and was not unlocked ({detail})"
    if isinstance(e, keyring.errors.NoKeyringError):
        return "no keyring backend is available on this machine"
    if isinstance(e, keyring.errors.InitError):
        return f"the os keyring could not be opened ({detail})"
    return f"{type(e).__name__}: {detail}"


def _keyring_error(action: str, e: BaseException) -> KeystoreError:
    return KeystoreError(f"os keyring failed to {action}: {_why(e)}", hint=f"unlock the os keyring, or {_FILE_HINT}")


class KeyringKeystore(Keystore):
    """The OS keyring. Entries: service ``agentctl``, user ``NAME/KID``, value the exported secret.

    Every call is bounded in time (:data:`KEYRING_TIMEOUT`) and every failure is a
    :class:`KeystoreError`: a backend may raise anything (D-Bus, OS errors) or never answer.
    """

    name = "keyring"

    def __init__(self) -> None:
        ok, why = keyring_available()
        if not ok:
            raise KeystoreError(f"no usable os keyring: {why}", hint=_FILE_HINT)
        import keyring

        self._kr = keyring.get_keyring()

    def put(self, principal: str, kid: str, seed: bytes) -> None:
        try:
            _bounded(self._kr.set_password, SERVICE, f"{principal}/{kid}", encode_secret(principal, seed))
        except Exception as e:
            raise _keyring_error("store a key", e) from None

    def get(self, principal: str, kid: str) -> bytes | None:
        try:
            text = _bounded(self._kr.get_password, SERVICE, f"{principal}/{kid}")
        except Exception as e:
            raise _keyring_error("read a key", e) from None
        if text is None:
            return None
        if not isinstance(text, str):
            raise StoreError(f"damaged secret in os keyring entry {principal}/{kid}: it is not text")
        return _check(principal, text, f"os keyring entry {principal}/{kid}")

    def delete(self, principal: str, kid: str) -> None:
        import keyring.errors

        try:
            _bounded(self._kr.delete_password, SERVICE, f"{principal}/{kid}")
        except keyring.errors.PasswordDeleteError:
            pass  # not there: nothing to remove
        except Exception as e:
            raise _keyring_error("delete a key", e) from None


_availability: tuple[bool, str] | None = None


def keyring_available() -> tuple[bool, str]:
    """Whether the ``keyring`` package has a working backend here, and if not, why.

    Working means: a real OS keyring (not keyring's ``fail`` or ``null`` one, nor a chainer with nothing
    to chain, nor anything that keeps secrets in a plain or merely encoded file, such as every backend
    of ``keyrings.alt``; a chainer is refused when any backend in it is such) that answers a read in
    time. A locked Secret Service is asked to unlock here, so a
    keyring that stays locked counts as not working. The answer is kept for the process.
    """
    global _availability
    if _availability is not None:
        return _availability
    try:
        import keyring
        from keyring.backends import fail

        kr = _bounded(keyring.get_keyring)
        backends = getattr(kr, "backends", None)
        unsafe = [why for why in map(_not_an_os_keyring, backends if isinstance(backends, (list, tuple)) else [kr]) if why]
        if isinstance(kr, fail.Keyring) or (isinstance(backends, (list, tuple)) and not backends):
            _availability = (False, "no keyring backend is available on this machine")
        elif unsafe:
            _availability = (False, unsafe[0])
        else:
            _bounded(kr.get_password, SERVICE, "agentctl-probe")  # a locked or absent service fails here
            _availability = (True, type(kr).__name__)
    except Exception as e:  # any backend failure means "not usable"
        _availability = (False, _why(e))
    return _availability


def _not_an_os_keyring(backend: object) -> str | None:
    """Why a keyring backend is no OS keyring (it stores nothing, or keeps secrets in a plain or merely
    encoded file), or None. Such a backend is never used: the file keystore is the honest choice there."""
    cls = type(backend)
    module, name = cls.__module__, cls.__name__
    label = f"{module}.{name}"
    if module.startswith("keyring.backends.fail"):
        return "no keyring backend is available on this machine"
    if module.startswith("keyring.backends.null"):
        return "the keyring backend is the null backend, which stores nothing"
    if module == "keyrings.alt" or module.startswith("keyrings.alt."):
        return f"the keyring backend {label} (keyrings.alt) keeps secrets in a file, it is no os keyring"
    if getattr(backend, "file_path", None) or getattr(cls, "filename", None):
        return f"the keyring backend {label} keeps secrets in a file, it is no os keyring"
    return None


def open_keystore(
    mode: str,
    home: Home,
    env: Mapping[str, str] | None = None,
    prompt: PassphraseSource | None = None,
    notify: Callable[[str], None] | None = None,
) -> Keystore:
    """The keystore for ``mode`` (``auto``, ``keyring`` or ``file``).

    ``auto`` picks the OS keyring when :func:`keyring_available`, else the file keystore, and then
    tells ``notify`` once, with the reason.
    """
    if mode not in ("auto", "keyring", "file"):
        raise UsageError(f"bad keystore {mode!r}: use one of auto, keyring, file")
    if mode == "file":
        return FileKeystore(home, env, prompt)
    if mode == "keyring":
        return KeyringKeystore()
    ok, why = keyring_available()
    if ok:
        return KeyringKeystore()
    marker = home.path / ".file-keystore-noted"  # say it once per home, not on every command
    if notify is not None and not marker.exists():
        notify(f"no usable os keyring ({why}); keeping secret keys in the file keystore under {home.keys_dir}")
        try:
            home.ensure()
            marker.touch(mode=0o600)
        except (OSError, Error):  # a notice that repeats is no failure
            pass
    return FileKeystore(home, env, prompt)
