"""``audit verify`` checks the schema itself, by definition, and never creates or writes a log.

From the attacker's side: someone who can write the home redefines an index's expression (so ``audit
--outcome deny`` finds no denials, or ``--agent`` hides an agent's events) or the ``events`` view, replaces the append-only
triggers by do-nothing ones of the same names, adds a trigger, or empties, replaces or deletes
``audit.db``. Each is found (exit 1, naming what differs), also when a kept checkpoint still matches,
and the file is left exactly as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import snapshot

DENIED = "agentctl: denied: audit log tampered"
TRIGGERS = tuple(f"{table}_no_{op}" for table in ("entries", "nodes", "checkpoints", "pruned", "dicts") for op in ("update", "delete"))


def ok(cli, *args):
    r = cli(*args)
    assert r.code == 0, (args, r.stderr)
    return r


@pytest.fixture
def world(cli, home, tmp_path) -> Path:
    """A home with allow and deny verdicts, a checkpoint kept in ``kept.txt``, and two more events."""
    ok(cli, "keygen", "user:alice")
    ok(cli, "keygen", "agent:bot")
    grant = ok(cli, "delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*:api/*").stdout.strip()
    ok(cli, "verify", grant, "--action", "deploy.staging", "--resource", "api/a")
    assert cli("verify", grant, "--action", "admin.x", "--resource", "api/a").code == 1
    ok(cli, "audit", "checkpoint", "-o", str(tmp_path / "kept.txt"))
    ok(cli, "keygen", "agent:later")
    return home


def _writable_schema(home: Path, table: str, old: str, new: str) -> None:
    """Rewrite a table's stored definition in place, as an attacker can with writable_schema."""
    conn = sqlite3.connect(home / "audit.db", isolation_level=None)
    conn.execute("PRAGMA writable_schema = ON")
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    assert old in sql
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = ?", (sql.replace(old, new), table))
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()


def assert_schema_tampered(cli, world, *names: str) -> None:
    kept = str(world.parent / "kept.txt")
    for extra in ((), ("--checkpoint", kept)):
        before = snapshot(world)
        r = cli("audit", "verify", *extra)
        assert r.code == 1, r
        assert r.stderr.startswith(f"{DENIED}: the schema was altered: "), r.stderr
        for name in names:
            assert name in r.stderr
        doc = cli("--json", "audit", "verify", *extra).json()
        assert doc["ok"] is False and doc["problem"].startswith("the schema was altered")
        assert snapshot(world) == before


def test_the_untouched_schema_verifies(cli, world):
    r = ok(cli, "audit", "verify", "--checkpoint", str(world.parent / "kept.txt"))
    assert r.stdout.startswith("audit log intact:")


def test_a_denial_turned_into_an_allow_by_a_redefined_column(cli, world):
    assert ok(cli, "--json", "audit", "--outcome", "deny").json()["events"]
    _writable_schema(world, "entries_outcome", "audit_key(body, 'outcome')",
                     "audit_key(replace(body, 'deny', 'allow'), 'outcome')")
    assert_schema_tampered(cli, world, "index entries_outcome was redefined")


def test_a_denial_turned_into_an_allow_by_a_redefined_view(cli, world):
    _writable_schema(world, "events", "audit_leaf(body) AS leaf", "replace(audit_leaf(body), 'deny', 'allow') AS leaf")
    assert_schema_tampered(cli, world, "view events was redefined")


def test_an_agent_hidden_by_a_redefined_column(cli, world):
    _writable_schema(world, "entries_principal", "audit_key(body, 'principal')",
                     "nullif(audit_key(body, 'principal'), 1)")
    assert_schema_tampered(cli, world, "index entries_principal was redefined")


