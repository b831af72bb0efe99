"""`agentctl sync` applies a source and records its `sync` event together (SPEC "Audit log": a state
change and its audit event succeed or fail together). With a recorder that fails, nothing about the
source changes: not its principals or revocations, not its pinned signer, not its state in
`sources.toml` (validators, error, fetch time) nor its last good copy. Against the real HTTPS server of
test_sync.py, and file:// sources through the command line."""

from __future__ import annotations

import pytest

from agentctl.audit import AuditLog
from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.encoding import did_key
from agentctl.errors import OperationalError
from agentctl.events import Event
from agentctl.home import Home
from agentctl.identity import keygen, revoke_principal
from agentctl.recording import MemoryRecorder, Recorder
from agentctl.revocation_lists import export_list
from agentctl.store import Store
from agentctl.sync import sync, sync_source
from agentctl.trust_bundles import export_bundle

from conftest import snapshot
from test_sync import T0, Fleet, Server

pytest.importorskip("cryptography.x509", reason="the HTTPS tests make a certificate with the cryptography package")


class FailingRecorder(Recorder):
    """A log that cannot be written (a full disk) from the ``after``-th event on (0: the first)."""

    def __init__(self, after: int = 0) -> None:
        self.mem = MemoryRecorder()
        self.after = after
        self.tried: list[Event] = []

    def record(self, *events: Event) -> None:
        self.tried.extend(events)
        if len(self.mem.events) >= self.after:
            raise OperationalError("audit append failed: database or disk is full")
        self.mem.record(*events)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def fleet(tmp_path, server):
    return Fleet(tmp_path, server)


def _new_version(fleet: Fleet) -> None:
    """The admin home changes (a new agent, a revocation) and publishes both sources again."""
    keygen(fleet.admin, "agent:a2", roles=("deployer",))
    keygen(fleet.admin, "agent:gone")
    revoke_principal(fleet.admin, "agent:gone")
    fleet.publish()


def _first(fleet: Fleet) -> None:
    fleet.publish()


def _update(fleet: Fleet) -> None:
    fleet.publish()
    fleet.sync()
    _new_version(fleet)


def _refused(fleet: Fleet) -> None:
    fleet.publish()
    fleet.sync()
    fleet.server.routes["/trust.jwt"] = ("body", b"<html>not a token</html>")
    fleet.server.routes["/revs.jwt"] = ("body", b"<html>not a token</html>")


def _unchanged(fleet: Fleet) -> None:  # a 304: only the fetch time and the cleared error would change
    bundle, revs = fleet.publish()
    fleet.sync()
    fleet.server.routes["/trust.jwt"] = ("status", 503)
    fleet.server.routes["/revs.jwt"] = ("status", 503)
    fleet.sync()  # both now carry an error that a good fetch clears
    fleet.server.routes["/trust.jwt"] = ("body", bundle.encode())
    fleet.server.routes["/revs.jwt"] = ("body", revs.encode())
    fleet.clock.advance(60)


def _unreachable(fleet: Fleet) -> None:
    fleet.publish()
    fleet.sync()
    fleet.server.routes["/trust.jwt"] = ("status", 503)
    fleet.server.routes["/revs.jwt"] = ("status", 503)


SITUATIONS = {"first sync": (_first, "updated"), "a new version": (_update, "updated"), "a refusal": (_refused, "refused"),
              "unchanged": (_unchanged, "current"), "unreachable": (_unreachable, "unreachable")}


@pytest.mark.parametrize("kind", ["trust", "revocations"])
@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_a_source_whose_event_cannot_be_recorded_is_left_as_it_was(fleet, tmp_path, kind, situation):
    prepare, status = SITUATIONS[situation]
    prepare(fleet)
    before = snapshot(tmp_path / "tool")
    bad = FailingRecorder()
    with pytest.raises(OperationalError, match="audit append failed"):
        sync_source(fleet.tool, fleet.source(kind), fetcher=fleet.server.fetcher(), recorder=bad)
    assert [(e.event, e.principal) for e in bad.tried] == [("sync", "user:admin")]  # it tried, once
    assert snapshot(tmp_path / "tool") == before
    # once the log works again, the same sync does what it would have done, and records it
    rec = MemoryRecorder()
    r = sync_source(fleet.tool, fleet.source(kind), fetcher=fleet.server.fetcher(), recorder=rec)
    assert r.status == status and rec.events == [r.event()]
    if status != "current":
        assert snapshot(tmp_path / "tool") != before


