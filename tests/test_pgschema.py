"""The central store's schema migrations and the columns the fleet query reads, in a real PostgreSQL.

Migration 2 moved the queryable columns from generated columns to one trigger: these tests hold it to
what the generated columns guaranteed (the columns always say what the leaf says, whoever wrote them),
and check that a store made by migration 1 upgrades with its rows intact."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

psycopg = pytest.importorskip("psycopg") if os.environ.get("CI") != "true" else __import__("psycopg")

from test_ship import Fleet  # noqa: E402

COLUMNS = "time, event, principal, action, outcome, host"


@pytest.fixture
def fleet(pg_cluster, cli, tmp_path, monkeypatch):
    return Fleet(pg_cluster, cli, tmp_path, monkeypatch)


def _columns_match_leaves(fleet) -> int:
    rows = fleet.sql(f"SELECT leaf, {COLUMNS} FROM agentctl_audit.events")
    for leaf, *cols in rows:
        doc = json.loads(leaf)
        assert cols == [doc.get(k) for k in COLUMNS.split(", ")]
    return len(rows)


def test_a_host_cannot_make_the_query_columns_lie(fleet):
    a, url_a = fleet.home("a")
    assert fleet.run(a, "audit", "ship", "--to", url_a).code == 0
    (log_id, top), = fleet.sql("SELECT log_id, max(seq) FROM agentctl_audit.events GROUP BY log_id")
    leaf = json.dumps({"seq": top + 1, "time": "2026-01-01T00:00:00.000000Z", "event": "verify",
                       "principal": "agent:real", "action": "deploy", "outcome": "deny", "host": "h"})
    with psycopg.connect(url_a, autocommit=True) as c:  # the host's own role, its own log
        c.execute(f"INSERT INTO agentctl_audit.events (log_id, seq, leaf, leaf_hash, {COLUMNS}) "
                  "VALUES (%s, %s, %s, %s, 'x', 'x', 'agent:decoy', 'x', 'allow', 'x')", (log_id, top + 1, leaf, os.urandom(32)))
    assert fleet.sql("SELECT principal, outcome FROM agentctl_audit.events WHERE seq = %s", (top + 1,)) == [("agent:real", "deny")]
    q = fleet.cli("--json", "audit", "--from", fleet.owner, "--agent", "agent:decoy")
    assert q.code == 0 and q.json()["events"] == []
    # an owner's UPDATE of a leaf moves its columns with it, as the generated columns did
    fleet.sql("UPDATE agentctl_audit.events SET leaf = replace(leaf, 'agent:real', 'agent:other') WHERE seq = %s", (top + 1,))
    assert _columns_match_leaves(fleet) == top + 1


def test_a_store_made_by_migration_1_upgrades_with_its_rows(fleet, monkeypatch):
    from agentctl.audit import pgschema

    db = fleet.db + "_v1"
    fleet.sql(f"CREATE DATABASE {db}")
    owner = fleet.cluster.owner_url(db)
    with monkeypatch.context() as m:  # the store as an agentctl that knew only migration 1 made it
        m.setattr(pgschema, "MIGRATIONS", pgschema.MIGRATIONS[:1])
        m.setattr(pgschema, "SCHEMA_VERSION", 1)
        assert fleet.cli("audit", "ship", "--init", owner).code == 0
        assert fleet.sql("SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                         "WHERE c.relname = 'events' AND a.attgenerated = 's'", url=owner)[0][0] == 6
    fleet.owner, fleet.db = owner, db
    a, url_a = fleet.home("a", events=4)
    assert fleet.run(a, "audit", "ship", "--to", url_a).code == 0
    before = fleet.sql(f"SELECT seq, {COLUMNS} FROM agentctl_audit.events ORDER BY seq")
    r = fleet.cli("--json", "audit", "ship", "--init", owner)
    assert r.code == 0, r.stderr
    assert fleet.sql("SELECT max(version) FROM agentctl_audit.schema_migrations")[0][0] == pgschema.SCHEMA_VERSION >= 2
    assert fleet.sql(f"SELECT seq, {COLUMNS} FROM agentctl_audit.events ORDER BY seq") == before
    assert fleet.run(a, "keygen", "agent:after-upgrade").code == 0
    assert fleet.run(a, "audit", "ship", "--to", url_a).code == 0
    assert _columns_match_leaves(fleet) > len(before)
    q = fleet.cli("--json", "audit", "--from", owner, "--agent", "agent:after-upgrade", "--limit", "1")
    assert q.code == 0 and [e["principal"] for e in q.json()["events"]] == ["agent:after-upgrade"]
    assert fleet.cli("audit", "verify", "--from", owner).code == 0


def test_ship_refuses_a_leaf_edited_under_its_hash_and_writes_nothing(fleet):
    a, url_a = fleet.home("a", events=3)
    assert fleet.run(a, "keygen", "agent:late").code == 0
    from agentctl.audit import codec

    conn = sqlite3.connect(a / "audit.db")
    codec.register(conn)
    seq = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    for op in ("update", "delete"):
        conn.execute(f"DROP TRIGGER entries_no_{op}")
    leaf = conn.execute("SELECT leaf FROM events WHERE seq = ?", (seq,)).fetchone()[0].replace("agent:late", "agent:lie")
    tag = conn.execute("SELECT tag FROM entries WHERE seq = ?", (seq,)).fetchone()[0]
    conn.execute("UPDATE entries SET body = ?, tag = ? WHERE seq = ?", (codec.pack(leaf.encode()), tag, seq))
    conn.commit()
    conn.close()
    r = fleet.run(a, "--json", "audit", "ship", "--to", url_a)
    # the leaf's hash is the body's own now, so the edit shows as a tree that no longer matches its checkpoint
    assert r.code == 1 and "does not match this home's log" in r.json()["message"]
    assert fleet.sql("SELECT count(*) FROM agentctl_audit.events")[0][0] == 0
