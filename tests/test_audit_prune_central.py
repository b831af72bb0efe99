"""Pruning what the central store holds: only events shipped under a checkpoint this host signed and
this log matches; a store that claims more than it holds does not make a prune of the rest."""

from __future__ import annotations

import json
import os

import pytest

psycopg = pytest.importorskip("psycopg") if os.environ.get("CI") != "true" else __import__("psycopg")

from test_ship import Fleet  # noqa: E402


@pytest.fixture
def fleet(pg_cluster, cli, tmp_path, monkeypatch):
    return Fleet(pg_cluster, cli, tmp_path, monkeypatch)


def _times(fleet, home) -> list[str]:
    out = fleet.run(home, "audit", "export").stdout
    return [json.loads(line)["time"] for line in out.splitlines()]


def test_prune_what_the_central_store_holds_and_nothing_more(fleet):
    a, url = fleet.home("a", events=6)
    r = fleet.run(a, "audit", "prune", "--before", _times(fleet, a)[3], "--to", url)
    assert r.code == 1 and "neither archived nor in the central store" in r.stderr  # nothing shipped yet
    assert fleet.run(a, "audit", "ship", "--to", url).code == 0
    shipped = len(_times(fleet, a))
    for _ in range(3):
        assert fleet.run(a, "keygen", f"agent:later{_}").code == 0
    times = _times(fleet, a)
    r = fleet.run(a, "audit", "prune", "--before", times[-1], "--to", url)  # reaches past what was shipped
    assert r.code == 1 and "nothing was pruned" in r.stderr
    r = fleet.run(a, "--json", "audit", "prune", "--before", times[3], "--to", url)
    assert r.code == 0, r.stderr
    doc = r.json()
    assert (doc["first"], doc["last"]) == (1, 3) and doc["held_by"].startswith("central store")
    assert shipped >= 3
    v = fleet.run(a, "--json", "audit", "verify")
    assert v.code == 0 and v.json()["pruned_through"] == 3
    assert fleet.run(a, "audit", "ship", "--to", url).code == 0  # shipping goes on from where the store is
    assert fleet.run(a, "audit", "verify", "--from", url).code == 0


def test_a_store_whose_checkpoint_does_not_match_the_log_prunes_nothing(fleet):
    a, url = fleet.home("a", events=4)
    assert fleet.run(a, "audit", "ship", "--to", url).code == 0
    fleet.sql("DELETE FROM agentctl_audit.events WHERE seq = 2")  # the store lost an event it vouched for
    r = fleet.run(a, "audit", "prune", "--before", _times(fleet, a)[3], "--to", url)
    assert r.code == 1 and "does not match it: nothing was pruned" in r.stderr
    assert fleet.run(a, "--json", "audit", "verify").json()["pruned_through"] == 0
