"""Sources: where a home fetches trust bundles and revocation lists from (SPEC "Beyond one machine").

``[[sources]]`` in config.toml, read by :func:`parse_sources`; what was fetched from each (validators
for conditional requests, the last error, the last good copy) is kept in ``sources.toml`` in the home by
:class:`SourceStates`. Freshness is judged from signed time by :func:`staleness`: a source with
``max_age`` is stale when the newest token accepted from its signer has an ``iat`` older than that.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import StoreError, UsageError

__all__ = ["Source", "parse_sources", "SourceStates", "staleness", "KINDS", "DEFAULT_TIMEOUT"]

KINDS = ("trust", "revocations")
DEFAULT_TIMEOUT = 10
MAX_SOURCES = 64
_KEYS = {"kind": str, "url": str, "signer": str, "key": str, "names": list, "roles": list, "max_age": str,
         "refresh": bool, "timeout": str}
_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,31}:[A-Za-z0-9._@*+-]{1,200}")


@dataclass(frozen=True)
class Source:
    """One ``[[sources]]`` entry. ``url`` names it everywhere (messages, state, audit events)."""

    kind: str
    url: str
    signer: str
    key: bytes | None = None  # a did:key pin, decoded
    names: tuple = ()  # patterns such as "agent:*" (trust sources)
    roles: tuple = ()  # the roles it may assign (trust sources)
    max_age: int | None = None
    refresh: bool = False
    timeout: int = DEFAULT_TIMEOUT

    def allows_name(self, name: str) -> bool:
        from fnmatch import fnmatchcase

        return any(fnmatchcase(name, p) for p in self.names)


def parse_sources(items: object, f: Path) -> tuple:
    """The ``[[sources]]`` array of tables; anything unknown or ill-typed is a usage error."""
    from .config import check_table
    from .durations import parse_duration
    from .models import check_role
    from .names import check_name

    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise UsageError(f"'sources' in {f} must be an array of tables ([[sources]])")
    if len(items) > MAX_SOURCES:
        raise UsageError(f"{f} lists {len(items)} sources; at most {MAX_SOURCES}")
    out: list[Source] = []
    for i, t in enumerate(items, 1):
        where = f"source {i} in {f}"
        check_table(t, _KEYS, where)
        for required in ("kind", "url", "signer"):
            if required not in t:
                raise UsageError(f"{where} has no {required!r}")
        kind, url = t["kind"], t["url"]
        if kind not in KINDS:
            raise UsageError(f"bad kind {kind!r} in {where}: use trust or revocations")
        _check_url(url, where)
        try:
            signer = check_name(t["signer"])
            roles = tuple(check_role(r) if isinstance(r, str) else check_role(repr(r)) for r in t.get("roles", []))
            max_age = parse_duration(t["max_age"], what="max_age") if "max_age" in t else None
            timeout = parse_duration(t["timeout"], what="timeout") if "timeout" in t else DEFAULT_TIMEOUT
        except UsageError as e:
            raise UsageError(f"{e.message} in {where}") from None
        names = t.get("names", [])
        if not all(isinstance(n, str) and _PATTERN.fullmatch(n) for n in names):
            raise UsageError(f"'names' of {where} must be name patterns such as \"agent:*\"")
        if kind == "revocations" and ("names" in t or "roles" in t):
            raise UsageError(f"{where} is a revocations source: 'names' and 'roles' belong to trust sources")
        if timeout > 300:
            raise UsageError(f"timeout of {where} is more than 5m")
        key = _pin(t["key"], where) if "key" in t else None
        if any(s.url == url for s in out):
            raise UsageError(f"source {url} is listed twice in {f}")
        out.append(Source(kind, url, signer, key, tuple(names), roles, max_age, t.get("refresh", False), timeout))
    return tuple(out)


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise UsageError(f"bad url {url!r} in {where}: a file:// url names an absolute path (file:///path)")
        return
    if parts.scheme != "https" or not parts.hostname:
        raise UsageError(f"bad url {url!r} in {where}: use https:// or file://", hint="plain http is never fetched: anyone on the path could hold back a revocation")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"bad url in {where}: credentials in a url would be shown in messages; serve the source without them")


def _pin(text: str, where: str) -> bytes:
    from . import crypto
    from .encoding import EncodingError, public_from_did_key

    try:
        return crypto.check_public_key(public_from_did_key(text.strip()))
    except (EncodingError, crypto.InvalidKey) as e:
        raise UsageError(f"bad key in {where}: a did:key pin ({e})") from None


# --- state ----------------------------------------------------------------------------------------

_STATE_KEYS = {"etag": str, "last_modified": str, "error": str, "fetched": int, "sha256": str, "copy": str}


class SourceStates:
    """What was fetched from each source, by url: ``etag``, ``last_modified``, ``error`` (the last fetch
    error, cleared by a good fetch), ``fetched`` (fetch time of the last fetch that changed this state:
    a new copy, new validators or a cleared error; an unchanged source writes nothing; never used for
    freshness),
    ``sha256`` and ``copy`` (the last good copy, a file under ``sources/``)."""

    def __init__(self, home) -> None:
        self.home = home
        self.path = home.path / "sources.toml"

    def load(self) -> dict:
        import tomllib

        try:
            doc = tomllib.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise StoreError(f"damaged store file {self.path}: {getattr(e, 'strerror', None) or e}", hint=_RESTORE) from None
        for url, st in doc.items():
            if not isinstance(st, dict) or not all(isinstance(st.get(k), t) for k, t in _STATE_KEYS.items() if k in st) or set(st) - set(_STATE_KEYS):
                raise StoreError(f"damaged store file {self.path}: bad entry for {url}", hint=_RESTORE)
        return doc

    def get(self, url: str) -> dict:
        return dict(self.load().get(url, {}))

    def put(self, url: str, state: dict) -> None:
        """Replace the state of ``url``. The caller holds the home lock."""
        import tomli_w

        from .home import atomic_write

        doc = self.load()
        doc[url] = {k: v for k, v in state.items() if v is not None}
        self.home.ensure()
        atomic_write(self.path, tomli_w.dumps(doc).encode("utf-8"))

    def copy_path(self, url: str) -> Path:
        """The file of ``url``'s last good copy (it may not exist)."""
        return self.home.path / "sources" / (hashlib.sha256(url.encode("utf-8")).hexdigest()[:32] + ".jwt")

    def keep_copy(self, url: str, token: str) -> str:
        """Write the last good copy of ``url``'s token; returns its file name under ``sources/``."""
        from .home import atomic_write

        path = self.copy_path(url)
        self.home.ensure("sources")
        atomic_write(path, token.encode("ascii") + b"\n")
        return path.name