def test_a_failed_first_sync_pins_nothing_and_the_retry_applies_everything(fleet, tmp_path):
    fleet.publish()
    with pytest.raises(OperationalError):
        sync_source(fleet.tool, fleet.source("trust"), fetcher=fleet.server.fetcher(), recorder=FailingRecorder())
    store = Store(fleet.tool.home)
    assert store.get("user:admin") is None and store.get("agent:a1") is None
    assert not (tmp_path / "tool" / "sources.toml").exists() and not list((tmp_path / "tool").glob("sources/*"))
    rec = MemoryRecorder()
    r = sync_source(fleet.tool, fleet.source("trust"), fetcher=fleet.server.fetcher(), recorder=rec)
    # not "current": the copy the failed sync fetched was not kept as the last good one
    assert r.status == "updated" and r.changes["added"] == ["agent:a1"]
    assert rec.events[0].metadata["changes"] == {"added": ["agent:a1"], "removed": [], "changed": []}
    assert store.get("agent:a1") is not None


def test_a_failed_update_keeps_the_version_held(fleet):
    fleet.publish()
    fleet.sync()
    _new_version(fleet)
    for kind in ("trust", "revocations"):
        with pytest.raises(OperationalError):
            sync_source(fleet.tool, fleet.source(kind), fetcher=fleet.server.fetcher(), recorder=FailingRecorder())
    store = Store(fleet.tool.home)
    assert store.get("agent:a2") is None and not store.revocations().principal("agent:gone")
    results = sync(fleet.tool, fetcher=fleet.server.fetcher(), recorder=MemoryRecorder())
    assert [(r.status, r.version) for r in results] == [("updated", 2), ("updated", 2)]
    assert store.get("agent:a2") is not None and store.revocations().principal("agent:gone")


def test_a_failure_to_record_stops_the_sync_at_that_source(fleet, tmp_path):
    fleet.publish()
    rec = FailingRecorder(after=1)  # the trust source's event is recorded, the revocation source's is not
    with pytest.raises(OperationalError):
        sync(fleet.tool, fetcher=fleet.server.fetcher(), recorder=rec)
    assert [(e.event, e.outcome, e.metadata["kind"]) for e in rec.mem.events] == [("sync", "ok", "trust")]
    store = Store(fleet.tool.home)
    assert store.get("agent:a1") is not None  # applied and recorded
    assert not (tmp_path / "tool" / "revocation-lists.toml").exists()
    from agentctl.sources import SourceStates

    assert set(SourceStates(fleet.tool.home).load()) == {fleet.server.url("/trust.jwt")}


# --- the command line, with file:// sources --------------------------------------------------------


@pytest.fixture
def audit_fails(monkeypatch):
    """Every audit append fails from now on, as with a full disk."""

    def on() -> None:
        def fail(self, evs, clock=None):
            raise OperationalError("audit append failed: database or disk is full")

        monkeypatch.setattr(AuditLog, "append", fail)

    return on


def test_sync_whose_event_cannot_be_recorded_exits_3_and_changes_nothing(cli, home, tmp_path, audit_fails):
    admin = Context(Home(tmp_path / "admin"), clock=FixedClock(T0))
    signer, _ = keygen(admin, "user:admin")
    keygen(admin, "agent:a1", roles=("deployer",))
    revoke_principal(admin, "agent:a1")
    (tmp_path / "trust.jwt").write_text(export_bundle(admin, "user:admin")[0] + "\n")
    (tmp_path / "revocations.jwt").write_text(export_list(admin, "user:admin")[0] + "\n")
    assert cli("keygen", "user:me").code == 0  # the home and its audit log exist
    pin = did_key(signer.current.public)
    (home / "config.toml").write_text(
        f'[[sources]]\nkind = "trust"\nurl = "file://{tmp_path}/trust.jwt"\nsigner = "user:admin"\nkey = "{pin}"\n'
        'names = ["agent:*"]\nroles = ["deployer"]\n'
        f'[[sources]]\nkind = "revocations"\nurl = "file://{tmp_path}/revocations.jwt"\nsigner = "user:admin"\nkey = "{pin}"\n')
    before = snapshot(home)
    audit_fails()
    r = cli("sync")
    assert r.code == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == "agentctl: error: audit append failed: database or disk is full" and "Traceback" not in r.stderr
    assert snapshot(home) == before
