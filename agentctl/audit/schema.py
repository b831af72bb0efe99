"""The audit database's schema: its migrations, applying them, and checking a schema by definition.

The schema is what makes the log's guarantees hold: the queryable fields are indexed by expressions
over each event's stored leaf, and triggers refuse UPDATE and DELETE (a DELETE of an event only once
``audit prune`` has kept its leaf hash). So ``audit verify`` compares every table, index
and trigger's definition (the SQL SQLite keeps in ``sqlite_master``) with the one the recorded
migrations produce; a column whose generating expression was changed (``--outcome deny`` then finds
no denials) or a trigger replaced by one of the same name that does nothing is found, not only a
missing name.

Never edit a migration's text once released: SQLite keeps each statement as written, and the check
replays the migrations to know what a log's schema must be. Change the schema with a new migration.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from typing import Iterator

from ..clock import rfc3339
from . import codec

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "TRIGGERS", "MIGRATIONS_TABLE", "STORED_LEVEL_STEP", "statements",
           "apply_migrations", "expected_schema", "schema_of", "schema_problems"]

TRIGGERS = tuple(f"{table}_no_{op}" for table in ("entries", "nodes", "checkpoints", "pruned", "dicts") for op in ("update", "delete"))
TABLES = ("meta", "entries", "nodes", "checkpoints", "pruned", "dicts", "schema_migrations")

#: The tree levels whose perfect subtrees are stored (from migration 3): every fourth. A node at
#: another level is hashed on demand from at most 8 below it (leaves at levels 1..3).
STORED_LEVEL_STEP = 4

MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"

MIGRATIONS: list[tuple[int, str, str]] = [
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
    # Each leaf stored once, deflated (agentctl.audit.codec); the filters indexed by expression over it
    # (no second copy to disagree with the leaf; a name by a 23-bit hash of it, the query then compares
    # the name itself); leaf hashes and the tree levels between every fourth
    # recomputed on demand (``tag``, the first 4 bytes of the leaf hash, only names an edited event:
    # the tree is what proves); ``dicts`` holds the DEFLATE dictionaries the log trained; the bodies ``audit prune`` drops leave their leaf hashes in ``pruned``. A
    # body may be deleted only once its leaf hash is recorded there.
    (3, "compact storage, every fourth tree level, pruning", """
        CREATE TABLE entries (seq INTEGER PRIMARY KEY, body BLOB NOT NULL, tag BLOB NOT NULL);
        INSERT INTO entries (seq, body, tag) SELECT seq, audit_pack(leaf), substr(leaf_hash, 1, 4) FROM events ORDER BY seq;
        DROP TABLE events;
        CREATE VIEW events AS SELECT seq, audit_leaf(body) AS leaf, audit_leaf_hash(body) AS leaf_hash FROM entries;
        CREATE TABLE pruned (seq INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL);
        CREATE TABLE dicts (id INTEGER PRIMARY KEY, zdict BLOB NOT NULL);
        CREATE INDEX entries_principal ON entries (audit_key(body, 'principal'), audit_time(body));
        CREATE INDEX entries_action ON entries (audit_key(body, 'action'), audit_time(body));
        CREATE INDEX entries_outcome ON entries (audit_key(body, 'outcome'), audit_time(body));
        CREATE INDEX entries_time ON entries (audit_time(body));
        CREATE INDEX entries_marks ON entries (audit_field(body, 'event')) WHERE audit_field(body, 'event') IN ('checkpoint', 'audit_archive', 'audit_prune');
        DROP TRIGGER IF EXISTS nodes_no_delete;
        DELETE FROM nodes WHERE level % 4 != 0;
        CREATE TRIGGER nodes_no_delete BEFORE DELETE ON nodes BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries WHEN NOT EXISTS (SELECT 1 FROM pruned WHERE seq = OLD.seq AND leaf_hash = audit_leaf_hash(OLD.body)) BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: only audit prune drops an event, after keeping its leaf hash'); END;
        CREATE TRIGGER pruned_no_update BEFORE UPDATE ON pruned BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER pruned_no_delete BEFORE DELETE ON pruned BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER dicts_no_update BEFORE UPDATE ON dicts BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER dicts_no_delete BEFORE DELETE ON dicts BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """),
]

SCHEMA_VERSION = max(v for v, _, _ in MIGRATIONS)

#: One schema object: (type, name, table, sql). Automatic indexes (of PRIMARY KEY) have no sql.
Entry = tuple[str, str, str, "str | None"]


def statements(sql: str) -> Iterator[str]:
    """Split a script into complete statements (trigger bodies hold semicolons of their own)."""
    buf = ""
    for part in sql.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                yield buf.strip()
            buf = ""


def schema_of(conn: sqlite3.Connection) -> dict[tuple[str, str], Entry]:
    """Every table, index, trigger and view of a database, by (type, name). SQLite's statistics
    tables (made by ANALYZE) are left out: they change query plans, never results."""
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'")
    return {(t, n): (t, n, tb, s) for t, n, tb, s in rows}


@functools.lru_cache(maxsize=None)
def expected_schema(versions: tuple[int, ...]) -> dict[tuple[str, str], Entry]:
    """The schema the given migrations make, replayed in memory exactly as :func:`migrate` runs them."""
    conn = sqlite3.connect(":memory:")
    codec.register(conn)
    try:
        conn.execute(MIGRATIONS_TABLE)
        for version, _, sql in MIGRATIONS:
            if version in versions:
                for statement in statements(sql):
                    conn.execute(statement)
        return schema_of(conn)
    finally:
        conn.close()


def schema_problems(conn: sqlite3.Connection, versions: tuple[int, ...]) -> list[str]:
    """What differs between the database's schema and the one its recorded migrations make, one
    phrase per object (empty when they are the same). Compared by definition, not by name."""
    have, want = schema_of(conn), expected_schema(versions)
    problems = []
    for key in sorted(want.keys() | have.keys(), key=lambda k: (k[0], k[1])):
        kind, name = key
        if key not in have:
            problems.append(f"{kind} {name} was removed")
        elif key not in want:
            problems.append(f"{kind} {name} was added")
        elif have[key] != want[key]:
            problems.append(f"{kind} {name} was redefined")
    return problems


def apply_migrations(conn: sqlite3.Connection, done: set[int]) -> None:
    """Apply the migrations not in ``done``, inside the caller's transaction."""
    codec.register(conn)
    conn.execute(MIGRATIONS_TABLE)
    for version, name, sql in MIGRATIONS:
        if version in done:
            continue
        for statement in statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, rfc3339(time.time(), micro=True)))
        if version == 1:  # a new log's origin: random, without the host's name (SPEC)
            conn.execute("INSERT INTO meta VALUES ('origin', ?)", (f"agentctl.audit/{os.urandom(8).hex()}",))
