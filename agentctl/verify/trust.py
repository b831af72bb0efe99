"""What a verifier trusts: principals and their keys, revocations, and each principal's authority.

A home is one implementation (:class:`StoreTrust`); code gives another (:class:`StaticTrust`). Every
key lookup goes through :func:`key_for`, which applies the retirement rule once for all callers.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from typing import Iterable, Mapping

from ..clock import rfc3339
from ..errors import VerificationError
from ..frozen import dataclass
from ..home import Role
from ..models import Key, Principal, Revocations

__all__ = ["Trust", "StoreTrust", "StaticTrust", "Authority", "Role", "key_for", "document_signer", "QUICK_START", "ROLES"]

QUICK_START = "quick-start"
ROLES = "roles"
_OWN_AUTHORITY_KINDS = ("user", "service")  # quick-start: who may act as a root on its own


@dataclass(frozen=True)
class Authority:
    """What a principal may authorize on its own, as a root, and the rule that says so (named in
    every step-8 denial)."""

    scopes: tuple  # of agentctl.scopes.Scope; empty: none
    rule: str
    everything: bool = False  # authority for every scope (quick-start): nothing to compare

    def covers(self, scopes) -> tuple | None:
        """None when every one of ``scopes`` is within this authority, else (scope, action, resource)."""
        if self.everything:
            return None
        from ..scope_cover import uncovered

        return uncovered(scopes, self.scopes)

    def allows(self, action: str, resource: str):
        from ..scopes import allowed

        if self.everything:
            return self.scopes[0]
        return allowed(self.scopes, action, resource) if self.scopes else None


_EVERYTHING: tuple = ()


def _everything() -> tuple:
    global _EVERYTHING
    if not _EVERYTHING:
        from ..scopes import parse_scopes

        _EVERYTHING = parse_scopes(["*"])
    return _EVERYTHING


def key_for(trust: "Trust", name: str, kid: str, signed_at: float | None = None) -> Key:
    """The key ``kid`` of principal ``name`` as it may verify something signed at ``signed_at``:
    ``untrusted_root`` for an unknown principal, ``unknown_key`` for a key it never had, and
    ``bad_signature`` for a key retired before ``signed_at`` (a retired key verifies only what it
    signed before it was retired)."""
    principal = trust.principal(name)
    if principal is None:
        raise VerificationError("untrusted_root", f"{name} is not a local or imported principal")
    key = _keys_by_kid(principal).get(kid)
    if key is None:
        raise VerificationError("unknown_key", f"key {kid} is not a key of {name}")
    if signed_at is not None and key.status == "retired" and signed_at > key.retired:
        raise VerificationError("bad_signature", f"signed by key {kid} of {name} after it was retired at {rfc3339(key.retired)}")
    return key


def _keys_by_kid(principal: Principal) -> dict:
    """A principal's keys by kid, computed once per (immutable) Principal: a kid is a hash."""
    index = principal.__dict__.get("_by_kid")
    if index is None:
        index = {k.kid: k for k in principal.keys}
        object.__setattr__(principal, "_by_kid", index)
    return index


class Trust(ABC):
    """What a verifier trusts: principals by name, what is revoked, and each principal's authority."""

    require_known_agents: bool = False

    @abstractmethod
    def principal(self, name: str) -> Principal | None: ...

    @abstractmethod
    def revocations(self) -> Revocations: ...

    def authority(self, name: str) -> Authority:
        """What ``name`` may authorize as a root (SPEC, "Authority and roles"). By default: nothing."""
        return Authority((), "no authority is defined for this trust")

    def may_revoke(self, name: str) -> bool:
        """Whether a revocation list signed by ``name`` is accepted (SPEC "Who may revoke"). By default:
        any principal of this trust (a trust given in code names only those it means)."""
        return self.principal(name) is not None

    def stale(self, now: float) -> VerificationError | None:
        """The denial for a stale source (``stale_revocations``, ``stale_trust``), or None. By default
        a trust has no sources."""
        return None

    def changed(self) -> bool:
        """Whether what this trust holds may have changed since the last call (a verifier then forgets
        what it memoized about tokens). By default never: a trust given in code does not change."""
        return False


def _kind(name: str) -> str:
    return name.partition(":")[0]


def _role_authority(name: str, held: Iterable[str], roles: Mapping[str, Role]) -> Authority:
    agentlike = _kind(name) not in _OWN_AUTHORITY_KINDS
    scopes: dict = {}
    used, skipped = [], []
    for r in held:
        role = roles.get(r)
        if role is None:
            continue
        if agentlike and not role.agents:
            skipped.append(r)
            continue
        used.append(r)
        for s in role.scopes:
            scopes[s] = None
    if used:
        rule = f"authority = roles; {name} holds role(s) {', '.join(used)}"
    else:
        rule = f"authority = roles; {name} holds no defined role that confers authority"
    if skipped:
        rule += f" (role(s) {', '.join(skipped)} lack agents = true)"
    return Authority(tuple(scopes), rule)


