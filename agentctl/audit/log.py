"""The audit log: an append-only, tamper-evident record of every decision, in SQLite.

Each event is stored once, as its RFC 8785 canonical JSON (the ``leaf``) deflated
(:mod:`agentctl.audit.codec`); the queryable fields are indexed by expressions over it, so there is one
copy of the truth. Every leaf is a leaf of an RFC 6962 Merkle tree; the perfect subtrees an append
completes at every fourth level are stored (``nodes``), so proofs are O(log n) lookups
(:mod:`agentctl.audit.store`). ``audit prune`` may drop old bodies, keeping their leaf hashes
(:mod:`agentctl.audit.prune`). Checkpoints are C2SP signed notes over (origin, size, root), signed by the host's audit key.
Triggers refuse UPDATE and DELETE. Appends are serialized across processes with ``flock`` around a
``BEGIN IMMEDIATE`` transaction (SQLite's own busy waiting alone starves writers).

:meth:`AuditLog.open` is for writing: it creates a missing log (whole, under a temporary name, then
linked into place, so no other process ever sees a half-made one) and applies new migrations.
:meth:`AuditLog.open_existing` is for reading: it never creates a file or writes a schema, and names
what is wrong with a file that is not an agentctl audit log (:class:`NotAnAuditLog`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time as _time
from pathlib import Path
from typing import Iterator

from ..errors import OperationalError
from ..events import Event
from . import codec, group, store, tree
from . import spool as _spool
from . import schema as _schema
from .schema import SCHEMA_VERSION, apply_migrations

__all__ = ["AuditLog", "NotAnAuditLog", "FIELDS", "host_name"]

FIELDS = ("seq", "time", "event", "principal", "on_behalf_of", "chain", "action", "resource", "outcome", "reason", "jtis", "host", "version", "metadata")

_HINT = "check the file; agentctl never replaces a damaged audit log"


_host: list = [None, ""]  # the last node name seen, and its segment (every append asks)


def host_name() -> str:
    """This machine's name as a principal name segment."""
    try:
        raw = os.uname().nodename  # gethostname() on POSIX, without importing socket
    except AttributeError:  # pragma: no cover - Windows
        import socket

        raw = socket.gethostname()
    if raw == _host[0]:
        return _host[1]
    node = raw
    raw = raw.lower().split(".")[0]
    seg = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in raw).strip("-_") or "localhost"
    _host[:] = (node, seg[:60])
    return seg[:60]


