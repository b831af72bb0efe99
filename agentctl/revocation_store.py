"""The home's revocations, indexed: ``revocations.db``, one SQLite table keyed by (kind, id).

A check looks up only the ids a presentation names (principals, key ids, jtis), each one B-tree lookup:
the cost of a cold ``verify`` does not grow with the number of revocations held, and nothing is loaded
whole. Writers hold :meth:`Home.lock`; a change is one SQLite transaction (WAL, ``synchronous = FULL``),
so a reader sees all of it or none. Readers never lock and never create the file: a home without it
holds no revocations.

A home made by an earlier agentctl keeps its revocations in ``revocations.toml``. The first process that
opens the store migrates it, under the home lock: the database is built under a temporary name, linked
into place whole, and the TOML file is renamed ``revocations.toml.migrated`` (kept as a backup, never
read again). A damaged TOML file stops the migration with an error naming it; nothing is changed.

A damaged database (not SQLite, another database, a bad row) is a :class:`StoreError` naming the file;
it is never replaced. Revocations are permanent: :meth:`RevocationStore.remove` exists only to undo an
:meth:`~RevocationStore.add` whose audit event could not be recorded (SPEC: a change and its event
succeed or fail together).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OperationalError, StoreError
from .models import Revocation, Revocations

__all__ = ["RevocationStore", "StoredRevocations", "Change", "FILE", "LEGACY_FILE"]

FILE = "revocations.db"
LEGACY_FILE = "revocations.toml"
_APPLICATION_ID = 0x61677276  # "agrv": tells this store from any other SQLite file
_FORMAT = 1
_KINDS = ("principal", "key", "grant")
_INSERT = "INSERT OR IGNORE INTO revoked (kind, id, at, reason, exp) VALUES (?, ?, ?, ?, ?)"
_RESTORE = "restore it from a backup; agentctl never rewrites a damaged file"
_SCHEMA = (
    f"PRAGMA application_id = {_APPLICATION_ID}",
    f"PRAGMA user_version = {_FORMAT}",
    "CREATE TABLE revoked ("
    " seq INTEGER PRIMARY KEY,"  # the order revocations were made or learned in
    " kind TEXT NOT NULL CHECK (kind IN ('principal', 'key', 'grant')),"
    " id TEXT NOT NULL,"
    " at REAL NOT NULL,"
    " reason TEXT NOT NULL DEFAULT '',"
    " exp INTEGER,"  # a revoked grant's expiry, when known: once past it (plus the leeway) it is dropped from lists
    " UNIQUE (kind, id))",
)


def _damaged(path: Path, why: object) -> StoreError:
    return StoreError(f"damaged store file {path}: {why}", hint=_RESTORE)


def _row(path: Path, row: tuple) -> Revocation:
    kind, ident, at, reason, exp = row
    if kind not in _KINDS or not isinstance(ident, str) or not isinstance(at, (int, float)) or not isinstance(reason, str) \
            or not (exp is None or isinstance(exp, int)):
        raise _damaged(path, f"a {kind!r} revocation row is not valid")
    return Revocation(kind, ident, float(at), reason, exp)


def _connect(path: Path) -> sqlite3.Connection:
    """An existing store, checked to be one (never created here)."""
    from urllib.parse import quote

    conn = None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=rw", uri=True, timeout=30,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        app, = conn.execute("PRAGMA application_id").fetchone()
        version, = conn.execute("PRAGMA user_version").fetchone()
        if app != _APPLICATION_ID:
            raise _damaged(path, "it is not an agentctl revocation store")
        if version > _FORMAT:
            raise OperationalError(f"the revocation store {path} was written by a newer agentctl (format {version}; this one knows {_FORMAT})",
                                   hint="upgrade agentctl to read it; this version does not change it")
        if version != _FORMAT:
            raise _damaged(path, f"unknown format {version}")
        return conn
    except BaseException as e:
        if conn is not None:
            conn.close()
        if isinstance(e, sqlite3.DatabaseError):
            raise _damaged(path, "not a SQLite database" if "not a database" in str(e) else e) from None
        if isinstance(e, OSError):
            raise StoreError(f"cannot open {path}: {e.strerror or e}") from None
        raise


_FOUND: dict[int, str] = {}  # the lookup of n (kind, id) pairs, by n


def found_sql(n: int) -> str:
    """The lookup of ``n`` (kind, id) pairs: one index search each (an OR of equalities; SQLite answers
    a row-value ``(kind, id) IN (VALUES …)`` by scanning the whole index, which grows with the store)."""
    sql = _FOUND[n] = "SELECT kind, id FROM revoked WHERE " + " OR ".join(["(kind = ? AND id = ?)"] * n)
    return sql


class StoredRevocations(Revocations):
    """The revocations of a home, looked up in its store one id at a time. A :class:`Revocations`
    (``find``, ``principal``, ``key``, ``grant``); ``entries`` reads the whole store (for an export or a
    listing, never for a check). Each lookup sees the newest committed state."""

    def __init__(self, path: Path) -> None:  # noqa: D107 - deliberately not the dataclass's __init__
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_conn", None)

    def _db(self) -> sqlite3.Connection:
        conn = self.__dict__["_conn"]
        if conn is None:
            conn = _connect(self.__dict__["_path"])
            object.__setattr__(self, "_conn", conn)
        return conn

    def find(self, kind: str, ident: str) -> Revocation | None:
        path = self.__dict__["_path"]
        try:
            row = self._db().execute("SELECT kind, id, at, reason, exp FROM revoked WHERE kind = ? AND id = ?",
                                     (kind, ident)).fetchone()
        except sqlite3.DatabaseError as e:
            raise _damaged(path, e) from None
        return None if row is None else _row(path, row)

    def found(self, pairs: tuple[tuple[str, str], ...]) -> set[tuple[str, str]]:
        """Which of the (kind, id) ``pairs`` are revoked: one query for all of them (a presentation's
        principals, key ids and jtis), which sees the newest committed state."""
        path = self.__dict__["_path"]
        if not pairs:
            return set()
        sql = _FOUND.get(len(pairs)) or found_sql(len(pairs))
        try:
            rows = self._db().execute(sql, [x for pair in pairs for x in pair]).fetchall()
        except sqlite3.DatabaseError as e:
            raise _damaged(path, e) from None
        return {(k, i) for k, i in rows}

    @property
    def entries(self) -> tuple[Revocation, ...]:
        path = self.__dict__["_path"]
        try:
            rows = self._db().execute("SELECT kind, id, at, reason, exp FROM revoked ORDER BY seq").fetchall()
        except sqlite3.DatabaseError as e:
            raise _damaged(path, e) from None
        return tuple(_row(path, r) for r in rows)

    def __len__(self) -> int:
        try:
            return int(self._db().execute("SELECT COUNT(*) FROM revoked").fetchone()[0])
        except sqlite3.DatabaseError as e:
            raise _damaged(self.__dict__["_path"], e) from None

    def adding(self, entry: Revocation) -> Revocations:
        return Revocations(self.entries).adding(entry)

    def close(self) -> None:
        conn = self.__dict__["_conn"]
        if conn is not None:
            conn.close()
            object.__setattr__(self, "_conn", None)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Revocations) and self.entries == other.entries

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredRevocations({str(self.__dict__['_path'])!r})"


class RevocationStore:
    """The revocation store of one home."""

    def __init__(self, home) -> None:
        self.home = home
        self.path: Path = home.path / FILE
        self.legacy: Path = home.path / LEGACY_FILE

    # --- reading ----------------------------------------------------------------------------------
    def view(self) -> Revocations:
        """What is revoked here, to look up: empty when the home holds no store (nothing is created),
        else a :class:`StoredRevocations`. A home with only the old TOML file is migrated first."""
        if not self.path.exists():
            if not self.legacy.exists():
                return Revocations()
            try:
                self._migrate()
            except OperationalError:
                if self.path.exists() or _writable(self.home.path):
                    raise
                # a home this process may not write (a read-only copy): read the old file as it is
                return Revocations(read_legacy(self.legacy) or ())
        return StoredRevocations(self.path)

    # --- writing (the caller holds the home lock) -------------------------------------------------
    @contextlib.contextmanager
    def change(self) -> Iterator["Change"]:
        """One change to the revocations: what is added inside the block is committed when it ends, and
        rolled back when it raises (a store this change made is removed again). Readers see all of it
        or none. Run the audit event inside the block: the change and its event go together."""
        made = not self.path.exists() and not self.legacy.exists()
        conn = self._writer()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield Change(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed: never leave it open
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                conn.close()
                if made:
                    for leftover in (self.path, *(self.path.with_name(FILE + x) for x in ("-wal", "-shm"))):
                        with contextlib.suppress(OSError):
                            os.unlink(leftover)
                raise
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot write {self.path}: {e}") from None
        finally:
            conn.close()

    def add(self, entries: Iterable[Revocation]) -> list[Revocation]:
        """Add ``entries`` in one transaction of their own; returns those that were new."""
        with self.change() as c:
            return c.added(entries)

    def remove(self, entries: Iterable[Revocation]) -> None:
        """Undo an :meth:`add` (only that: revocations are permanent), in one transaction."""
        with self.change() as c:
            c.conn.executemany("DELETE FROM revoked WHERE kind = ? AND id = ?", [(e.kind, e.id) for e in entries])

    def _writer(self) -> sqlite3.Connection:
        if not self.path.exists():
            if self.legacy.exists():
                self._migrate()
            else:
                self.home.ensure()
                self._create(())
        conn = _connect(self.path)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(f"cannot write {self.path}: {e}") from None
        return conn

    # --- making and migrating ---------------------------------------------------------------------
    def _migrate(self) -> None:
        """Move the old ``revocations.toml`` into a new store, under the home lock."""
        with self.home.lock():
            if self.path.exists():  # another process migrated it meanwhile
                return
            entries = read_legacy(self.legacy)
            if entries is None:
                return
            self._create(entries)
            try:
                os.replace(self.legacy, self.legacy.with_name(LEGACY_FILE + ".migrated"))
            except FileNotFoundError:
                pass
            except OSError as e:  # the store holds everything; the old file is merely left in place
                raise StoreError(f"migrated {self.legacy} into {self.path}, but cannot rename it: {e.strerror or e}") from None

    def _create(self, entries: Iterable[Revocation]) -> None:
        """Build a whole store under a temporary name and link it into place (unless one appeared)."""
        from .sqlite_file import create_whole

        def build(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany(_INSERT, ((e.kind, e.id, e.at, e.reason, e.exp) for e in entries))

        create_whole(self.path, build, StoreError)


class Change:
    """What :meth:`RevocationStore.change` yields."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, entries: Iterable[Revocation]) -> int:
        """Add ``entries`` (one statement, however many); an id already revoked keeps its first
        revocation. Returns how many were new."""
        before = self.conn.total_changes
        self.conn.executemany(_INSERT, ((e.kind, e.id, e.at, e.reason, e.exp) for e in entries))
        return self.conn.total_changes - before

    def added(self, entries: Iterable[Revocation]) -> list[Revocation]:
        """Add ``entries`` one by one; returns the new ones, in order (for a few, to undo exactly)."""
        execute = self.conn.execute
        return [e for e in entries if execute(_INSERT, (e.kind, e.id, e.at, e.reason, e.exp)).rowcount]

    def holds(self, kind: str, ident: str) -> bool:
        """Whether ``(kind, ident)`` is revoked, counting what this change added."""
        return self.conn.execute("SELECT 1 FROM revoked WHERE kind = ? AND id = ?", (kind, ident)).fetchone() is not None


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def read_legacy(path: Path) -> tuple[Revocation, ...] | None:
    """The revocations of an old ``revocations.toml`` (None when there is none); a damaged one is a
    :class:`StoreError` naming it."""
    from datetime import datetime

    from .store import read_toml

    doc = read_toml(path)
    if doc is None:
        return None

    def ts(value: object) -> float:
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("expected a time with an offset")
        return value.timestamp()

    try:
        return tuple(
            Revocation(kind, str(e["id"]), ts(e["at"]), str(e.get("reason", "")))
            for kind in _KINDS
            for e in doc.get(kind, [])
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _damaged(path, e) from None
