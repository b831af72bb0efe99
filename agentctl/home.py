"""The home directory: where it is, its settings, and the lock that serializes writers.

Resolution: an explicit ``--home``, else ``AGENTCTL_HOME``, else platformdirs' user data dir. The home
and every directory agentctl creates in it are 0700; every file 0600. Writes go through
:func:`atomic_write` (temporary file, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from .errors import OperationalError, StoreError, UsageError

if TYPE_CHECKING:
    from .approvals import ApprovalRules

__all__ = ["Home", "Config", "Role", "atomic_write", "KEYSTORE_MODES", "AUTHORITY_RULES"]

KEYSTORE_MODES = ("auto", "keyring", "file")
AUTHORITY_RULES = ("quick-start", "roles")
MAX_CONFIG_LEEWAY = 600  # the largest leeway any verifier may allow (SPEC: --leeway <= 10m)
#: What a new home's config.toml says (SPEC "Authority and roles": a new home is created with quick-start).
NEW_CONFIG = (
    "# agentctl settings. Who may authorize on its own authority (docs/delegation.md):\n"
    "#   quick-start: user: and service: principals made here by keygen; roles: the scopes of [roles.NAME]\n"
    'authority = "quick-start"\n'
)


@dataclass(frozen=True)
class Role:
    """A defined role (``[roles.NAME]`` in config.toml): the scopes it confers, whether ``agent:`` and
    ``host:`` principals may hold its authority (``agents = true``), and whether it may revoke."""

    name: str
    scopes: tuple = ()
    agents: bool = False
    revoke: bool = False


@dataclass(frozen=True)
class Config:
    keystore: str = "auto"
    max_ttl: int = 86400
    audit: bool = True
    leeway: int = 60
    checkpoint_every: int = 1000
    authority: str = "quick-start"  # SPEC "Authority and roles": a config without the key means quick-start
    roles: tuple = ()  # (name, Role) pairs, in the order of config.toml
    require_known_agents: bool = False
    ship_max_lag: int = 3600
    policy_files: tuple = ()  # [policy] files: one set, paths relative to the home
    policy_query: str = "data.agent.authz.allow"  # [policy] query
    policy_timeout: float = 1.0  # [policy] timeout, seconds
    sources: tuple = ()  # agentctl.sources.Source, in the order of config.toml ([[sources]])
    audience: str | None = None  # this verifier's audience (required with [approvals])
    approvals: "ApprovalRules | None" = None  # [approvals], or None

    def role(self, name: str) -> Role | None:
        return dict(self.roles).get(name)


_CONFIG_TYPES = {"keystore": str, "max_ttl": str, "audit": bool, "leeway": str, "checkpoint_every": int,
                 "authority": str, "require_known_agents": bool, "roles": dict, "sources": list, "audience": str,
                 "approvals": dict}
_ROLE_TYPES = {"scopes": list, "agents": bool, "revoke": bool}
_POLICY_KEYS = ("files", "query", "timeout")


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half."""
    directory = path.parent
    tmp = directory / f".{path.name}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OperationalError(f"cannot write {path}: {e.strerror or e}") from None