def _quick_start_authority(principal: Principal | None, name: str, local_only: bool) -> Authority:
    if principal is None:
        return Authority((), f"authority = quick-start; {name} is not known here")
    kind = _kind(name)
    if kind not in _OWN_AUTHORITY_KINDS:
        return Authority((), f"authority = quick-start: {kind}: principals have no authority of their own")
    if local_only and principal.origin != "local":
        return Authority((), f"authority = quick-start: {name} was imported, and only principals created here by keygen have authority")
    return Authority(_everything(), f"authority = quick-start: {name} was created here", everything=True)


_REVOCATION_FILE = "revocations.db"  # agentctl.revocation_store.FILE, without importing sqlite3 for it
_RACY_NS = 50_000_000  # a write this recent may share its timestamp with the next one (coarse kernel clocks)
_RACY_COARSE_NS = 2_100_000_000  # ... on a file system that keeps whole seconds (FAT: two)


def _stat(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:  # absent (no principal yet, no config): a state of its own
        return ()
    return (st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_ino)


def _exists(path: str) -> bool:
    """Whether ``path`` exists: one ``os.stat`` of a str made once (no pathlib on the way)."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _racy(stamp: tuple, now_ns: int) -> bool:
    """Whether a write after ``stamp`` was taken could leave it unchanged: a timestamp within a clock
    tick of now (or in the future). Such a stamp is not trusted; the next check reads again."""
    for st in stamp:
        if st:
            ctime = st[0]
            if now_ns - ctime < (_RACY_COARSE_NS if ctime % 1_000_000_000 == 0 else _RACY_NS):
                return True
    return False


class StoreTrust(Trust):
    """The principals, revocations and authority of a home, each read once and kept until the home's
    trust changes: :meth:`changed` (asked by the verifier at every check) compares the stat of the
    principals directory and of config.toml with the last one seen, and on a change forgets what it
    read (the config too, unless it was given here)."""

    def __init__(self, store, config=None, *, refresh: bool = False, fetcher=None) -> None:
        self.store = store
        self._config = config
        self._given_config = config is not None
        home = store.home
        self._watched = (os.fspath(home.principals_dir), os.fspath(home.config_file))
        self._revocation_file = os.path.join(os.fspath(home.path), _REVOCATION_FILE)  # made once: stat'ed per check
        self._stamp: tuple | None = None  # the trust state last read; None: read again at the next check
        self._reread = False  # the config as on disk now, not as the home loaded it before
        self._principals: dict[str, Principal | None] = {}
        self._revocations: Revocations | None = None
        self._authority: dict[str, Authority] = {}
        self._refresh = refresh  # a verifier's trust: fetch a stale source with refresh = true, once
        self._fetcher = fetcher

    @property
    def config(self):
        if self._config is None:
            if not self._reread:  # never checked: the home's config as it loaded it
                self._config = self.store.home.config
            else:
                from ..config import load_config

                home = self.store.home
                self._config = load_config(home.config_file, home.env)
        return self._config

    def changed(self) -> bool:
        """True when what this trust read differs from the home now: the principals it looked up (or
        found absent) and the config (unless given). Costs a few stats while the principals directory
        and config.toml keep their stat; when either changes (or was written too recently to tell from
        a next write), what was read is read again and compared, so that a write that changes nothing
        read here (another principal created, a file rewritten as it was) keeps what was memoized."""
        principals, config_file = self._watched
        stamp = (_stat(principals), _stat(config_file))
        if stamp == self._stamp:
            return False
        config = self._config
        same = True
        if not self._given_config:
            from ..config import load_config

            home = self.store.home
            self._reread = True
            fresh = load_config(home.config_file, home.env)
            same = config is None or fresh == config
            self._config = fresh
        if same:
            store = self.store
            same = all(store.get(name) == p for name, p in list(self._principals.items()))
        # taken once all is read (a file that fails to read is read again at the next check)
        self._stamp = None if _racy(stamp, time.time_ns()) else stamp
        if same:
            return False
        self._principals.clear()
        self._authority.clear()
        return True

    @property
    def require_known_agents(self) -> bool:  # type: ignore[override]
        return self.config.require_known_agents

    def principal(self, name: str) -> Principal | None:
        if name not in self._principals:
            self._principals[name] = self.store.get(name)
        return self._principals[name]

    def revocations(self) -> Revocations:
        """The home's indexed store: each check looks up the ids it names (never iterate ``entries``)."""
        revs = self._revocations
        if revs is None or (type(revs) is Revocations and _exists(self._revocation_file)):
            # none held yet: a store created since (the first revoke) is seen at the next check
            revs = self._revocations = self.store.revocations()
        return revs

    def may_revoke(self, name: str) -> bool:
        config = self.config
        if any(s.kind == "revocations" and s.signer == name for s in config.sources):
            return True
        p = self.principal(name)
        roles = dict(config.roles)
        return p is not None and any(roles[r].revoke for r in p.roles if r in roles)

    def stale(self, now: float) -> VerificationError | None:
        sources = [s for s in self.config.sources if s.max_age is not None]
        if not sources:
            return None
        from ..sources import stale_denial

        denial = stale_denial(self.store.home, sources, now)
        if denial is not None and self._refresh:
            self._refresh = False
            from ..sync import refresh_stale

            if refresh_stale(self.store.home, [s for s in sources if s.refresh], now, self._fetcher):
                self._principals.clear()
                self._revocations = None
                self._authority.clear()
                denial = stale_denial(self.store.home, sources, now)
        return denial

    def authority(self, name: str) -> Authority:
        a = self._authority.get(name)
        if a is None:
            config = self.config
            p = self.principal(name)
            if config.authority == ROLES:
                a = _role_authority(name, p.roles if p is not None else (), dict(config.roles))
            else:
                a = _quick_start_authority(p, name, local_only=True)
            self._authority[name] = a
        return a


class StaticTrust(Trust):
    """Trust given in code::

        StaticTrust({"user:alice": public_key_bytes_or_Principal}, revocations)

    Authority, by the first that applies:

    - ``authority={"user:alice": ["pull_request.*:acme/*"], ...}``: each principal's scopes, given
      directly (a name not listed has none);
    - ``roles={"engineer": Role("engineer", parse_scopes([...]))}``: the ``authority = "roles"`` rule
      over each Principal's ``roles``;
    - neither: the quick-start rule, where the ``user:`` and ``service:`` principals given here have
      authority for every scope and ``agent:``/``host:`` principals none.
    """

    def __init__(
        self,
        principals: Mapping[str, "Principal | bytes"],
        revocations: Revocations | None = None,
        *,
        authority: Mapping[str, Iterable[str]] | None = None,
        roles: Mapping[str, Role] | None = None,
        require_known_agents: bool = False,
        revokers: Iterable[str] | None = None,
    ) -> None:
        from .. import crypto
        from ..scopes import parse_scopes

        self._principals: dict[str, Principal] = {}
        for name, value in principals.items():
            if isinstance(value, (bytes, bytearray)):
                value = Principal(name=name, origin="imported", created=0.0, keys=(Key(crypto.check_public_key(bytes(value)), 0.0),))
            self._principals[name] = value
        self._revocations = revocations or Revocations()
        self._given = None if authority is None else {n: Authority(parse_scopes(list(s)) if list(s) else (), f"authority given in code to {n}") for n, s in authority.items()}
        self._roles = dict(roles) if roles is not None else None
        self._authority: dict[str, Authority] = {}
        self.require_known_agents = require_known_agents
        self._revokers = None if revokers is None else frozenset(revokers)

    def may_revoke(self, name: str) -> bool:
        """``revokers`` when given; else, with ``roles``, a role carrying ``revoke = True``; else any
        principal given here."""
        if self._revokers is not None:
            return name in self._revokers
        p = self._principals.get(name)
        if p is not None and self._roles is not None:
            return any(self._roles[r].revoke for r in p.roles if r in self._roles)
        return p is not None

    def principal(self, name: str) -> Principal | None:
        return self._principals.get(name)

    def revocations(self) -> Revocations:
        return self._revocations

    def authority(self, name: str) -> Authority:
        a = self._authority.get(name)
        if a is None:
            p = self._principals.get(name)
            if self._given is not None:
                a = self._given.get(name) or Authority((), f"no authority is given in code to {name}")
            elif self._roles is not None:
                a = _role_authority(name, p.roles if p is not None else (), self._roles)
            else:
                a = _quick_start_authority(p, name, local_only=False)
            if len(self._authority) < 4096:
                self._authority[name] = a
        return a


def document_signer(t, trust: "Trust", iss: str, what: str, *, may_sign=None) -> str:
    """Check that a signed document (a revocation list, a trust bundle) is signed by ``iss``, a principal
    trusted here, with a current (never a retired), unrevoked key of it; ``may_sign(iss)`` may refuse
    the signer with a reason. Returns the SHA-256 (hex) of the signed claims, which tells two
    documents of one version apart."""
    import hashlib

    principal = trust.principal(iss)
    if principal is None:
        raise VerificationError("untrusted_root", f"the {what} is signed by {iss}, who is not trusted here")
    refusal = may_sign(iss) if may_sign is not None else None
    if refusal:
        raise VerificationError("untrusted_root", refusal)
    key = principal.key(t.kid)
    if key is None:
        raise VerificationError("unknown_key", f"key {t.kid} is not a key of {iss}")
    if key.status == "retired":
        raise VerificationError("bad_signature", f"the {what} is signed by key {t.kid} of {iss}, which is retired: "
                                f"a retired key signs no {what.split()[-1]}")
    if not t.verifies_with(key.public):
        raise VerificationError("bad_signature", f"the {what}'s signature does not verify")
    held = trust.revocations()
    if held.principal(iss) or held.key(t.kid):
        raise VerificationError("revoked", f"the signer of the {what}, {iss}, or its key is revoked")
    return hashlib.sha256(t.signing_input.split(b".")[1]).hexdigest()
