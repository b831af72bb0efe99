"""The audit log: an append-only, tamper-evident record of every decision, in SQLite.

Each event is stored as its RFC 8785 canonical JSON (the ``leaf``); the queryable columns are
generated from it by SQLite, so there is one copy of the truth. Every leaf is a leaf of an RFC 6962
Merkle tree; the perfect subtrees an append completes are stored (``nodes``) so proofs are O(log n)
lookups. Checkpoints are C2SP signed notes over (origin, size, root), signed by the host's audit key.
Triggers refuse UPDATE and DELETE. Appends are serialized across processes with ``flock`` around a
``BEGIN IMMEDIATE`` transaction (SQLite's own busy waiting alone starves writers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import operator
import os
import socket
import sqlite3
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import __version__, merkle
from .clock import rfc3339
from .encoding import canonical_json
from .errors import OperationalError, StoreError, UsageError
from .events import OUTCOMES, Event

__all__ = ["AuditLog", "Event", "OUTCOMES", "VerifyReport", "host_name", "parse_kept_checkpoint", "SCHEMA_VERSION"]

FIELDS = ("seq", "time", "event", "principal", "on_behalf_of", "chain", "action", "resource", "outcome", "reason", "jtis", "host", "version", "metadata")

TRIGGERS = tuple(f"{table}_no_{op}" for table in ("events", "nodes", "checkpoints") for op in ("update", "delete"))
TABLES = ("meta", "events", "nodes", "checkpoints", "schema_migrations")

_MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "events, merkle nodes, checkpoints", """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            leaf TEXT NOT NULL,
            leaf_hash BLOB NOT NULL,
            time TEXT GENERATED ALWAYS AS (json_extract(leaf, '$.time')) VIRTUAL,
            event TEXT GENERATED ALWAYS AS (json_extract(leaf, '$.event')) VIRTUAL,
            principal TEXT GENERATED ALWAYS AS (json_extract(leaf, '$.principal')) VIRTUAL,
            action TEXT GENERATED ALWAYS AS (json_extract(leaf, '$.action')) VIRTUAL,
            outcome TEXT GENERATED ALWAYS AS (json_extract(leaf, '$.outcome')) VIRTUAL
        );
        CREATE INDEX events_principal ON events (principal, seq);
        CREATE INDEX events_action ON events (action, seq);
        CREATE INDEX events_outcome ON events (outcome, seq);
        CREATE INDEX events_time ON events (time);
        CREATE TABLE nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;
        CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, time TEXT NOT NULL);
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER nodes_no_update BEFORE UPDATE ON nodes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER nodes_no_delete BEFORE DELETE ON nodes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """),
    # Newest first is by time (then seq): each filter's index ends in time, so a query with a time
    # window and a limit reads only the rows it returns, and never sorts.
    (2, "indexes for newest-first queries", """
        DROP INDEX events_principal;
        DROP INDEX events_action;
        DROP INDEX events_outcome;
        CREATE INDEX events_principal_time ON events (principal, time);
        CREATE INDEX events_action_time ON events (action, time);
        CREATE INDEX events_outcome_time ON events (outcome, time);
        CREATE INDEX events_event_time ON events (event, time);
    """),
]

SCHEMA_VERSION = max(v for v, _, _ in _MIGRATIONS)

#: verify reads and hashes the log in chunks of 2**_CHUNK_LEVEL events: the subtrees of a chunk are
#: computed in memory and compared with the stored nodes a level at a time.
_CHUNK_LEVEL = 14


def host_name() -> str:
    """This machine's name as a principal name segment."""
    raw = socket.gethostname().lower().split(".")[0]
    seg = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in raw).strip("-_") or "localhost"
    return seg[:60]


@dataclass
class VerifyReport:
    """What ``verify`` found. When something is wrong, ``first_bad_seq``..``last_bad_seq`` are the
    events it narrows the problem to (equal when it names one event; None when no event is at fault,
    or the evidence cannot say which: a rewrite that recomputed every hash shows only at a checkpoint)."""

    ok: bool
    size: int
    checkpoints: int
    problem: str | None = None
    first_bad_seq: int | None = None
    external: dict | None = None
    last_bad_seq: int | None = None

    def __post_init__(self) -> None:
        if self.last_bad_seq is None:
            self.last_bad_seq = self.first_bad_seq

    def doc(self) -> dict:
        return {"ok": self.ok, "size": self.size, "checkpoints_checked": self.checkpoints, "problem": self.problem,
                "first_bad_seq": self.first_bad_seq, "last_bad_seq": self.last_bad_seq, "external_checkpoint": self.external}