class Home:
    """One agentctl home. Cheap to construct; touches the disk only when asked."""

    def __init__(self, path: Path | str, env: Mapping[str, str] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.env = os.environ if env is None else env
        self._config: Config | None = None

    @classmethod
    def resolve(cls, explicit: str | None = None, env: Mapping[str, str] | None = None) -> "Home":
        env = os.environ if env is None else env
        if explicit is not None:
            if not explicit.strip():
                raise UsageError("home is empty", hint="give a directory, or leave home out", param="home")
            return cls(explicit, env)._checked()
        if env.get("AGENTCTL_HOME"):
            return cls(env["AGENTCTL_HOME"], env)._checked()
        import platformdirs  # only when no home was named: it costs start-up time

        return cls(platformdirs.user_data_dir("agentctl", appauthor=False), env)._checked()

    def _checked(self) -> "Home":
        """Refuse a home that is a file, or that could never be made because a parent is a file, before
        any command reads it as empty or reports a confusing error about a file inside it."""
        p = self.path
        while True:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                if p.parent == p:
                    return self
                p = p.parent
                continue
            except NotADirectoryError:  # a parent further up is a file: find it
                p = p.parent
                continue
            except ValueError:
                raise UsageError(f"bad home {str(self.path)!r}: it holds a NUL character") from None
            except OSError as e:
                if e.errno == errno.ENAMETOOLONG:
                    raise UsageError(f"bad home {self.path}: {e.strerror}") from None
                raise OperationalError(f"cannot use home {self.path}: {p}: {e.strerror or e}") from None
            if stat.S_ISDIR(st.st_mode):
                if p == self.path:
                    self.check_safe()
                return self
            if p == self.path:
                raise UsageError(f"home {self.path} is not a directory")
            raise UsageError(f"home {self.path} cannot be a directory: {p} is a file")

    def __repr__(self) -> str:
        return f"Home({str(self.path)!r})"

    def check_safe(self) -> None:
        """Refuse a home (or its store) that another user owns or that group or others may write, as
        ssh refuses such a ``~/.ssh``: whoever can write there can swap a trusted key."""
        me = _euid()
        if me is None:
            return
        for p in (self.path, self.principals_dir, self.keys_dir, self.revocations_file, self.config_file,
                  self.path / "revocation-lists.toml", self.path / "trust-bundles.toml", self.path / "sources.toml"):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise OperationalError(f"cannot use home {self.path}: {p}: {e.strerror or e}") from None
            if stat.S_ISLNK(st.st_mode) and p != self.path:
                raise OperationalError(f"refusing home {self.path}: {p} is a symbolic link", hint=f"replace {p} by a real file or directory")
            if st.st_uid != me:
                raise OperationalError(
                    f"refusing home {self.path}: {p} is owned by uid {st.st_uid}, not by you (uid {me})",
                    hint=f"use a home of your own, or, if it is yours: chown -R {me} {self.path}",
                )
            if stat.S_IMODE(st.st_mode) & 0o022:
                mode = stat.S_IMODE(st.st_mode)
                fix = "chmod 700" if stat.S_ISDIR(st.st_mode) else "chmod 600"
                raise OperationalError(
                    f"refusing home {self.path}: {p} is writable by group or others (mode {mode:04o})",
                    hint=f"run: {fix} {p}",
                )

    # --- layout -----------------------------------------------------------------------------
    @property
    def principals_dir(self) -> Path:
        return self.path / "principals"

    @property
    def keys_dir(self) -> Path:
        return self.path / "keys"

    @property
    def config_file(self) -> Path:
        return self.path / "config.toml"

    @property
    def revocations_file(self) -> Path:
        return self.path / "revocations.toml"

    def ensure(self, *subdirs: str) -> Path:
        """Create the home (0700) and the named subdirectories (0700) if missing. A home created here
        gets a config.toml that names its authority rule (SPEC: a new home is created with
        quick-start); an existing config is never touched."""
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"home {self.path} is not a directory")
        try:
            for d in (self.path, *(self.path / sub for sub in subdirs)):
                if not d.exists():
                    try:
                        d.mkdir(mode=0o700, parents=True)
                    except FileExistsError:  # another process made it meanwhile
                        continue
                    os.chmod(d, 0o700)
                    if d == self.path:
                        self._write_new_config()
        except OSError as e:
            raise OperationalError(f"cannot create {self.path}: {e.strerror or e}") from None
        return self.path

    def _write_new_config(self) -> None:
        """The first config.toml of a new home: created exclusively, so nothing is ever overwritten."""
        try:
            fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            return
        try:
            os.write(fd, NEW_CONFIG.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the home's write lock (an exclusive ``flock`` on ``.lock``) across processes. Re-entrant
        within a thread: a step taken while the lock is held (an audit append that makes the host's
        audit key) takes it again without waiting for itself."""
        key = os.path.abspath(self.path)
        held = getattr(_held, "homes", None)
        if held is None:
            held = _held.homes = {}
        if held.get(key):
            held[key] += 1
            try:
                yield
            finally:
                held[key] -= 1
            return
        self.ensure()
        try:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise OperationalError(f"cannot lock {self.path}: {e.strerror or e}") from None
        try:
            try:
                import fcntl
            except ImportError:  # not POSIX: single-process use only
                fcntl = None  # type: ignore[assignment]
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            held[key] = 1
            try:
                yield
            finally:
                held.pop(key, None)
        finally:
            os.close(fd)  # closing releases the lock

    # --- settings ---------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = self._load_config()
        return self._config

    def _load_config(self) -> Config:
        """Read config.toml. An unknown table or key, or a role whose scopes do not parse, is a usage
        error (exit 2): nothing fails open. A damaged or unreadable file is operational (exit 3)."""
        values: dict = {}
        f = self.config_file
        if f.exists():
            import stat
            import tomllib

            try:
                if not stat.S_ISREG(f.stat().st_mode):  # a FIFO would block the read forever
                    raise StoreError(f"config file {f} is not a regular file", hint="replace it with a file")
                doc = tomllib.loads(f.read_text("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise StoreError(f"damaged config file {f}: {e}", hint="fix or remove it") from None
            except RecursionError:
                raise UsageError(f"config file {f} is nested too deeply to read", hint="fix or remove it") from None
            except OSError as e:
                raise StoreError(f"cannot read config file {f}: {e.strerror or e}") from None
            audit_table = doc.pop("audit") if isinstance(doc.get("audit"), dict) else {}
            for key, value in audit_table.items():  # [audit] ship_max_lag (a table; `audit = false` is the switch)
                if key != "ship_max_lag" or not isinstance(value, str):
                    raise UsageError(f"setting {key!r} in [audit] of {f} is unknown or not a string", hint="known: ship_max_lag (a duration)")
                values["ship_max_lag"] = value
            if "policy" in doc:
                values.update(_policy_table(doc.pop("policy"), f))
            for key, value in doc.items():
                if key not in _CONFIG_TYPES:
                    raise UsageError(f"unknown setting {key!r} in {f}", hint=f"known: {', '.join(_CONFIG_TYPES)}")
                want = _CONFIG_TYPES[key]
                if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                    what = "table" if want is dict else want.__name__
                    raise UsageError(f"setting {key!r} in {f} must be a {what}")
                values[key] = value
        env_keystore = self.env.get("AGENTCTL_KEYSTORE")
        if env_keystore:
            values["keystore"] = env_keystore
        keystore = values.get("keystore", "auto")
        if keystore not in KEYSTORE_MODES:
            raise UsageError(f"bad keystore {keystore!r}: use one of {', '.join(KEYSTORE_MODES)}")
        from .durations import parse_duration

        try:
            max_ttl = parse_duration(values.get("max_ttl", "24h"), what="max_ttl")
            leeway = values.get("leeway", "60s")
            leeway_s = 0 if leeway in ("0", "0s") else parse_duration(leeway, what="leeway")
            ship_max_lag = parse_duration(values.get("ship_max_lag", "1h"), what="ship_max_lag")
        except UsageError as e:
            raise StoreError(f"{e.message} in {f}") from None
        if leeway_s > MAX_CONFIG_LEEWAY:
            raise UsageError(f"setting 'leeway' in {f} is more than 10m")
        every = values.get("checkpoint_every", 1000)
        if every < 0:
            raise StoreError(f"setting 'checkpoint_every' in {f} must be 0 (off) or more")
        authority = values.get("authority", "quick-start")
        if authority not in AUTHORITY_RULES:
            raise UsageError(f"bad authority {authority!r} in {f}: use one of {', '.join(AUTHORITY_RULES)}")
        roles = tuple((name, _role(name, table, f)) for name, table in values.get("roles", {}).items())
        sources = ()
        if "sources" in values:
            from .sources import parse_sources

            sources = parse_sources(values["sources"], f)
        audience = values.get("audience")
        if audience is not None:
            from .actions import check_audience

            try:
                check_audience(audience)
            except UsageError as e:
                raise UsageError(f"setting 'audience' in {f}: {e.message}") from None
        approvals = _approvals_table(values["approvals"], audience, f) if "approvals" in values else None
        return Config(keystore=keystore, max_ttl=max_ttl, audit=values.get("audit", True), leeway=leeway_s,
                      checkpoint_every=every, authority=authority, roles=roles,
                      require_known_agents=values.get("require_known_agents", False), ship_max_lag=ship_max_lag,
                      sources=sources, audience=audience, approvals=approvals,
                      **{k: v for k, v in values.items() if k.startswith("policy_")})


def _policy_table(table: object, f: Path) -> dict:
    """``[policy]``: ``files`` (one set, relative to the home), ``query``, ``timeout``. An unknown key
    or a value of the wrong kind is a usage error: no policy is silently skipped."""
    if not isinstance(table, dict):
        raise UsageError(f"setting 'policy' in {f} must be a table ([policy])")
    out: dict = {}
    for key in table:
        if key not in _POLICY_KEYS:
            raise UsageError(f"unknown key {key!r} in [policy] of {f}", hint=f"known: {', '.join(_POLICY_KEYS)}")
    files = table.get("files", [])
    if not isinstance(files, list) or not all(isinstance(x, str) and x.strip() for x in files):
        raise UsageError(f"policy.files in {f} must be a list of file names")
    out["policy_files"] = tuple(files)
    if "query" in table:
        query = table["query"]
        if not isinstance(query, str) or not query.strip():
            raise UsageError(f"policy.query in {f} must be a string such as data.agent.authz.allow")
        out["policy_query"] = query
    if "timeout" in table:
        from .policy import parse_timeout

        out["policy_timeout"] = parse_timeout(table["timeout"], f"policy.timeout in {f}")
    return out


_APPROVAL_TYPES = {"require": list, "approvers": list, "max_ttl": str, "four_eyes": bool, "same_person": str}


def _approvals_table(table: dict, audience: str | None, f: Path):
    """``[approvals]`` (SPEC "Approvals"): require, approvers, max_ttl (default 15m), four_eyes (default
    true), same_person. An unknown key, a value of the wrong kind, or the table without a top-level
    ``audience`` is a usage error: nothing fails open."""
    from .approvals import DEFAULT_APPROVAL_MAX_TTL, ApprovalRules
    from .durations import parse_duration

    for key, value in table.items():
        want = _APPROVAL_TYPES.get(key)
        if want is None:
            raise UsageError(f"unknown key {key!r} in [approvals] of {f}", hint=f"known: {', '.join(_APPROVAL_TYPES)}")
        if not isinstance(value, want):
            raise UsageError(f"approvals.{key} in {f} must be a {want.__name__}")
    if audience is None:
        raise UsageError(f"[approvals] in {f} needs this verifier's audience: an approval names the audience it is for",
                         hint='add a top-level line such as audience = "deploy-gate"')
    for key in ("require", "approvers"):
        if not all(isinstance(x, str) for x in table.get(key, [])):
            raise UsageError(f"approvals.{key} in {f} must be a list of strings")
    if "same_person" in table and not table["same_person"]:
        raise UsageError(f"approvals.same_person in {f} must name an attribute")
    try:
        max_ttl = parse_duration(table["max_ttl"], what="approvals.max_ttl") if "max_ttl" in table else DEFAULT_APPROVAL_MAX_TTL
        return ApprovalRules(audience, tuple(table.get("require", [])), tuple(table.get("approvers", [])), max_ttl,
                             table.get("four_eyes", True), table.get("same_person"))
    except UsageError as e:
        raise UsageError(f"[approvals] in {f}: {e.message}") from None


def _role(name: str, table: object, f: Path) -> Role:
    from .models import check_role
    from .scopes import parse_scopes

    try:
        check_role(name)
    except UsageError as e:
        raise UsageError(f"{e.message} in {f}") from None
    if not isinstance(table, dict):
        raise UsageError(f"roles.{name} in {f} must be a table ([roles.{name}])")
    for key, value in table.items():
        want = _ROLE_TYPES.get(key)
        if want is None:
            raise UsageError(f"unknown key {key!r} in [roles.{name}] in {f}", hint=f"known: {', '.join(_ROLE_TYPES)}")
        if not isinstance(value, want):
            raise UsageError(f"roles.{name}.{key} in {f} must be a {want.__name__}")
    scopes = table.get("scopes", [])
    if not all(isinstance(s, str) for s in scopes):
        raise UsageError(f"roles.{name}.scopes in {f} must be a list of scopes")
    try:
        parsed = parse_scopes(scopes) if scopes else ()
    except UsageError as e:
        raise UsageError(f"roles.{name}.scopes in {f}: {e.message}") from None
    return Role(name, parsed, table.get("agents", False), table.get("revoke", False))


def check_private_file(path: Path) -> None:
    """Refuse a secret file that group or others may read, as ssh does."""
    try:
        st = path.stat()
    except OSError as e:
        raise OperationalError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise OperationalError(
            f"key file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); refusing to use it",
            hint=f"run: chmod 600 {path}",
        )


_held = threading.local()  # the homes whose lock this thread holds, with a depth


def _euid() -> int | None:
    """The effective user id that must own a home (None where there is none, as on Windows)."""
    return os.geteuid() if hasattr(os, "geteuid") else None