_RESTORE = "restore it from a backup, or remove it: the next sync fetches every source again"


def newest_iat(home, source: Source) -> int | None:
    """The ``iat`` of the newest token accepted here from ``source``'s signer, of its kind."""
    if source.kind == "trust":
        from .trust_bundles import held_bundles

        held = held_bundles(home).get(source.signer)
        return held["iat"] if held else None
    from .revocation_lists import issued_at

    return issued_at(home, source.signer)


def staleness(home, source: Source, now: float) -> tuple[bool, int | None]:
    """(stale?, newest iat). Only a source with ``max_age`` can be stale; never synced is stale."""
    if source.max_age is None:
        return False, newest_iat(home, source)
    iat = newest_iat(home, source)
    return (iat is None or now - iat > source.max_age), iat


def stale_denial(home, sources, now: float):
    """The denial for the first stale source of ``sources``, naming it, its newest iat and its last
    fetch error; None when every one is fresh."""
    from .clock import rfc3339
    from .errors import VerificationError

    states = None
    for s in sources:
        stale, iat = staleness(home, s, now)
        if not stale:
            continue
        if states is None:
            states = SourceStates(home).load()
        error = states.get(s.url, {}).get("error")
        newest = f"its newest list is from {rfc3339(iat)}" if iat is not None else "nothing was ever accepted from it"
        if s.kind == "trust" and iat is not None:
            newest = f"its newest bundle is from {rfc3339(iat)}"
        detail = f"source {s.url} (signed by {s.signer}) is older than its max_age: {newest}"
        detail += f"; last fetch error: {error}" if error else "; run agentctl sync"
        return VerificationError("stale_trust" if s.kind == "trust" else "stale_revocations", detail)
    return None
