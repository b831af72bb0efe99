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
import hashlib
import json
import os
import socket
import sqlite3
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import __version__, merkle
from .clock import rfc3339
from .encoding import canonical_json
from .errors import OperationalError, StoreError, UsageError
from .events import OUTCOMES, Event

__all__ = ["AuditLog", "Event", "OUTCOMES", "VerifyReport", "host_name"]

FIELDS = ("seq", "time", "event", "principal", "on_behalf_of", "chain", "action", "resource", "outcome", "reason", "jtis", "host", "version", "metadata")

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
]


def host_name() -> str:
    """This machine's name as a principal name segment."""
    raw = socket.gethostname().lower().split(".")[0]
    seg = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in raw).strip("-_") or "localhost"
    return seg[:60]


@dataclass
class VerifyReport:
    ok: bool
    size: int
    checkpoints: int
    problem: str | None = None
    first_bad_seq: int | None = None
    external: dict | None = None

    def doc(self) -> dict:
        return {"ok": self.ok, "size": self.size, "checkpoints_checked": self.checkpoints, "problem": self.problem,
                "first_bad_seq": self.first_bad_seq, "external_checkpoint": self.external}


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
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"cannot open the audit log {path}: {e}", hint="check the file; agentctl never replaces a damaged audit log") from None
        except OSError as e:
            raise OperationalError(f"cannot open the audit log {path}: {e.strerror or e}") from None

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The cross-process append lock, then an immediate transaction."""
        lock_path = self.path.with_name("audit.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
        finally:
            os.close(fd)

    def _migrate(self) -> None:
        have = self.conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_migrations'").fetchone()
        if have:
            done = {r[0] for r in self.conn.execute("SELECT version FROM schema_migrations")}
            if done == {v for v, _, _ in _MIGRATIONS}:
                return
        with self._locked():
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
            done = {r[0] for r in self.conn.execute("SELECT version FROM schema_migrations")}
            newest = max(v for v, _, _ in _MIGRATIONS)
            if done and max(done) > newest:
                raise OperationalError(f"the audit log {self.path} was written by a newer agentctl (schema {max(done)})")
            for version, name, sql in _MIGRATIONS:
                if version in done:
                    continue
                for statement in _statements(sql):
                    self.conn.execute(statement)
                self.conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, rfc3339(_time.time(), micro=True)))
                if version == 1:
                    self.conn.execute("INSERT INTO meta VALUES ('origin', ?)", (f"agentctl.audit/{host_name()}/{os.urandom(6).hex()}",))

    # --- appending --------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

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
        """Append events durably; return their sequence numbers. Raises OperationalError on failure."""
        try:
            with self._locked():
                cr = self._frontier()
                seqs = []
                for ev in events:
                    seq = cr.size + 1
                    doc = {
                        "seq": seq, "time": rfc3339(clock(), micro=True), "event": ev.event, "principal": ev.principal,
                        "on_behalf_of": ev.on_behalf_of, "chain": list(ev.chain), "action": ev.action,
                        "resource": ev.resource, "outcome": ev.outcome, "reason": ev.reason, "jtis": list(ev.jtis),
                        "host": host_name(), "version": __version__, "metadata": ev.metadata,
                    }
                    leaf = canonical_json(doc)
                    created = cr.append(merkle.leaf_hash(leaf))
                    self.conn.execute("INSERT INTO events (seq, leaf, leaf_hash) VALUES (?, ?, ?)", (seq, leaf.decode("utf-8"), created[0][2]))
                    for level, idx, h in created[1:]:
                        self.conn.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, idx, h))
                    seqs.append(seq)
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('frontier', ?)", (cr.to_bytes().hex(),))
                return seqs
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"audit append failed ({self.path}): {e}", hint="no decision goes unrecorded: the command did not complete") from None
        except OSError as e:
            raise OperationalError(f"audit append failed ({self.path}): {e.strerror or e}") from None

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
        where, args = [], []
        for column, value in (("principal", agent), ("action", action), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("time >= ?")
            args.append(rfc3339(since, micro=True))
        if until is not None:
            where.append("time <= ?")
            args.append(rfc3339(until, micro=True))
        sql = "SELECT leaf FROM events" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)]

    def export(self, since=None) -> Iterator[str]:
        if since is None:
            rows = self.conn.execute("SELECT leaf FROM events ORDER BY seq")
        else:
            rows = self.conn.execute("SELECT leaf FROM events WHERE time >= ? ORDER BY seq", (rfc3339(since, micro=True),))
        for (leaf,) in rows:
            yield leaf

    def event(self, seq: int) -> tuple[str, bytes] | None:
        row = self.conn.execute("SELECT leaf, leaf_hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def checkpoints(self) -> list[tuple[int, bytes, str]]:
        return [(s, bytes(r), n) for s, r, n in self.conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size")]

    def latest_checkpoint(self) -> tuple[int, bytes, str] | None:
        row = self.conn.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return (row[0], bytes(row[1]), row[2]) if row else None

    # --- checkpoints and proofs -------------------------------------------------------------------
    def add_checkpoint(self, key_name: str, seed: bytes, clock=_time.time, event: Event | None = None) -> tuple[int, bytes, str]:
        """Sign (origin, size, root) now, store it, and append ``event`` recording it."""
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
        except sqlite3.DatabaseError as e:
            raise OperationalError(f"audit checkpoint failed ({self.path}): {e}") from None
        if event is not None:
            self.append([event], clock)
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
        """Recompute every leaf and the tree; check every stored checkpoint (signature and root) and,
        given an older checkpoint kept elsewhere, that this log extends it."""
        from .note import NoteError, parse_checkpoint

        checkpoints = self.checkpoints()
        sizes = {s for s, _, _ in checkpoints}
        ext = None
        if external is not None:
            ext = self._parse_external(external, host_keys)
            sizes.add(ext[0])
        leaves: list[bytes] = []
        append = leaves.append
        sha = hashlib.sha256
        expected = 1
        rows = self.conn.execute("SELECT seq, leaf, leaf_hash, json_extract(leaf, '$.seq') FROM events ORDER BY seq")
        for seq, leaf, stored, inner in rows:
            if seq != expected:
                return VerifyReport(False, expected - 1, 0, f"event {expected} is missing: the log skips from {expected - 1} to {seq}", expected)
            if inner != seq:
                return VerifyReport(False, seq, 0, f"event {seq} holds the record of event {inner}: rows were reordered or replaced", seq)
            h = sha(b"\x00" + leaf.encode("utf-8")).digest()
            if h != stored:
                return VerifyReport(False, seq, 0, f"event {seq} was edited: its content does not match its leaf hash", seq)
            append(h)
            expected += 1
        size = len(leaves)
        levels = _levels(leaves)

        def node(level: int, index: int) -> bytes:
            return levels[level][index]

        checked = 0
        for cp_size, cp_root, note in checkpoints:
            try:
                body = self._verify_note(note, host_keys)
                origin, n, root = parse_checkpoint(body)
            except NoteError as e:
                return VerifyReport(False, size, checked, f"stored checkpoint at size {cp_size} does not verify: {e}", cp_size)
            if n != cp_size or root != cp_root or origin != self.origin:
                return VerifyReport(False, size, checked, f"stored checkpoint at size {cp_size} does not match its signed note", cp_size)
            if cp_size > size:
                return VerifyReport(False, size, checked, f"the log is truncated: a checkpoint covers {cp_size} events, the log holds {size}", size + 1)
            if merkle.root_at(cp_size, node) != cp_root:
                bad = self._first_bad(levels, cp_size)
                return VerifyReport(False, size, checked, f"the first {cp_size} events do not match the checkpoint signed at that size: history was rewritten", bad)
            checked += 1
        report = VerifyReport(True, size, checked)
        if ext is not None:
            ext_size, ext_root, ext_origin = ext
            report.external = {"size": ext_size, "origin": ext_origin}
            if ext_origin != self.origin:
                return VerifyReport(False, size, checked, f"the checkpoint is of another log ({ext_origin})", None, report.external)
            if ext_size > size:
                return VerifyReport(False, size, checked, f"the log is truncated: the kept checkpoint covers {ext_size} events, the log holds {size}", size + 1, report.external)
            if ext_size:
                current = merkle.root_at(size, node)
                try:
                    proof = merkle.consistency_proof(ext_size, size, node)
                    merkle.verify_consistency(ext_size, size, ext_root, current, proof)
                except (merkle.ProofError, ValueError):
                    return VerifyReport(False, size, checked, f"the log is not an extension of the kept checkpoint (size {ext_size}): history at or before event {ext_size} was rewritten", None, report.external)
        return report

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

    def _parse_external(self, text: str, host_keys) -> tuple[int, bytes, str]:
        from .note import NoteError, parse_checkpoint

        try:
            origin, n, root = parse_checkpoint(self._verify_note(text, host_keys))
        except NoteError as e:
            raise UsageError(f"the kept checkpoint does not verify with this host's audit key: {e}") from None
        return n, root, origin

    def _first_bad(self, levels, size: int) -> int | None:
        """The first event whose stored level-1 tree node disagrees with the recomputed one: where a
        rewrite that also forged leaf hashes shows first. None when the stored nodes were rewritten too."""
        pairs = size // 2
        rows = self.conn.execute("SELECT idx, hash FROM nodes WHERE level = 1 AND idx < ? ORDER BY idx", (pairs,))
        recomputed = levels[1] if len(levels) > 1 else []
        for idx, h in rows:
            if idx >= len(recomputed) or bytes(h) != recomputed[idx]:
                return 2 * idx + 1
        return None


def _statements(sql: str) -> Iterator[str]:
    """Split a script into complete statements (trigger bodies hold semicolons of their own)."""
    buf = ""
    for part in sql.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                yield buf.strip()
            buf = ""


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every perfect subtree of the tree over ``leaves``, level by level (level 0: the leaves)."""
    sha = hashlib.sha256
    levels = [leaves]
    cur = leaves
    while len(cur) > 1:
        cur = [sha(b"\x01" + a + b).digest() for a, b in zip(cur[0::2], cur[1::2])]
        levels.append(cur)
    return levels
