"""The fleet's audit in a real PostgreSQL: init, enroll, ship, verify --from, audit --from.

Every test gets a fresh database in the session's private cluster (conftest.pg_cluster); hosts log in
as their own enrolled roles with passwords from a PGPASSFILE, as in production."""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

psycopg = pytest.importorskip("psycopg") if os.environ.get("CI") != "true" else __import__("psycopg")

_n = itertools.count()


class Fleet:
    """A store (one database) and the homes that ship to it."""

    def __init__(self, cluster, cli, tmp_path, monkeypatch):
        self.cluster, self.cli, self.tmp, self.mp = cluster, cli, tmp_path, monkeypatch
        self.db = f"fleet_{os.getpid()}_{next(_n)}"
        with psycopg.connect(cluster.owner_url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {self.db}")
        self.owner = cluster.owner_url(self.db)
        self.pgpass = tmp_path / "pgpass"
        self.pgpass.write_text("")
        self.pgpass.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(self.pgpass))
        monkeypatch.setenv("AGENTCTL_KEYSTORE", "file")
        r = cli("audit", "ship", "--init", self.owner)
        assert r.code == 0, r.stderr

    def home(self, name: str, events: int = 3):
        """A home with a few events (keygens), its audit key enrolled; returns (path, role url)."""
        h = self.tmp / name
        for i in range(events):
            assert self.run(h, "keygen", f"agent:{name}-{i}").code == 0
        key = self.run(h, "audit", "key").stdout.strip()
        r = self.cli("--json", "audit", "enroll", "--to", self.owner, key)
        assert r.code == 0, r.stderr
        doc = r.json()
        with self.pgpass.open("a") as f:
            f.write(f"*:*:{self.db}:{doc['role']}:{doc['password']}\n")
        return h, self.cluster.url(doc["role"], self.db)

    def run(self, home, *args, **kw):
        return self.cli("--home", str(home), *args, **kw)

    def sql(self, query, args=(), url=None):
        with psycopg.connect(url or self.owner, autocommit=True) as c:
            cur = c.execute(query, args)
            return cur.fetchall() if cur.description else None


@pytest.fixture
def fleet(pg_cluster, cli, tmp_path, monkeypatch):
    return Fleet(pg_cluster, cli, tmp_path, monkeypatch)


def test_ship_then_verify_and_query(fleet):
    a, url_a = fleet.home("a")
    b, url_b = fleet.home("b", events=2)
    r = fleet.run(a, "--json", "audit", "ship", "--to", url_a)
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["events"] >= 3 and doc["checkpoints"] >= 1 and doc["size"] == doc["checkpoint_size"]
    assert fleet.run(b, "audit", "ship", "--to", url_b).code == 0
    # shipping again with nothing new: no new checkpoint is made, nothing is shipped or doubled
    again = fleet.run(a, "--json", "audit", "ship", "--to", url_a).json()
    assert (again["events"], again["checkpoints"], again["size"]) == (0, 0, doc["size"])
    held = fleet.sql("SELECT count(*), max(seq) FROM agentctl_audit.events e JOIN agentctl_audit.logs l ON l.id = e.log_id "
                     "WHERE l.origin = %s", (doc["origin"],))[0]
    assert held == (doc["size"], doc["size"])
    v = fleet.cli("--json", "audit", "verify", "--from", fleet.owner)
    assert v.code == 0, v.stderr
    assert len(v.json()["logs"]) == 2 and all(log["ok"] for log in v.json()["logs"])
    q = fleet.cli("--json", "audit", "--from", fleet.owner, "--agent", "agent:b-1")
    assert q.code == 0 and [e["principal"] for e in q.json()["events"]] == ["agent:b-1"]
    everyone = fleet.cli("--json", "audit", "--from", fleet.owner).json()["events"]
    times = [e["time"] for e in everyone]
    assert times == sorted(times, reverse=True) and len({e["origin"] for e in everyone}) == 2