class _Tampered(Exception):
    """Raised inside verify at the first problem; carries the report."""

    def __init__(self, problem: str, first: int | None = None, last: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.first, self.last = problem, first, last


class AuditLog:
    """The audit database of one home. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, home) -> "AuditLog":
        home.ensure()
        path = home.path / "audit.db"
        conn = None
        try:
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            log = cls(path, conn)
            log._migrate()
            return log
        except BaseException as e:
            if conn is not None:
                conn.close()
            if isinstance(e, sqlite3.DatabaseError):
                raise OperationalError(f"cannot open the audit log {path}: {e}", hint="check the file; agentctl never replaces a damaged audit log") from None
            if isinstance(e, OSError):
                raise OperationalError(f"cannot open the audit log {path}: {e.strerror or e}") from None
            raise

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The cross-process append lock, then an immediate transaction."""
        lock_path = self.path.with_name("audit.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl
            except ImportError:  # not POSIX: SQLite's own locking alone (fair enough for one writer)
                fcntl = None
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # also when COMMIT itself failed: never leave it open
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
        finally:
            os.close(fd)  # closing releases the lock

    def _migrate(self) -> None:
        if self._schema_done():
            return
        with self._locked():
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
            done = {r[0] for r in self.conn.execute("SELECT version FROM schema_migrations")}
            if done and max(done) > SCHEMA_VERSION:
                raise OperationalError(
                    f"the audit log {self.path} was written by a newer agentctl (schema version {max(done)}; this one knows {SCHEMA_VERSION})",
                    hint="upgrade agentctl to read it; this version does not change it")
            for version, name, sql in _MIGRATIONS:
                if version in done:
                    continue
                for statement in _statements(sql):
                    self.conn.execute(statement)
                self.conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, rfc3339(_time.time(), micro=True)))
                if version == 1:
                    self.conn.execute("INSERT INTO meta VALUES ('origin', ?)", (f"agentctl.audit/{host_name()}/{os.urandom(6).hex()}",))

    def _schema_done(self) -> bool:
        have = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'").fetchone()
        if not have:
            return False
        done = {r[0] for r in self.conn.execute("SELECT version FROM schema_migrations")}
        return done == {v for v, _, _ in _MIGRATIONS}

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

    def _frontier(self) -> merkle.CompactRange:
        raw = self.meta("frontier")
        size = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        if raw is not None:
            try:
                cr = merkle.CompactRange.from_bytes(bytes.fromhex(raw))
                if cr.size == size:
                    return cr
            except ValueError:
                pass
        return merkle.CompactRange.from_nodes(size, self._get_node)  # rebuilt from stored nodes

    def append(self, events: list[Event], clock=_time.time) -> list[int]:
        """Append events durably, in one transaction; return their sequence numbers.

        Raises :class:`OperationalError` on any failure: then nothing was appended."""
        try:
            with self._locked():
                return self._insert(events, clock)
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"audit append failed ({self.path}): {e}", hint="no decision goes unrecorded: the command did not complete") from None
        except OSError as e:
            raise OperationalError(f"audit append failed ({self.path}): {e.strerror or e}") from None

    def _insert(self, events: list[Event], clock) -> list[int]:
        """Insert events inside the caller's locked transaction."""
        cr = self._frontier()
        host = host_name()
        seqs = []
        for ev in events:
            seq = cr.size + 1
            doc = {
                "seq": seq, "time": rfc3339(clock(), micro=True), "event": ev.event, "principal": ev.principal,
                "on_behalf_of": ev.on_behalf_of, "chain": list(ev.chain), "action": ev.action,
                "resource": ev.resource, "outcome": ev.outcome, "reason": ev.reason, "jtis": list(ev.jtis),
                "host": host, "version": __version__, "metadata": ev.metadata,
            }
            try:
                leaf = canonical_json(doc)
            except ValueError as e:  # EncodingError: a value JSON cannot carry (a lone surrogate, NaN)
                raise OperationalError(f"audit append failed: event {ev.event!r} cannot be encoded: {e}") from None
            created = cr.append(merkle.leaf_hash(leaf))
            self.conn.execute("INSERT INTO events (seq, leaf, leaf_hash) VALUES (?, ?, ?)", (seq, leaf.decode("utf-8"), created[0][2]))
            if len(created) > 1:
                self.conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", created[1:])
            seqs.append(seq)
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('frontier', ?)", (cr.to_bytes().hex(),))
        return seqs

    # --- reading ----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]

    def _get_node(self, level: int, index: int) -> bytes:
        if level == 0:
            row = self.conn.execute("SELECT leaf_hash FROM events WHERE seq = ?", (index + 1,)).fetchone()
        else:
            row = self.conn.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)).fetchone()
        if row is None:
            raise StoreError(f"the audit log {self.path} lacks the tree node at level {level}, index {index}")
        return bytes(row[0])

    def query(self, *, agent=None, action=None, outcome=None, since=None, until=None, limit=None) -> list[dict]:
        """Events matching every filter given, newest first (by time, then seq).

        One index does the work: the first of principal, action, outcome that is given (each is indexed
        together with time), else time; the other filters are kept off their own indexes (unary ``+``)
        so SQLite, which has no statistics here, cannot pick a worse one."""
        where, args = [], []
        driver = "principal" if agent is not None else "action" if action is not None else "outcome" if outcome is not None else None
        for column, value in (("principal", agent), ("action", action), ("outcome", outcome)):
            if value is not None:
                where.append(f"{'' if column == driver else '+'}{column} = ?")
                args.append(value)
        if since is not None:
            where.append("time >= ?")
            args.append(rfc3339(since, micro=True))
        if until is not None:
            where.append("time <= ?")
            args.append(rfc3339(until, micro=True))
        sql = "SELECT leaf FROM events" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY time DESC, seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(min(limit, 2**63 - 1))  # SQLite integers are 64-bit; any larger limit means all
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)]

    def export(self, since=None) -> Iterator[str]:
        """Every leaf (canonical JSON) in log order; with ``since``, those at or after it by time."""
        if since is None:
            rows = self.conn.execute("SELECT leaf FROM events ORDER BY seq")
        else:
            rows = self.conn.execute("SELECT leaf FROM events WHERE time >= ? ORDER BY time, seq", (rfc3339(since, micro=True),))
        for (leaf,) in rows:
            yield leaf

    def event(self, seq: int) -> tuple[str, bytes] | None:
        if not 0 < seq < 2**63:  # no such sequence number (and SQLite integers are 64-bit)
            return None
        row = self.conn.execute("SELECT leaf, leaf_hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def checkpoints(self) -> list[tuple[int, bytes, str]]:
        return [(s, bytes(r), n) for s, r, n in self.conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")]

    def latest_checkpoint(self) -> tuple[int, bytes, str] | None:
        row = self.conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return (row[0], bytes(row[1]), row[2]) if row else None

    # --- checkpoints and proofs -------------------------------------------------------------------
    def add_checkpoint(self, key_name: str, seed: bytes, clock=_time.time, event: Event | None = None) -> tuple[int, bytes, str]:
        """Sign (origin, size, root) now and store it; in the same transaction append ``event``
        recording it (its metadata gets the signed ``size``), so a checkpoint is never unrecorded."""
        from .note import checkpoint_body, sign_note

        try:
            with self._locked():
                cr = self._frontier()
                size, root = cr.size, cr.root()
                note = sign_note(checkpoint_body(self.origin, size, root), key_name, seed)
                existing = self.conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
                if existing is None:
                    self.conn.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", (size, root, note, rfc3339(clock(), micro=True)))
                else:
                    note = existing[0]
                if event is not None:
                    self._insert([dataclasses.replace(event, metadata={**event.metadata, "size": size})], clock)
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"audit checkpoint failed ({self.path}): {e}") from None
        except OSError as e:
            raise OperationalError(f"audit checkpoint failed ({self.path}): {e.strerror or e}") from None
        return size, root, note

    def prove(self, seq: int) -> dict:
        """An inclusion proof of event ``seq`` against the latest checkpoint."""
        latest = self.latest_checkpoint()
        row = self.event(seq)
        if row is None:
            raise UsageError(f"no audit event {seq} (the log has {self.size})")
        if latest is None or latest[0] < seq:
            raise UsageError(f"no checkpoint covers event {seq} yet", hint="take one: agentctl audit checkpoint")
        size, root, note = latest
        proof = merkle.inclusion_proof(seq - 1, size, self._get_node)
        merkle.verify_inclusion(row[1], seq - 1, size, proof, root)  # never hand out a proof that fails
        import base64

        return {
            "seq": seq, "index": seq - 1, "tree_size": size, "event": json.loads(row[0]), "leaf": row[0],
            "leaf_hash": base64.b64encode(row[1]).decode(), "root": base64.b64encode(root).decode(),
            "proof": [base64.b64encode(p).decode() for p in proof], "checkpoint": note,
        }

    # --- verification -----------------------------------------------------------------------------
    def verify(self, host_keys: dict[str, list[bytes]], external: str | None = None) -> VerifyReport:
        """Check the whole log, in this order, and report the first problem:

        1. its tables are all there;
        2. every event, in ``seq`` order: no gap, its leaf hash, and every stored tree node equal to
           the one recomputed from the leaves (where they differ, a row holding another event's record
           is named);
        3. the tree frontier (no event cut from the end or added around ``append``) and no tree node
           past the last event;
        4. every stored checkpoint: its signature by a host key, its origin, size and root, and the
           root at its size; every ``checkpoint`` event's checkpoint is still stored;
        5. a checkpoint kept elsewhere (``external``): its origin, its signature, and this log's root
           at its size;
        6. the append-only triggers are in place.

        Returns a report; raises :class:`UsageError` when ``external`` is not a checkpoint at all and
        :class:`OperationalError` when SQLite cannot read the database."""
        ext = parse_kept_checkpoint(external) if external is not None else None
        state = {"size": 0, "checked": 0}
        try:
            self._verify(host_keys, ext, state)
        except _Tampered as t:
            return VerifyReport(False, state["size"], state["checked"], t.problem, t.first,
                                _ext_doc(ext), t.last)
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"cannot read the audit log {self.path}: {e}") from None
        return VerifyReport(True, state["size"], state["checked"], external=_ext_doc(ext))

    def _verify(self, host_keys, ext, state: dict) -> None:
        from .note import NoteError, parse_checkpoint

        names = {r[0]: r[1] for r in self.conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'trigger')")}
        missing = [t for t in TABLES if names.get(t) != "table"]
        if missing:
            raise _Tampered(f"the audit log's {', '.join(missing)} table{'s were' if len(missing) > 1 else ' was'} removed")

        size = self._verify_tree()
        state["size"] = size
        self._verify_frontier(size)
        self._verify_no_extra_nodes(size)

        # Every node is now known to be the hash of its events: roots at any size come from them.
        memo: dict = {}

        def node(level: int, index: int) -> bytes:
            key = (level, index)
            if key not in memo:
                memo[key] = self._get_node(level, index)
            return memo[key]

        good = 0  # the largest size whose root a stored checkpoint confirmed
        stored = self.checkpoints()
        for cp_size, cp_root, note in stored:
            try:
                origin, n, root = parse_checkpoint(self._verify_note(note, host_keys))
            except NoteError as e:
                raise _Tampered(f"the checkpoint stored at size {cp_size} does not verify with the host audit key: {e}") from None
            if n != cp_size or root != cp_root or origin != self.origin:
                raise _Tampered(f"the checkpoint stored at size {cp_size} does not match its signed note (size {n}, origin {origin})")
            if cp_size > size:
                raise _Tampered(f"the log is truncated: a checkpoint covers {cp_size} events, the log holds {size}", size + 1, cp_size)
            if merkle.root_at(cp_size, node) != cp_root:
                raise _Tampered(f"{_span(good + 1, cp_size, 'does')} not match the checkpoint signed at size {cp_size}: history was rewritten"
                                + (f" (the checkpoint at size {good} still matches)" if good else ""))
            good = cp_size
            state["checked"] += 1

        sizes = {s for s, _, _ in stored}
        for seq, leaf in self.conn.execute("SELECT seq, leaf FROM events WHERE event = 'checkpoint' ORDER BY seq"):
            doc = json.loads(leaf)
            if doc.get("event") != "checkpoint":
                continue
            recorded = (doc.get("metadata") or {}).get("size")
            if isinstance(recorded, int) and recorded not in sizes:
                raise _Tampered(f"event {seq} records a checkpoint of {recorded} events that is no longer stored: checkpoints were removed")

        if ext is not None:
            ext_size, ext_root, ext_origin, ext_text = ext
            if ext_origin != self.origin:
                raise _Tampered(f"the kept checkpoint is of another log ({ext_origin}; this one is {self.origin})")
            try:
                self._verify_note(ext_text, host_keys)
            except NoteError as e:
                raise _Tampered(f"the kept checkpoint does not verify with this host's audit key ({e}): "
                                "the audit key was replaced, or the checkpoint is forged") from None
            if ext_size > size:
                raise _Tampered(f"the log is truncated: the kept checkpoint covers {ext_size} events, the log holds {size}", size + 1, ext_size)
            lower = max((s for s in sizes if s <= ext_size), default=0)
            if merkle.root_at(ext_size, node) != ext_root:
                raise _Tampered(f"the log is not an extension of the kept checkpoint (size {ext_size}): "
                                f"history at or before event {ext_size} was rewritten"
                                + (f" (after event {lower}, where a stored checkpoint still matches)" if lower else ""))

        gone = [t for t in TRIGGERS if names.get(t) != "trigger"]
        if gone:
            raise _Tampered(f"the append-only triggers were removed ({', '.join(gone)}): the log was opened for editing")

    def _verify_tree(self) -> int:
        """Read every event in order, in chunks: no gap, each leaf hash, and every stored node equal to
        the one recomputed from the leaves. Returns the number of events."""
        sha = hashlib.sha256
        chunk = 1 << _CHUNK_LEVEL
        cur = self.conn.execute("SELECT seq, CAST(leaf AS BLOB), leaf_hash FROM events ORDER BY seq")
        expected = 1
        tops: list[bytes] = []  # roots of the full chunks, level _CHUNK_LEVEL
        while True:
            rows = cur.fetchmany(chunk)
            if not rows:
                break
            if rows[0][0] != expected or rows[-1][0] != expected + len(rows) - 1:
                _find_gap(rows, expected)
            hashes = [sha(b"\x00" + leaf).digest() for _, leaf, _ in rows]
            if hashes != list(map(_third, rows)):
                i = next(i for i, (h, r) in enumerate(zip(hashes, rows)) if h != r[2])
                raise _Tampered(f"event {rows[i][0]} was edited: its content does not match its leaf hash", rows[i][0])
            try:
                top = self._verify_levels(hashes, expected - 1, 0)
            except _Tampered:
                _find_moved(rows)  # rows moved with their leaf hashes: name them exactly
                raise
            if len(rows) == chunk:
                tops.append(top)
            expected += len(rows)
        size = expected - 1
        if tops:
            self._verify_levels(tops, 0, _CHUNK_LEVEL)
        return size

    def _verify_levels(self, hashes: list[bytes], base: int, level0: int) -> bytes | None:
        """Hash ``hashes`` (the nodes at ``level0`` from index ``base``) up level by level, comparing
        every perfect subtree with the stored one. Returns the top hash when they form one subtree."""
        sha = hashlib.sha256
        level, cur = level0, hashes
        while len(cur) > 1:
            cur = [sha(b"\x01" + a + b).digest() for a, b in zip(cur[0::2], cur[1::2])]
            level += 1
            start = base >> (level - level0)
            stored = list(map(_first, self.conn.execute(
                "SELECT hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx", (level, start, start + len(cur)))))
            if stored != cur:
                have = dict(self.conn.execute(
                    "SELECT idx, hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ?", (level, start, start + len(cur))))
                idx = next(start + i for i, h in enumerate(cur) if have.get(start + i) != h)
                first, last = (idx << level) + 1, (idx + 1) << level
                if idx not in have:
                    raise _Tampered(f"the tree node over events {first}..{last} (level {level}, index {idx}) is missing", first, last)
                raise _Tampered(f"the tree stored over events {first}..{last} does not match them (level {level}, index {idx}): "
                                "one of them was replaced along with its leaf hash, or the tree was altered", first, last)
        return cur[0] if len(cur) == 1 else None

    def _verify_no_extra_nodes(self, size: int) -> None:
        """A node past the end of the log means the log once held more events."""
        for op in ("<", ">"):
            row = self.conn.execute(f"SELECT level, idx FROM nodes WHERE level {op} ? LIMIT 1", (1 if op == "<" else 63,)).fetchone()
            if row is not None:
                raise _Tampered(f"the tree holds a node at level {row[0]}, which no log has: the tree was altered")
        implied = size
        for level in range(1, 64):
            top = self.conn.execute("SELECT MAX(idx) FROM nodes WHERE level = ?", (level,)).fetchone()[0]
            if top is not None:
                implied = max(implied, (top + 1) << level)
        if implied > size:
            raise _Tampered(f"the log ends at event {size}, but its tree covers at least {implied} events: "
                            f"{_span(size + 1, implied, 'was')} cut", size + 1, implied)

    def _verify_frontier(self, size: int) -> None:
        raw = self.meta("frontier")
        if raw is None:
            if size:
                raise _Tampered(f"the tree frontier of the {size} events is missing: the log was altered")
            return
        try:
            cr = merkle.CompactRange.from_bytes(bytes.fromhex(raw))
        except ValueError as e:
            raise _Tampered(f"the tree frontier is damaged: {e}") from None
        if cr.size > size:
            raise _Tampered(f"the log ends at event {size}, but its tree frontier records {cr.size} events: "
                            f"{_span(size + 1, cr.size, 'was')} cut", size + 1, cr.size)
        if cr.size < size:
            raise _Tampered(f"{_span(cr.size + 1, size, 'was')} added outside agentctl: the tree frontier ends at event {cr.size}",
                            cr.size + 1, size)
        if cr != merkle.CompactRange.from_nodes(size, self._get_node):
            raise _Tampered("the tree frontier does not match the tree: it was altered")

    def _verify_note(self, note: str, host_keys: dict[str, list[bytes]]) -> str:
        from .note import NoteError, verify_note

        last: Exception | None = None
        for name, keys in host_keys.items():
            for public in keys:
                try:
                    return verify_note(note, name, public)
                except NoteError as e:
                    last = e
        raise NoteError(str(last) if last else "no audit key is known to check it")