class NotAnAuditLog(OperationalError):
    """A file where the audit log should be that is not one: empty, not SQLite, or another database.
    ``problem`` says which, as a phrase ("is empty (0 bytes)")."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"the audit log {path} {problem}", hint=_HINT)
        self.problem = problem


class AuditLog:
    """The audit database of one home. Open with :meth:`open` (to append) or :meth:`open_existing`
    (to read); close with :meth:`close`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._lock_path: str | None = None
        self._lock_fds: list[int] = []  # descriptors of the append lock, unlocked, for the next appends
        #: (``PRAGMA data_version``, frontier) as this connection's last committed append left them:
        #: reused while no other connection commits (:class:`.group.Inserter`); ``_pending`` is the
        #: open transaction's, kept only once it commits.
        self._kept: "tuple[int, tree.CompactRange] | None" = None
        self._pending: "tuple[int, tree.CompactRange] | None" = None
        self._group = group.Group(path.with_name(_spool.SPOOL_DIR))  # concurrent appends' group commits

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, home) -> "AuditLog":
        """The home's log, to append to: created (whole) when missing, migrated when older."""
        home.ensure()
        path = home.path / "audit.db"
        if not path.exists():
            _create(path)
        log = cls.open_existing(path, writable=True)
        try:
            log._migrate()
        except BaseException:
            log.close()
            raise
        return log

    @classmethod
    def open_existing(cls, path: Path, *, writable: bool = False) -> "AuditLog":
        """An existing log, opened without creating or changing anything. Raises
        :class:`NotAnAuditLog` for a file that is not one (empty, not SQLite, another database),
        :class:`OperationalError` for a missing or unreadable one or one from a newer agentctl."""
        path = Path(path)
        try:
            if os.stat(path).st_size == 0:
                raise NotAnAuditLog(path, "is empty (0 bytes): its contents were removed")
        except FileNotFoundError:
            raise OperationalError(f"there is no audit log at {path}") from None
        except OSError as e:
            raise OperationalError(f"cannot open the audit log {path}: {e.strerror or e}") from None
        conn = None
        try:
            from urllib.parse import quote

            conn = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=rw", uri=True, timeout=30,
                                   isolation_level=None, check_same_thread=False, factory=codec.Connection)
            conn.execute("PRAGMA busy_timeout = 30000")
            codec.register(conn)
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.DatabaseError as e:
                if "not a database" in str(e):
                    raise NotAnAuditLog(path, "is not a SQLite database") from None
                raise
            if "schema_migrations" not in tables:
                raise NotAnAuditLog(path, "is another SQLite database, not an agentctl audit log" if tables else
                                    "is a SQLite database without tables, not an agentctl audit log")
            log = cls(path, conn)
            log._check_version()
            done = log.versions()
            if done and done == tuple(range(1, len(done) + 1)) and len(done) < SCHEMA_VERSION:
                log._migrate()  # an older log is upgraded in place, once (under the append lock)
            if writable:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            return log
        except BaseException as e:
            if conn is not None:
                conn.close()
            if isinstance(e, sqlite3.DatabaseError):
                raise OperationalError(f"cannot open the audit log {path}: {e}", hint=_HINT) from None
            if isinstance(e, OSError):
                raise OperationalError(f"cannot open the audit log {path}: {e.strerror or e}") from None
            raise

    def close(self) -> None:
        self._group.close()
        while self._lock_fds:
            os.close(self._lock_fds.pop())
        self.conn.close()

    def versions(self) -> tuple[int, ...]:
        """The migrations this log records as applied."""
        return tuple(sorted(r[0] for r in self.conn.execute("SELECT version FROM schema_migrations")))

    def _check_version(self) -> None:
        done = self.versions()
        if done and max(done) > SCHEMA_VERSION:
            raise OperationalError(
                f"the audit log {self.path} was written by a newer agentctl (schema version {max(done)}; this one knows {SCHEMA_VERSION})",
                hint="upgrade agentctl to read it; this version does not change it")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The cross-process append lock, then an immediate transaction."""
        fd = self._lock_fd()
        try:
            if _spool.fcntl is None:
                with self._transaction():
                    yield
                return
            _spool.fcntl.flock(fd, _spool.fcntl.LOCK_EX)
            with self._group.gate(), self._transaction():  # appends that wait meanwhile sleep on the gate
                yield
        finally:
            os.close(fd)  # closing releases the lock

    def _lock_fd(self) -> int:
        if self._lock_path is None:
            self._lock_path = str(self.path.with_name("audit.lock"))
        return os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """An immediate transaction (under the append lock): committed (fsync) when the block ends,
        rolled back when it raises."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self._pending = None
            codec.of(self.conn).forget()  # a dictionary trained in it is gone with it
            if self.conn.in_transaction:  # also when COMMIT itself failed: never leave it open
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise
        self._kept, self._pending = self._pending, None

    def _migrate(self) -> None:
        if set(self.versions()) == {v for v, _, _ in _schema.MIGRATIONS}:
            return
        with self._locked():
            self._check_version()
            apply_migrations(self.conn, set(self.versions()))

    # --- appending --------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"cannot read the audit log {self.path}: {e}") from None
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        try:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"cannot write the audit log {self.path}: {e}") from None

    @property
    def origin(self) -> str:
        return self.meta("origin") or "agentctl.audit/unknown"

    def _frontier(self) -> tree.CompactRange:
        raw = self.meta("frontier")
        size = self.size
        if raw is not None:
            try:
                cr = tree.CompactRange.from_bytes(bytes.fromhex(raw))
                if cr.size == size:
                    return cr
            except ValueError:
                pass
        return tree.CompactRange.from_nodes(size, self._get_node)  # rebuilt from stored nodes

    def append(self, events: list[Event], clock=_time.time) -> list[int]:
        """Append events durably, in one transaction; return their sequence numbers.

        Concurrent callers commit in groups (:mod:`.spool`): a caller that finds the append lock taken
        leaves its events in the spool for the holder to commit with its own, and returns once the
        commit that holds them is durable (or commits them itself when no holder took them).
        Raises :class:`OperationalError` on any failure: then nothing was appended."""
        try:
            host = host_name()
            try:  # a descriptor of the lock of its own (each concurrent caller, threads too, needs one)
                fd = self._lock_fds.pop()
            except IndexError:
                fd = self._lock_fd()
            try:
                if _spool.fcntl is None:  # no flock: SQLite alone serializes, one caller a transaction
                    with self._transaction():
                        seqs = self._insert(events, clock)
                else:
                    try:
                        _spool.fcntl.flock(fd, _spool.fcntl.LOCK_EX | _spool.fcntl.LOCK_NB)
                    except BlockingIOError:
                        seqs = self._group.wait_or_lead(self, fd, [group.doc(ev, clock, host) for ev in events])
                    else:
                        seqs = self._group.lead(self, [group.doc(ev, clock, host) for ev in events], None, fd)
            except BaseException:
                os.close(fd)  # closing releases the lock, whatever path raised
                raise
            self._lock_fds.append(fd)  # every path that returns has unlocked it: kept for the next append
            return seqs
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"audit append failed ({self.path}): {e}", hint="no decision goes unrecorded: the command did not complete") from None
        except OSError as e:
            raise OperationalError(f"audit append failed ({self.path}): {e.strerror or e}") from None

    def _insert(self, events: list[Event], clock) -> list[int]:
        """Insert events inside the caller's locked transaction."""
        host = host_name()
        return group.insert(self, [group.doc(ev, clock, host) for ev in events])

    # --- reading ----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return store.size(self.conn)

    def _get_node(self, level: int, index: int) -> bytes:
        return store.get_node(self.conn, level, index, str(self.path))

    def query(self, *, agent=None, action=None, outcome=None, since=None, until=None, limit=None) -> list[dict]:
        """Events matching every filter given, newest first (by time, then seq): see :func:`store.query`."""
        return [json.loads(leaf) for leaf in store.query(self.conn, agent=agent, action=action, outcome=outcome,
                                                         since=since, until=until, limit=limit)]

    def export(self, since=None) -> Iterator[str]:
        """Every kept leaf (canonical JSON) in log order; with ``since``, those at or after it by time."""
        return store.export(self.conn, since)

    def event(self, seq: int) -> tuple[str, bytes] | None:
        """(leaf, leaf hash) of a kept event; None when there is none (or it was pruned)."""
        return store.leaf(self.conn, seq)

    def leaves(self, after: int, upto: int) -> list[tuple[int, str, bytes]]:
        """The events ``after < seq <= upto`` in log order, as (seq, leaf, leaf hash)."""
        rows = self.conn.execute("SELECT seq, leaf, leaf_hash FROM events WHERE seq > ? AND seq <= ? ORDER BY seq", (after, upto))
        return [(seq, leaf, bytes(h)) for seq, leaf, h in rows]

    def checkpoints(self) -> list[tuple[int, bytes, str]]:
        return [(s, bytes(r), n) for s, r, n in self.conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")]

    def latest_checkpoint(self) -> tuple[int, bytes, str] | None:
        row = self.conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return (row[0], bytes(row[1]), row[2]) if row else None

    # --- checkpoints and proofs -------------------------------------------------------------------
    def add_checkpoint(self, key_name: str, seed: bytes, clock=_time.time, event: Event | None = None,
                       deliver=None) -> tuple[int, bytes, str]:
        """Sign (origin, size, root) now and store it, recording ``event`` in the same transaction
        (:func:`.proving.add_checkpoint`)."""
        from .proving import add_checkpoint

        return add_checkpoint(self, key_name, seed, clock, event, deliver)

    def verify(self, host_keys: dict[str, list[bytes]], external: str | None = None, progress=None):
        """Check the whole log: see :func:`agentctl.audit.tamper.verify`."""
        from .tamper import verify

        return verify(self, host_keys, external, progress)

    # --- proofs -----------------------------------------------------------------------------------
    def prove(self, seq: int, checkpoint: str | None = None) -> dict:
        """An inclusion proof of event ``seq`` in a checkpoint: the text of one (of this log, which
        must still match it), or else the latest stored one (:func:`.proving.prove`)."""
        from .proving import prove

        return prove(self, seq, checkpoint)

    def consistency(self, old: str, new: str) -> dict:
        """A consistency proof between two checkpoints of this log (their texts), old first."""
        from .proving import consistency

        return consistency(self, old, new)


def _create(path: Path) -> None:
    """Make a new, fully migrated log at ``path`` unless one appears there meanwhile (made whole under
    a temporary name and linked into place: no reader ever sees an empty or half-made one)."""
    from ..sqlite_file import create_whole

    create_whole(path, lambda conn: apply_migrations(conn, set()), OperationalError, f"the audit log {path}")
