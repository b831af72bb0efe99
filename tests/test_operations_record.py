"""Library operations that change state record their own audit events (``recorder=``): keygen,
import, rotate, revoke, role, trust and revocation export/import, sync. Each is called here as a tool
server would, with a MemoryRecorder: the event it records is checked field by field, a recorder that
fails leaves nothing changed, and the command line records exactly the same events."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentctl import jws
from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.encoding import did_key
from agentctl.errors import DeniedError, OperationalError, UsageError, VerificationError
from agentctl.events import Event
from agentctl.home import Home
from agentctl.identity import (
    import_principal,
    import_rotation,
    keygen,
    revoke_grant,
    revoke_key,
    revoke_principal,
    rotate,
    set_roles,
    signer_for,
)
from agentctl.recording import MemoryRecorder, Recorder
from agentctl.revocation_lists import export_list, import_list
from agentctl.store import Store
from agentctl.sync import sync
from agentctl.trust_bundles import export_bundle, import_bundle

from conftest import snapshot

T0 = 1_800_000_000
JTI = "A" * 22


class FailingRecorder(Recorder):
    """A log that cannot be written: a full disk."""

    def __init__(self) -> None:
        self.tried: list[Event] = []

    def record(self, *events: Event) -> None:
        self.tried.extend(events)
        raise OperationalError("audit append failed: database or disk is full")


class FailOnce(Recorder):
    """Records into ``mem`` but fails on the first event whose outcome is ``ok``."""

    def __init__(self) -> None:
        self.mem = MemoryRecorder()
        self.failed = False

    def record(self, *events: Event) -> None:
        if not self.failed and any(e.outcome == "ok" for e in events):
            self.failed = True
            raise OperationalError("audit append failed")
        self.mem.record(*events)


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(Home(tmp_path / "home"), clock=FixedClock(T0))


def only(rec: MemoryRecorder) -> Event:
    assert len(rec.events) == 1, rec.events
    return rec.events[0]


def unchanged_by_failing(tmp_path: Path, op, *args, **kw) -> FailingRecorder:
    """Run ``op`` with a recorder that fails: it raises that failure and every file (the home and the
    keyring) is as it was."""
    before = snapshot(tmp_path)
    bad = FailingRecorder()
    with pytest.raises(OperationalError, match="audit append failed"):
        op(*args, recorder=bad, **kw)
    assert snapshot(tmp_path) == before
    assert bad.tried, "the operation never tried to record"
    return bad


# --- keygen, import, rotate --------------------------------------------------------------------------


def test_keygen_records_its_event(ctx):
    rec = MemoryRecorder()
    p, secret = keygen(ctx, "agent:a", roles=("deployer",), attrs=("team=web",), recorder=rec)
    assert secret is None
    assert only(rec) == Event("keygen", "ok", principal="agent:a", metadata={
        "kid": p.current.kid, "keystore": p.keystore, "exported": False, "roles": ["deployer"], "attrs": {"team": "web"}})


def test_keygen_replace_records_the_replaced_key(ctx):
    old, _ = keygen(ctx, "agent:ci", export_secret=True, store_secret=False)
    rec = MemoryRecorder()
    p, secret = keygen(ctx, "agent:ci", export_secret=True, store_secret=False, replace=True, recorder=rec)
    ev = only(rec)
    assert secret is not None and ev.metadata["exported"] is True and ev.metadata["keystore"] is None
    assert ev.metadata["replaced"] == old.current.kid != p.current.kid


def test_keygen_that_cannot_be_recorded_creates_nothing(ctx, tmp_path):
    keygen(ctx, "user:first")  # the home exists
    unchanged_by_failing(tmp_path, keygen, ctx, "agent:a")
    assert Store(ctx.home).get("agent:a") is None
    keygen(ctx, "agent:a")  # the name is still free


def test_import_records_and_a_failed_record_leaves_it_unknown(ctx, tmp_path):
    far = Context(Home(tmp_path / "far"), clock=FixedClock(T0))
    p, _ = keygen(far, "agent:far")
    keygen(ctx, "user:first")
    unchanged_by_failing(tmp_path, import_principal, ctx, "agent:far", did_key(p.current.public))
    rec = MemoryRecorder()
    import_principal(ctx, "agent:far", did_key(p.current.public), roles=("reader",), recorder=rec)
    assert only(rec) == Event("import", "ok", principal="agent:far", metadata={"kid": p.current.kid, "roles": ["reader"]})


def test_rotate_records_and_a_failed_record_keeps_the_old_key(ctx, tmp_path):
    p, _ = keygen(ctx, "agent:a")
    unchanged_by_failing(tmp_path, rotate, ctx, "agent:a")
    assert signer_for(ctx, "agent:a").kid == p.current.kid  # still current, its secret still here
    rec = MemoryRecorder()
    new, statement, secret = rotate(ctx, "agent:a", recorder=rec)
    assert only(rec) == Event("rotate", "ok", principal="agent:a", metadata={"kid": new.current.kid, "retired": p.current.kid, "exported": False})
    assert jws.decode(statement, jws.ROTATION).claims["new_kid"] == new.current.kid


def test_import_rotation_records_ok_again_and_deny(ctx, tmp_path):
    far = Context(Home(tmp_path / "far"), clock=FixedClock(T0))
    p, _ = keygen(far, "agent:far")
    import_principal(ctx, "agent:far", did_key(p.current.public))
    new, statement, _ = rotate(far, "agent:far")
    unchanged_by_failing(tmp_path, import_rotation, ctx, "agent:far", statement)
    assert Store(ctx.home).require("agent:far").current.kid == p.current.kid
    rec = MemoryRecorder()
    import_rotation(ctx, "agent:far", statement, recorder=rec)
    import_rotation(ctx, "agent:far", statement, recorder=rec)  # applied before: recorded, nothing retired
    assert rec.events == [
        Event("import", "ok", principal="agent:far", metadata={"rotation": True, "kid": new.current.kid, "retired": p.current.kid}),
        Event("import", "ok", principal="agent:far", metadata={"rotation": True, "kid": new.current.kid, "retired": new.current.kid}),
    ]
    # an attacker's statement: the right shape, signed by a key that is not agent:far's
    keygen(ctx, "agent:evil")
    forged = jws.encode(jws.ROTATION, jws.decode(statement, jws.ROTATION).claims, signer_for(ctx, "agent:evil").seed)
    rec = MemoryRecorder()
    with pytest.raises(VerificationError) as e:
        import_rotation(ctx, "agent:far", forged, recorder=rec)
    ev = only(rec)
    assert (ev.event, ev.outcome, ev.principal, ev.reason) == ("import", "deny", "agent:far", e.value.reason)
    assert ev.metadata == {"rotation": True, "detail": e.value.detail}


# --- revoke, role ------------------------------------------------------------------------------------


def test_revocations_record_each_kind_and_a_repeat_as_not_new(ctx, tmp_path):
    p, _ = keygen(ctx, "agent:a")
    q, _ = keygen(ctx, "agent:b")
    for op, arg in ((revoke_principal, "agent:a"), (revoke_key, q.current.kid), (revoke_grant, JTI)):
        unchanged_by_failing(tmp_path, op, ctx, arg, "why")
    assert not Store(ctx.home).revocations().entries
    assert signer_for(ctx, "agent:a").kid == p.current.kid  # its secret was not dropped either
    rec = MemoryRecorder()
    revoke_principal(ctx, "agent:a", "left", recorder=rec)
    revoke_key(ctx, q.current.kid, recorder=rec)
    revoke_grant(ctx, JTI, "leaked", recorder=rec)
    revoke_grant(ctx, JTI, "again", recorder=rec)
    assert rec.events == [
        Event("revoke", "ok", principal="agent:a", reason="left", metadata={"kind": "principal", "id": "agent:a", "new": True}),
        Event("revoke", "ok", metadata={"kind": "key", "id": q.current.kid, "new": True}),
        Event("revoke", "ok", jtis=(JTI,), reason="leaked", metadata={"kind": "grant", "id": JTI, "new": True}),
        Event("revoke", "ok", jtis=(JTI,), reason="leaked", metadata={"kind": "grant", "id": JTI, "new": False}),
    ]


def test_set_roles_records_and_a_failed_record_keeps_the_roles(ctx, tmp_path):
    keygen(ctx, "agent:a", roles=("reader",))
    unchanged_by_failing(tmp_path, set_roles, ctx, "agent:a", add=("deployer",))
    assert Store(ctx.home).require("agent:a").roles == ("reader",)
    rec = MemoryRecorder()
    set_roles(ctx, "agent:a", add=("deployer", "reader"), recorder=rec)
    set_roles(ctx, "agent:a", remove=("reader",), recorder=rec)
    assert rec.events == [
        Event("role", "ok", principal="agent:a", metadata={"op": "add", "added": ["deployer"], "removed": [], "roles": ["reader", "deployer"]}),
        Event("role", "ok", principal="agent:a", metadata={"op": "remove", "added": [], "removed": ["reader"], "roles": ["deployer"]}),
    ]


def test_output_that_fails_after_recording_undoes_and_says_so(ctx, tmp_path):
    """``then`` (the CLI prints a secret there) fails: the change is undone, and recorded as undone."""
    keygen(ctx, "user:first")
    before = snapshot(tmp_path)
    rec = MemoryRecorder()

    def lost(principal, secret):
        raise OperationalError("cannot write the exported secret to stdout")

    with pytest.raises(OperationalError):
        keygen(ctx, "agent:ci", export_secret=True, store_secret=False, recorder=rec, then=lost)
    assert snapshot(tmp_path) == before
    assert [(e.event, e.outcome) for e in rec.events] == [("keygen", "ok"), ("keygen", "error")]
    assert rec.events[1] == Event("keygen", "error", principal="agent:ci",
                                  metadata={"undone": True, "detail": "cannot write the exported secret to stdout"})


# --- trust bundles, revocation lists, sync -----------------------------------------------------------


@pytest.fixture
def fleet(tmp_path):
    """An admin home and a tool home whose trust and revocation sources are signed by user:admin."""
    clock = FixedClock(T0)
    admin = Context(Home(tmp_path / "admin"), clock=clock)
    tool = Context(Home(tmp_path / "tool"), clock=clock)
    signer, _ = keygen(admin, "user:admin")
    keygen(admin, "agent:a1", roles=("deployer",))
    import_principal(tool, "user:admin", did_key(signer.current.public))
    tool.home.config_file.write_text(
        f'[[sources]]\nkind = "trust"\nurl = "file://{tmp_path}/trust.jwt"\nsigner = "user:admin"\n'
        'names = ["agent:*"]\nroles = ["deployer"]\n'
        f'[[sources]]\nkind = "revocations"\nurl = "file://{tmp_path}/revocations.jwt"\nsigner = "user:admin"\n')
    return admin, tool


def test_trust_export_and_import_record_and_refusals_are_denials(fleet, tmp_path):
    admin, tool = fleet
    unchanged_by_failing(tmp_path, export_bundle, admin, "user:admin")
    rec = MemoryRecorder()
    token, version, count = export_bundle(admin, "user:admin", recorder=rec)
    assert version == 1  # the failed export did not count
    assert only(rec) == Event("trust.export", "ok", principal="user:admin", metadata={"version": 1, "principals": 2})
    unchanged_by_failing(tmp_path, import_bundle, tool, token)
    assert Store(tool.home).get("agent:a1") is None
    rec = MemoryRecorder()
    import_bundle(tool, token, recorder=rec)
    import_bundle(tool, token, recorder=rec)
    meta = {"version": 1, "added": ["agent:a1"], "removed": [], "changed": [], "unchanged": False}
    assert rec.events == [Event("trust.import", "ok", principal="user:admin", metadata=meta),
                          Event("trust.import", "ok", principal="user:admin", metadata={
                              "version": 1, "added": [], "removed": [], "changed": [], "unchanged": True})]
    # a replayed (older) bundle, and one from a signer that is no trust source's
    newer = export_bundle(admin, "user:admin")[0]
    import_bundle(tool, newer)
    rec = MemoryRecorder()
    with pytest.raises(VerificationError) as e:
        import_bundle(tool, token, recorder=rec)
    assert only(rec) == Event("trust.import", "deny", reason="replayed", metadata={"detail": e.value.detail})
    c = jws.decode(newer, jws.TRUST, limit=jws.MAX_LIST_BYTES).claims
    c["principals"] = []
    rec = MemoryRecorder()
    with pytest.raises(DeniedError) as d:  # equivocation: the same version, other content
        import_bundle(tool, jws.encode(jws.TRUST, c, signer_for(admin, "user:admin").seed), recorder=rec)
    assert only(rec) == Event("trust.import", "deny", metadata={"detail": d.value.message})


def test_revocation_lists_record_and_a_bad_one_is_a_denial(fleet, tmp_path):
    admin, tool = fleet
    revoke_grant(admin, JTI)
    unchanged_by_failing(tmp_path, export_list, admin, "user:admin")
    rec = MemoryRecorder()
    token, version, count = export_list(admin, "user:admin", recorder=rec)
    assert only(rec) == Event("revocations.export", "ok", principal="user:admin", metadata={"version": 1, "entries": 1})
    unchanged_by_failing(tmp_path, import_list, tool, token)
    assert not Store(tool.home).revocations().entries
    rec = MemoryRecorder()
    import_list(tool, token, recorder=rec)
    assert only(rec) == Event("revocations.import", "ok", principal="user:admin", metadata={"version": 1, "added": 1})
    head, body, sig = token.split(".")
    rec = MemoryRecorder()
    with pytest.raises(VerificationError) as e:
        import_list(tool, f"{head}.{body}.{sig[:-4]}AAAA", recorder=rec)
    assert only(rec) == Event("revocations.import", "deny", reason=e.value.reason, metadata={"detail": e.value.detail})


def test_sync_records_one_event_per_source(fleet, tmp_path):
    admin, tool = fleet
    (tmp_path / "trust.jwt").write_text(export_bundle(admin, "user:admin")[0] + "\n")
    (tmp_path / "revocations.jwt").write_text("garbage\n")
    rec = MemoryRecorder()
    results = sync(tool, recorder=rec)
    assert [r.status for r in results] == ["updated", "refused"]
    assert rec.events == [r.event() for r in results]
    trust, revs = rec.events
    assert (trust.event, trust.outcome, trust.principal) == ("sync", "ok", "user:admin")
    assert trust.metadata["changes"] == {"added": ["agent:a1"], "removed": [], "changed": []} and "signer" not in trust.metadata
    assert (revs.outcome, revs.reason) == ("deny", "malformed")


# --- the command line records the same --------------------------------------------------------------


def _fields(doc: dict) -> Event:
    return Event(doc["event"], doc["outcome"], principal=doc["principal"], on_behalf_of=doc["on_behalf_of"], chain=tuple(doc["chain"]),
                 action=doc["action"], resource=doc["resource"], reason=doc["reason"], jtis=tuple(doc["jtis"]), metadata=doc["metadata"])


def test_the_command_line_records_what_the_library_records(cli, tmp_path, ctx):
    where = str(tmp_path / "cli")
    for args in (("keygen", "agent:a", "--role", "reader", "--attr", "team=web"), ("role", "add", "agent:a", "deployer"),
                 ("revoke", "--jti", JTI, "--reason", "leaked"), ("rotate", "agent:a", "-o", str(tmp_path / "rot.jwt")),
                 ("revoke", "agent:a")):
        r = cli("--home", where, *args)
        assert r.code == 0, r.stderr
    docs = cli("--home", where, "--json", "audit").json()["events"]
    by_cli = [_fields(d) for d in reversed(docs) if d["event"] != "checkpoint"]
    rec = MemoryRecorder()
    keygen(ctx, "agent:a", roles=("reader",), attrs=("team=web",), recorder=rec)
    set_roles(ctx, "agent:a", add=("deployer",), recorder=rec)
    revoke_grant(ctx, JTI, "leaked", recorder=rec)
    rotate(ctx, "agent:a", recorder=rec)
    revoke_principal(ctx, "agent:a", recorder=rec)
    kids = {}  # the keys differ between the two homes: compare them by position

    def same(ev: Event) -> Event:
        meta = {k: kids.setdefault(v, f"kid{len(kids)}") if k in ("kid", "retired") else v for k, v in ev.metadata.items()}
        return Event(ev.event, ev.outcome, ev.principal, ev.on_behalf_of, ev.chain, ev.action, ev.resource, ev.reason, ev.jtis, meta)

    lib = [same(e) for e in rec.events]
    kids.clear()
    assert [same(e) for e in by_cli] == lib


# --- a principal held from a trust source takes its roles from there -------------------------------


def test_roles_of_a_principal_from_a_trust_source_are_refused(fleet, tmp_path):
    admin, tool = fleet
    import_bundle(tool, export_bundle(admin, "user:admin")[0])
    before = snapshot(tmp_path)
    rec = MemoryRecorder()
    with pytest.raises(UsageError, match="trust source") as e:
        set_roles(tool, "agent:a1", add=("admin",), recorder=rec)
    assert "user:admin" in e.value.message
    assert snapshot(tmp_path) == before and rec.events == []


def test_cli_role_add_or_remove_on_a_principal_from_a_trust_source_is_refused(cli, tmp_path):
    admin, tool = tmp_path / "admin", tmp_path / "tool"
    did = cli("--home", str(admin), "keygen", "user:admin").stdout.strip()
    assert cli("--home", str(admin), "keygen", "agent:a1", "--role", "deployer").code == 0
    bundle = tmp_path / "trust.jwt"
    assert cli("--home", str(admin), "trust", "export", "--sign-as", "user:admin", "-o", str(bundle)).code == 0
    tool.mkdir(mode=0o700)
    (tool / "config.toml").write_text(
        f'[[sources]]\nkind = "trust"\nurl = "file://{bundle}"\nsigner = "user:admin"\nkey = "{did}"\nnames = ["agent:*"]\nroles = ["deployer"]\n')
    assert cli("--home", str(tool), "sync").code == 0
    before = snapshot(tmp_path)
    for op, role in (("add", "admin"), ("remove", "deployer")):
        r = cli("--home", str(tool), "role", op, "agent:a1", role)
        assert r.code == 2, r.stderr
        assert r.stderr.startswith("agentctl: error: principal 'agent:a1' is held from the trust source signed by user:admin")
        assert "Traceback" not in r.stderr
    assert snapshot(tmp_path) == before  # no role changed and nothing recorded
    # the signer itself is a principal of this home, not one the source defines: its roles stay this home's
    assert cli("--home", str(tool), "role", "add", "user:admin", "revoker").code == 0