def parse_kept_checkpoint(text: str) -> tuple[int, bytes, str, str]:
    """(size, root, origin, text) of a checkpoint kept elsewhere, read before its signature is checked
    (``verify`` does that, and reports a bad one as tampering); a text that is not a signed checkpoint
    at all is a usage error."""
    from .note import NoteError, parse_checkpoint

    split = text.rfind("\n\n") if isinstance(text, str) else -1
    try:
        if isinstance(text, str) and not text.strip():
            raise NoteError("the file is empty")
        if split < 0:
            raise NoteError("it has no blank line before a signature")
        origin, n, root = parse_checkpoint(text[: split + 1])
    except NoteError as e:
        raise UsageError(f"the kept checkpoint is not a signed checkpoint: {e}") from None
    return n, root, origin, text


def _ext_doc(ext) -> dict | None:
    return {"size": ext[0], "origin": ext[2]} if ext is not None else None


_first, _third = operator.itemgetter(0), operator.itemgetter(2)


def _find_gap(rows: list, expected: int) -> None:
    for i, (seq, _, _) in enumerate(rows):
        gap = expected + i
        if seq == gap:
            continue
        if seq < gap:  # only when seq is no longer the table's INTEGER PRIMARY KEY
            raise _Tampered(f"event {seq} appears again after event {gap - 1}", seq)
        raise _Tampered(f"event {gap} is missing: the log skips from {gap - 1} to {seq}" if seq == gap + 1 else
                        f"events {gap}..{seq - 1} are missing: the log skips from {gap - 1} to {seq}", gap, seq - 1)


