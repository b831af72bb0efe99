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
from pathlib import Path
from typing import Iterator, Mapping

from .config import AUTHORITY_RULES, KEYSTORE_MODES, Config, Role, load_config
from .errors import OperationalError, UsageError

__all__ = ["Home", "Config", "Role", "atomic_write", "KEYSTORE_MODES", "AUTHORITY_RULES"]

#: What a new home's config.toml says (SPEC "Authority and roles": a new home is created with quick-start).
NEW_CONFIG = (
    "# agentctl settings. Who may authorize on its own authority (docs/delegation.md):\n"
    "#   quick-start: user: and service: principals made here by keygen; roles: the scopes of [roles.NAME]\n"
    'authority = "quick-start"\n'
)


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
        for p in (self.path, self.principals_dir, self.keys_dir, self.revocations_file, self.path / "revocations.db", self.config_file,
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
        return load_config(self.config_file, self.env)

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