def test_an_index_redefined_under_its_own_name(cli, world):
    from agentctl.audit import codec

    conn = sqlite3.connect(world / "audit.db", isolation_level=None)
    codec.register(conn)
    conn.execute("DROP INDEX entries_outcome")
    conn.execute("CREATE INDEX entries_outcome ON entries (audit_key(body, 'outcome'), audit_time(body)) WHERE audit_field(body, 'outcome') <> 'deny'")
    conn.close()
    assert_schema_tampered(cli, world, "index entries_outcome was redefined")


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_a_trigger_replaced_by_one_that_does_nothing(cli, world, trigger):
    table, op = trigger.split("_no_")
    conn = sqlite3.connect(world / "audit.db", isolation_level=None)
    conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute(f"CREATE TRIGGER {trigger} BEFORE {op.upper()} ON {table} BEGIN SELECT 1; END")
    conn.close()
    assert_schema_tampered(cli, world, f"trigger {trigger} was redefined")


def test_an_added_trigger_that_rewrites_new_events(cli, world):
    conn = sqlite3.connect(world / "audit.db", isolation_level=None)
    conn.execute("CREATE TRIGGER entries_hide AFTER INSERT ON entries BEGIN SELECT 1; END")
    conn.close()
    assert_schema_tampered(cli, world, "trigger entries_hide was added")


def test_a_removed_migration_record(cli, world):
    conn = sqlite3.connect(world / "audit.db", isolation_level=None)
    conn.execute("DELETE FROM schema_migrations WHERE version = 1")
    conn.close()
    r = cli("audit", "verify")
    assert r.code == 1 and "the recorded migrations are [2, 3]" in r.stderr


# --- a file that is not the log ----------------------------------------------------------------------


def _not_a_log(cli, world, write) -> str:
    for p in world.glob("audit.db*"):
        p.unlink()
    write(world / "audit.db")
    before = (world / "audit.db").read_bytes()
    for extra in ((), ("--checkpoint", str(world.parent / "kept.txt"))):
        r = cli("audit", "verify", *extra)
        assert r.code == 1, r
        assert (world / "audit.db").read_bytes() == before  # never a schema written into it
    r = cli("keygen", "agent:new")  # an appending command refuses it too, before it acts
    assert r.code == 3 and "agentctl never replaces a damaged audit log" in r.stderr
    assert not (world / "principals" / "agent+new.toml").exists()
    assert (world / "audit.db").read_bytes() == before
    assert cli("audit").code == 3
    return cli("audit", "verify").stderr


def test_a_zero_length_log(cli, world):
    stderr = _not_a_log(cli, world, lambda p: p.write_bytes(b""))
    assert stderr == f"{DENIED}: the audit log is empty (0 bytes): its contents were removed\n"


def test_another_sqlite_database(cli, world):
    def foreign(p):
        conn = sqlite3.connect(p)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
        conn.close()

    stderr = _not_a_log(cli, world, foreign)
    assert stderr == f"{DENIED}: the audit log is another SQLite database, not an agentctl audit log\n"


def test_a_file_that_is_not_sqlite(cli, world):
    stderr = _not_a_log(cli, world, lambda p: p.write_bytes(b"not a database at all" * 100))
    assert stderr == f"{DENIED}: the audit log is not a SQLite database\n"


def test_a_deleted_log_is_never_recreated_by_verify(cli, world):
    for p in world.glob("audit.*"):
        p.unlink()
    for extra in ((), ("--checkpoint", str(world.parent / "kept.txt"))):
        r = cli("audit", "verify", *extra)
        assert r.code == 1 and r.stderr.startswith(DENIED)
        assert not (world / "audit.db").exists()
    for args in (("audit",), ("audit", "export"), ("audit", "prove", "1")):
        cli(*args)
        assert not (world / "audit.db").exists()


def test_a_deleted_log_is_found_by_its_leftover_lock_in_an_otherwise_empty_home(cli, home):
    home.mkdir(mode=0o700)
    (home / "audit.lock").write_bytes(b"")
    r = cli("audit", "verify")
    assert r.code == 1 and "was deleted: its audit.lock remains" in r.stderr
    assert not (home / "audit.db").exists()
