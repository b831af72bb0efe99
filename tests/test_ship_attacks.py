"""The central audit store from the attacker's side: forged and inconsistent checkpoints, forks,
rewound logs, a host's log edited after shipping; and the reader's lag report."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import timedelta

import pytest

psycopg = pytest.importorskip("psycopg") if os.environ.get("CI") != "true" else __import__("psycopg")

from test_ship import Fleet  # noqa: E402


@pytest.fixture
def fleet(pg_cluster, cli, tmp_path, monkeypatch):
    return Fleet(pg_cluster, cli, tmp_path, monkeypatch)


def _shipped(fleet, name="a", events=3):
    h, url = fleet.home(name, events)
    r = fleet.run(h, "--json", "audit", "ship", "--to", url)
    assert r.code == 0, r.stderr
    return h, url, r.json()


def _seed(home):
    from agentctl.audit.log import AuditLog
    from agentctl.context import Context
    from agentctl.recording import audit_signer

    ctx = Context.for_home(home)
    log = AuditLog.open(ctx.home)
    try:
        return audit_signer(ctx, log)
    finally:
        log.close()


def _verify(fleet, *extra):
    return fleet.cli("--json", "audit", "verify", "--from", fleet.owner, *extra)


def test_a_checkpoint_signed_by_another_key_is_caught(fleet):
    from agentctl import crypto
    from agentctl.audit.note import checkpoint_body, sign_note

    a, url, doc = _shipped(fleet)
    name, _ = _seed(a)
    (log_id, size, root), = fleet.sql("SELECT log_id, size, root FROM agentctl_audit.checkpoints")
    forged = sign_note(checkpoint_body(doc["origin"], size + 5, bytes(root)), name, crypto.new_seed())
    fleet.sql("INSERT INTO agentctl_audit.checkpoints (log_id, size, root, note) VALUES (%s, %s, %s, %s)", (log_id, size + 5, root, forged))
    r = _verify(fleet)
    assert r.code == 1
    bad = r.json()["logs"][0]
    assert not bad["ok"] and "not signed by the enrolled key" in bad["problem"] and bad["seq"] == size + 5
    assert doc["origin"] in r.stderr and f"event {size + 5}" in r.stderr
    # and the host refuses to build on it
    assert fleet.run(a, "keygen", "agent:more").code == 0
    s = fleet.run(a, "--json", "audit", "ship", "--to", url)
    assert s.code == 1 and "not signed by this host's key" in s.json()["message"]


def test_a_validly_signed_but_inconsistent_checkpoint_is_caught(fleet):
    from agentctl.audit.note import checkpoint_body, sign_note

    a, url, doc = _shipped(fleet, events=4)
    name, seed = _seed(a)
    (log_id, size), = fleet.sql("SELECT log_id, max(size) FROM agentctl_audit.checkpoints GROUP BY log_id")
    lie = os.urandom(32)  # a root of some other history, signed by the host's own key
    fleet.sql("INSERT INTO agentctl_audit.checkpoints (log_id, size, root, note) VALUES (%s, %s, %s, %s)",
              (log_id, size - 1, lie, sign_note(checkpoint_body(doc["origin"], size - 1, lie), name, seed)))
    r = _verify(fleet)
    assert r.code == 1 and "history was rewritten" in r.json()["logs"][0]["problem"] and r.json()["logs"][0]["seq"] == size - 1


def test_an_event_changed_in_the_store_is_named(fleet):
    a, url, doc = _shipped(fleet)
    fleet.sql("UPDATE agentctl_audit.events SET leaf = replace(leaf, 'agent:a-1', 'agent:a-9') WHERE seq = 2")
    r = _verify(fleet)
    assert r.code == 1 and r.json()["logs"][0]["seq"] == 2 and "altered" in r.json()["logs"][0]["problem"]


def test_same_seq_different_contents_is_a_fork_never_skipped(fleet):
    a, url, doc = _shipped(fleet)
    size = doc["size"]
    (log_id,), = fleet.sql("SELECT id FROM agentctl_audit.logs")
    # someone else's event took the next sequence number in the store (a clone that shipped first)
    fleet.sql("INSERT INTO agentctl_audit.events (log_id, seq, leaf, leaf_hash) VALUES (%s, %s, %s, %s)",
              (log_id, size + 1, '{"seq":%d}' % (size + 1), os.urandom(32)))
    assert fleet.run(a, "keygen", "agent:mine").code == 0
    r = fleet.run(a, "--json", "audit", "ship", "--to", url)
    assert r.code == 1 and f"fork: event {size + 1}" in r.json()["message"]
    assert fleet.sql("SELECT count(*) FROM agentctl_audit.events WHERE log_id = %s", (log_id,))[0][0] == size + 1  # nothing added


def _rewrite_local_event(home, seq: int) -> None:
    """An attacker with the host's files edits an event after it was shipped, and rebuilds the tree so
    the local log is self-consistent again."""
    from agentctl.audit import codec, tree

    conn = sqlite3.connect(home / "audit.db")
    codec.register(conn)
    for t in ("entries", "nodes"):
        for op in ("update", "delete"):
            conn.execute(f"DROP TRIGGER {t}_no_{op}")
    leaf = conn.execute("SELECT leaf FROM events WHERE seq = ?", (seq,)).fetchone()[0].replace('"ok"', '"error"', 1)
    conn.execute("UPDATE entries SET body = ?, tag = ? WHERE seq = ?", (codec.pack(leaf.encode()), tree.leaf_hash(leaf.encode())[:4], seq))
    conn.execute("DELETE FROM nodes")
    cr = tree.CompactRange()
    for (h,) in conn.execute("SELECT leaf_hash FROM events ORDER BY seq").fetchall():
        created = cr.append(bytes(h))
        conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", created[4::4])  # every fourth level is stored
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('frontier', ?)", (cr.to_bytes().hex(),))
    conn.commit()
    conn.close()


def test_a_host_log_edited_after_shipping_is_caught_at_the_next_ship(fleet):
    a, url, doc = _shipped(fleet, events=4)
    _rewrite_local_event(a, 2)
    assert fleet.run(a, "keygen", "agent:later").code == 0
    r = fleet.run(a, "--json", "audit", "ship", "--to", url)
    assert r.code == 1
    assert "fork" in r.json()["message"] and "first at event 2" in r.json()["message"]
    assert _verify(fleet).code == 0  # what the store holds is still the original history


def test_a_rewound_log_is_caught_with_state(fleet, tmp_path):
    a, url, doc = _shipped(fleet)
    state = tmp_path / "state"
    assert _verify(fleet, "--state", str(state)).code == 0
    assert len(list(state.glob("*.json"))) == 1
    first = doc["checkpoint_size"]
    assert fleet.run(a, "keygen", "agent:more").code == 0
    assert fleet.run(a, "audit", "ship", "--to", url).code == 0
    assert _verify(fleet, "--state", str(state)).code == 0  # the state moves to the newer checkpoint
    # the store's owner (or someone with its password) rewinds the log to the first checkpoint
    fleet.sql("DELETE FROM agentctl_audit.checkpoints WHERE size > %s", (first,))
    fleet.sql("DELETE FROM agentctl_audit.events WHERE seq > %s", (first,))
    assert _verify(fleet).code == 0  # without a memory of what was seen, a rewind is a valid shorter log
    r = _verify(fleet, "--state", str(state))
    assert r.code == 1 and "shorter than seen" in r.json()["logs"][0]["problem"] and r.json()["logs"][0]["seq"] == first + 1
    assert doc["origin"] in r.stderr
    # a log deleted from the store altogether is reported too
    fleet.sql("DELETE FROM agentctl_audit.checkpoints")
    fleet.sql("DELETE FROM agentctl_audit.events")
    fleet.sql("DELETE FROM agentctl_audit.logs")
    r = _verify(fleet, "--state", str(state))
    assert r.code == 1 and r.json()["gone"] == [doc["origin"]]


def test_lagging_log_is_reported(fleet):
    from agentctl.audit.fleet import verify_store

    _shipped(fleet)
    (last,), = fleet.sql("SELECT max(received) FROM agentctl_audit.checkpoints")
    fresh = verify_store(fleet.owner, max_lag=3600, now=(last + timedelta(minutes=59)).timestamp())
    stale = verify_store(fleet.owner, max_lag=3600, now=(last + timedelta(minutes=61)).timestamp())
    assert fresh.ok and not fresh.logs[0].lagging
    assert stale.ok and stale.logs[0].lagging and stale.doc()["lagging"] == [stale.logs[0].origin]


def test_ship_max_lag_is_read_from_config(tmp_path):
    from agentctl.home import Home

    h = tmp_path / "h"
    h.mkdir(mode=0o700)
    (h / "config.toml").write_text('[audit]\nship_max_lag = "2h"\n')
    assert Home(h).config.ship_max_lag == 7200 and Home(h).config.audit is True
    (h / "config.toml").write_text('[audit]\nship_lag = "2h"\n')
    with pytest.raises(Exception, match="ship_lag"):
        Home(h).config


def test_two_hosts_ship_concurrently(fleet):
    from agentctl.audit.ship import ship
    from agentctl.context import Context

    homes = [fleet.home(n, events=12) for n in ("a", "b")]
    results, errors = [], []

    def go(h, url):
        try:
            results.append(ship(Context.for_home(h), url, batch=3))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=hu) for hu in homes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2
    v = _verify(fleet)
    assert v.code == 0 and sorted(log["size"] for log in v.json()["logs"]) == sorted(r.size for r in results)