def test_a_host_cannot_write_or_change_another_hosts_rows(fleet):
    a, url_a = fleet.home("a")
    b, url_b = fleet.home("b")
    assert fleet.run(a, "audit", "ship", "--to", url_a).code == 0
    log_a = fleet.sql("SELECT id FROM agentctl_audit.logs")[0][0]
    with psycopg.connect(url_b, autocommit=True) as c:
        # b cannot even see a's rows ...
        assert c.execute("SELECT count(*) FROM agentctl_audit.events").fetchone()[0] == 0
        # ... nor add an event to a's log, nor open a log under a's key
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("INSERT INTO agentctl_audit.events (log_id, seq, leaf, leaf_hash) VALUES (%s, 999, '{}', '\\x00')", (log_a,))
        key_a = fleet.sql("SELECT key FROM agentctl_audit.logs WHERE id = %s", (log_a,))[0][0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("INSERT INTO agentctl_audit.logs (origin, key) VALUES ('agentctl.audit/evil', %s)", (key_a,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor enroll itself
            c.execute("INSERT INTO agentctl_audit.hosts (key, role) VALUES ('x+00000000+AA==', current_user)")
    with psycopg.connect(url_a, autocommit=True) as c:
        # a itself may not update or delete what it shipped
        for stmt in ("UPDATE agentctl_audit.events SET leaf = leaf", "DELETE FROM agentctl_audit.events",
                     "DELETE FROM agentctl_audit.checkpoints", "TRUNCATE agentctl_audit.events",
                     "UPDATE agentctl_audit.logs SET origin = 'x'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(stmt)
    assert fleet.cli("audit", "verify", "--from", fleet.owner).code == 0


def test_unenrolled_host_is_refused(fleet):
    a, url_a = fleet.home("a")
    b = fleet.tmp / "stranger"
    assert fleet.run(b, "keygen", "agent:x").code == 0
    r = fleet.run(b, "audit", "ship", "--to", url_a)  # a's credentials, b's key
    assert r.code == 1 and "not enrolled" in r.stderr


def test_kill_mid_ship_then_resume_loses_and_doubles_nothing(fleet, monkeypatch):
    from agentctl.audit import ship as ship_mod
    from agentctl.context import Context

    a, url_a = fleet.home("a", events=2)
    for i in range(23):
        assert fleet.run(a, "keygen", f"agent:bulk-{i}").code == 0
    ctx = Context.for_home(a)
    calls = []

    def die(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill between two committed batches

    with pytest.raises(KeyboardInterrupt):
        ship_mod.ship(ctx, url_a, batch=5, progress=die)
    partial = fleet.sql("SELECT count(*) FROM agentctl_audit.events")[0][0]
    assert partial == 10 and fleet.sql("SELECT count(*) FROM agentctl_audit.checkpoints")[0][0] == 0
    result = ship_mod.ship(Context.for_home(a), url_a, batch=5)
    rows = fleet.sql("SELECT seq FROM agentctl_audit.events ORDER BY seq")
    assert [r[0] for r in rows] == list(range(1, result.size + 1)) and result.events == result.size - 10
    assert fleet.cli("audit", "verify", "--from", fleet.owner).code == 0


def test_a_copied_home_is_a_fork(fleet):
    a, url_a = fleet.home("a")
    clone = fleet.tmp / "clone"
    shutil.copytree(a, clone)
    assert fleet.run(a, "keygen", "agent:only-in-a").code == 0
    assert fleet.run(a, "audit", "ship", "--to", url_a).code == 0
    assert fleet.run(clone, "keygen", "agent:only-in-clone").code == 0
    assert fleet.run(clone, "keygen", "agent:only-in-clone-2").code == 0
    r = fleet.run(clone, "--json", "audit", "ship", "--to", url_a)
    assert r.code == 1 and "fork" in r.json()["message"]
    # a re-created audit.db is a new log (new origin), not a fork
    (a / "audit.db").unlink()
    assert fleet.run(a, "keygen", "agent:after").code == 0
    assert fleet.run(a, "audit", "ship", "--to", url_a).code == 0
    assert fleet.sql("SELECT count(*) FROM agentctl_audit.logs")[0][0] == 2


def test_password_on_the_command_line_is_refused_and_not_echoed(fleet, home):
    for url in ("postgresql://u:s3cretpw@localhost/db", "host=localhost password=s3cretpw dbname=x",
                "postgresql://u@localhost/db?password=s3cretpw"):
        for args in (("audit", "ship", "--to", url), ("audit", "ship", "--init", url), ("audit", "verify", "--from", url),
                     ("audit", "--from", url), ("audit", "enroll", "--to", url, "k+00000000+AA==")):
            r = fleet.cli("--json", *args)
            assert r.code == 2, (args, r.stderr)
            assert "s3cretpw" not in r.stdout + r.stderr and "password on the command line" in r.stdout


def test_password_in_the_environment_is_used_and_never_printed(fleet, monkeypatch):
    a, url_a = fleet.home("a")
    role = url_a.split("//")[1].split("@")[0]
    password = fleet.pgpass.read_text().split(":")[-1].strip()
    monkeypatch.setenv("PGPASSFILE", str(fleet.tmp / "none"))
    monkeypatch.setenv("AGENTCTL_AUDIT_URL", url_a.replace(f"{role}@", f"{role}:{password}@"))
    r = fleet.run(a, "audit", "ship")
    assert r.code == 0, r.stderr
    assert password not in r.stdout + r.stderr
    bad = url_a.replace(f"{role}@", f"{role}:wrong{password}@")
    monkeypatch.setenv("AGENTCTL_AUDIT_URL", bad)
    r = fleet.run(a, "--json", "audit", "ship")
    assert r.code == 3 and password not in r.stdout + r.stderr and "authentication failed" in r.stdout


def test_missing_extra_is_exit_3_with_an_honest_hint(cli, home, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    r = cli("--json", "audit", "ship", "--to", "postgresql://u@localhost/db")
    assert r.code == 3
    doc = r.json()
    assert "psycopg" in doc["message"] and "pip install" in doc["hint"] and "pip install agentctl" not in doc["hint"]
    assert "'agentctl[postgres]'" not in doc["hint"]
