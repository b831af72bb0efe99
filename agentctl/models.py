"""Values: principals, their keys and revocations, as frozen dataclasses that validate on construction."""

from __future__ import annotations

import re

from .encoding import thumbprint
from .errors import UsageError
from .frozen import dataclass, field
from .names import check_name

__all__ = ["Key", "Principal", "Revocation", "Revocations", "check_role", "check_attr", "check_jti"]

KEY_STATES = ("current", "retired")
ORIGINS = ("local", "imported")
_ROLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ATTR_KEY = re.compile(r"[a-z0-9_][a-z0-9._-]{0,63}")
_JTI = re.compile(r"[A-Za-z0-9_-]{16,128}")
_KID = re.compile(r"[A-Za-z0-9_-]{43}")


def check_role(role: str) -> str:
    if not _ROLE.fullmatch(role):
        raise UsageError(f"bad role {role!r}: use lower-case [a-z0-9][a-z0-9._-]*, at most 64 characters")
    return role


def check_attr(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not _ATTR_KEY.fullmatch(key):
        raise UsageError(f"bad attribute {text!r}: use KEY=VALUE with a lower-case key")
    if len(value) > 256 or not value.isprintable():
        raise UsageError(f"bad attribute {key!r}: the value must be printable and at most 256 characters")
    return key, value


def check_jti(jti: str) -> str:
    if not isinstance(jti, str) or not _JTI.fullmatch(jti):
        raise UsageError(f"bad grant id {jti!r}: a jti is 16 to 128 base64url characters")
    return jti


def check_kid(kid: str) -> str:
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise UsageError(f"bad key id {kid!r}: a kid is 43 base64url characters")
    return kid


@dataclass(frozen=True)
class Key:
    """One Ed25519 public key of a principal. ``retired`` is when it stopped being current."""

    public: bytes = field(repr=False)
    created: float
    status: str = "current"
    retired: float | None = None

    def __post_init__(self) -> None:
        if len(self.public) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        if self.status not in KEY_STATES:
            raise ValueError(f"bad key status {self.status!r}")
        if (self.status == "retired") != (self.retired is not None):
            raise ValueError("a retired key has a retirement time, and only it")

    @property
    def kid(self) -> str:  # a hash: computed once per key
        kid = self.__dict__.get("_kid")
        if kid is None:
            kid = thumbprint(self.public)
            object.__setattr__(self, "_kid", kid)
        return kid


@dataclass(frozen=True)
class Principal:
    name: str
    origin: str
    created: float
    keys: tuple[Key, ...]
    roles: tuple[str, ...] = ()
    attrs: tuple[tuple[str, str], ...] = ()
    keystore: str | None = None  # where the current key's secret lives, when this machine holds it

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.origin not in ORIGINS:
            raise ValueError(f"bad origin {self.origin!r}")
        if sum(k.status == "current" for k in self.keys) != 1:
            raise ValueError("a principal has exactly one current key")
        for r in self.roles:
            check_role(r)
        if len({k.kid for k in self.keys}) != len(self.keys):
            raise ValueError("a key appears twice")

    @property
    def current(self) -> Key:
        return next(k for k in self.keys if k.status == "current")

    def key(self, kid: str) -> Key | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def rotated(self, new_public: bytes, at: float, keystore: str | None) -> "Principal":
        from dataclasses import replace  # not on the cold verify path

        keys = tuple(replace(k, status="retired", retired=at) if k.status == "current" else k for k in self.keys)
        return replace(self, keys=keys + (Key(new_public, at),), keystore=keystore)


@dataclass(frozen=True)
class Revocation:
    kind: str  # "principal" | "key" | "grant"
    id: str
    at: float
    reason: str = ""
    exp: int | None = None  # a revoked grant's expiry, when known: after it (plus the leeway) it can never verify


@dataclass(frozen=True)
class Revocations:
    """Everything revoked, by principal name, key id and grant id. Revocation is permanent."""

    entries: tuple[Revocation, ...] = ()
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for r in self.entries:
            self._index.setdefault((r.kind, r.id), r)

    def find(self, kind: str, ident: str) -> Revocation | None:
        return self._index.get((kind, ident))

    def principal(self, name: str) -> Revocation | None:
        return self.find("principal", name)

    def key(self, kid: str) -> Revocation | None:
        return self.find("key", kid)

    def grant(self, jti: str) -> Revocation | None:
        return self.find("grant", jti)

    def adding(self, entry: Revocation) -> "Revocations":
        return self if self.find(entry.kind, entry.id) else Revocations(self.entries + (entry,))