def _span(first: int, last: int, verb: str = "") -> str:
    """"event 9" or "events 9..12", with ``verb`` ("was", "do") agreeing."""
    if first == last:
        return f"event {first}" + (f" {verb}" if verb else "")
    plural = {"was": "were", "does": "do"}.get(verb, verb)
    return f"events {first}..{last}" + (f" {plural}" if plural else "")


def _find_moved(rows: list) -> None:
    """Raise at the first row whose leaf is another event's record: its own ``seq`` is not the row's.
    (The last "seq" key of canonical JSON is the top-level one: only "time" and "version", strings,
    follow it, and quotes inside strings are escaped.)"""
    for seq, leaf, _ in rows:
        if not leaf.startswith(b'"seq":%d,' % seq, leaf.rfind(b'"seq":')):
            inner = _inner_seq(leaf)
            raise _Tampered(f"event {seq} holds the record of event {inner}: rows were reordered or replaced" if inner is not None else
                            f"event {seq} holds no sequence number of its own: it was replaced", seq)


def _inner_seq(leaf: bytes) -> int | None:
    try:
        value = json.loads(leaf).get("seq")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _statements(sql: str) -> Iterator[str]:
    """Split a script into complete statements (trigger bodies hold semicolons of their own)."""
    buf = ""
    for part in sql.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                yield buf.strip()
            buf = ""
