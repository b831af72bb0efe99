"""The file store: principals as TOML files in the home, revocations in an indexed store beside them.

Readers never lock (files are replaced atomically); writers hold :meth:`Home.lock`. A file that does not
parse or does not describe a valid record is a :class:`StoreError` naming the file; it is never
replaced silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .encoding import EncodingError, b64u_decode, b64u_encode
from .errors import NotFoundError, StoreError, UsageError
from .home import Home, atomic_write
from .models import Key, Principal, Revocation, Revocations
from .names import check_name, file_stem, is_name
from .toml_subset import Instant

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["Store"]


def _dt(ts: float) -> datetime:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(round(ts, 6), tz=timezone.utc)


def _ts(value: object) -> float:
    if isinstance(value, Instant):  # read by toml_subset: always with an offset, seconds as datetime gives them
        return value.ts
    from datetime import datetime

    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError("expected a time with an offset")
    return value.timestamp()


def _principal_doc(p: Principal) -> dict:
    doc: dict = {"name": p.name, "origin": p.origin, "created": _dt(p.created), "roles": list(p.roles)}
    if p.keystore:
        doc["keystore"] = p.keystore
    doc["attrs"] = dict(p.attrs)
    keys = []
    for k in p.keys:
        kd = {"kid": k.kid, "public": b64u_encode(k.public), "created": _dt(k.created), "status": k.status}
        if k.retired is not None:
            kd["retired"] = _dt(k.retired)
        keys.append(kd)
    doc["keys"] = keys
    return doc


def _principal_from(doc: dict) -> Principal:
    keys = []
    for kd in doc["keys"]:
        public = b64u_decode(kd["public"])
        key = Key(public, _ts(kd["created"]), kd["status"], _ts(kd["retired"]) if "retired" in kd else None)
        if key.kid != kd["kid"]:
            raise ValueError(f"key id {kd['kid']} does not match its public key")
        keys.append(key)
    attrs = doc.get("attrs", {})
    if not all(isinstance(v, str) for v in attrs.values()):
        raise ValueError("attribute values are strings")
    return Principal(
        name=doc["name"],
        origin=doc["origin"],
        created=_ts(doc["created"]),
        keys=tuple(keys),
        roles=tuple(doc.get("roles", ())),
        attrs=tuple(sorted(attrs.items())),
        keystore=doc.get("keystore"),
    )


def read_toml(path: Path, *, instants: bool = False) -> dict | None:
    """A store file's TOML (None when there is none); unreadable or damaged: a StoreError naming it.
    Date-times are :class:`datetime.datetime`, or with ``instants`` :class:`~agentctl.toml_subset.Instant`
    where the subset reader read them (the caller takes either)."""
    from . import toml_subset

    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return toml_subset.loads(text, instants=instants)
    except toml_subset.TOMLDecodeError as e:
        raise StoreError(f"damaged store file {path}: invalid TOML ({e})", hint="restore it from a backup; agentctl never rewrites a damaged file") from None


class Store:
    def __init__(self, home: Home) -> None:
        self.home = home

    # --- principals -------------------------------------------------------------------------
    def principal_path(self, name: str) -> Path:
        return self.home.principals_dir / f"{file_stem(name)}.toml"

    def get(self, name: str) -> Principal | None:
        path = self.principal_path(name)
        doc = read_toml(path, instants=True)
        if doc is None:
            return None
        try:
            p = _principal_from(doc)
        except (KeyError, TypeError, ValueError, EncodingError, AttributeError) as e:
            raise StoreError(f"damaged store file {path}: {e}", hint="restore it from a backup; agentctl never rewrites a damaged file") from None
        except UsageError as e:  # a bad name or role inside the file: the file is damaged, not the input
            raise StoreError(f"damaged store file {path}: {e.message}", hint="restore it from a backup; agentctl never rewrites a damaged file") from None
        if p.name != name:
            raise StoreError(f"damaged store file {path}: it describes {p.name!r}, not {name!r}")
        return p

    def require(self, name: str) -> Principal:
        check_name(name)
        p = self.get(name)
        if p is None:
            raise NotFoundError(f"no principal {name!r} in {self.home.path}", hint="see 'agentctl list', or create it with 'agentctl keygen'")
        return p

    def names(self) -> list[str]:
        d = self.home.principals_dir
        try:
            files = sorted(os.listdir(d))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot read {d}: {e.strerror or e}") from None
        names = []
        for f in files:
            if f.endswith(".toml") and not f.startswith("."):
                name = f[: -len(".toml")].replace("+", ":")
                if not is_name(name):
                    raise StoreError(f"unexpected file {d / f}: its name is not a principal name", hint="move it out of the principals directory")
                names.append(name)
        return names

    def all(self) -> list[Principal]:
        out = []
        for n in self.names():
            p = self.get(n)
            if p is not None:
                out.append(p)
        return out

    def put(self, p: Principal) -> None:
        """Write a principal record. The caller holds the home lock."""
        import tomli_w

        self.home.ensure("principals")
        atomic_write(self.principal_path(p.name), tomli_w.dumps(_principal_doc(p)).encode("utf-8"))

    def delete(self, name: str) -> None:
        """Remove a principal record (undoing a creation). The caller holds the home lock."""
        try:
            os.unlink(self.principal_path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StoreError(f"cannot remove {self.principal_path(name)}: {e.strerror or e}") from None

    def saved(self, path: Path) -> bytes | None:
        """A file's bytes (None when it does not exist), to put back with :meth:`restore`."""
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read {path}: {e.strerror or e}") from None

    def restore(self, path: Path, data: bytes | None) -> None:
        """Put a file back as :meth:`saved` found it (undoing a change). The caller holds the lock."""
        if data is not None:
            atomic_write(path, data)
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StoreError(f"cannot remove {path}: {e.strerror or e}") from None

    def find_key(self, kid: str) -> tuple[Principal, Key] | None:
        for p in self.all():
            k = p.key(kid)
            if k is not None:
                return p, k
        return None

    # --- revocations ------------------------------------------------------------------------
    def revocations(self) -> Revocations:
        """What is revoked here, looked up one id at a time in the home's indexed store
        (:mod:`agentctl.revocation_store`); nothing is loaded whole."""
        from .revocation_store import RevocationStore

        return RevocationStore(self.home).view()

    def add_revocations(self, entries: Iterable[Revocation]) -> list[Revocation]:
        """Add revocations in one transaction; returns those that were new. The caller holds the home
        lock; undo with :meth:`remove_revocations` (only to undo: revocations are permanent)."""
        from .revocation_store import RevocationStore

        return RevocationStore(self.home).add(entries)

    def revoking(self):
        """A change to the revocations (:meth:`RevocationStore.change`): ``with store.revoking() as c:
        c.add(entries)`` commits when the block ends and rolls back when it raises. The caller holds the
        home lock."""
        from .revocation_store import RevocationStore

        return RevocationStore(self.home).change()

    def remove_revocations(self, added: Iterable[Revocation]) -> None:
        """Undo :meth:`add_revocations` (its audit event could not be recorded). The caller holds the lock."""
        from .revocation_store import RevocationStore

        RevocationStore(self.home).remove(added)
