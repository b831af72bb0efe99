"""The indexed revocation store (``revocations.db``): lookups by id, the migration of an old
``revocations.toml``, damage that is reported and never repaired, a change and its audit event together,
and revoked grants that drop out of lists once they have expired."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from conftest import snapshot

from agentctl import jws
from agentctl.clock import FixedClock
from agentctl.context import Context
from agentctl.encoding import b64u_encode
from agentctl.errors import OperationalError, StoreError, VerificationError
from agentctl.grants import parse_chain
from agentctl.home import Home
from agentctl.identity import keygen, revoke_grant, revoke_principal, set_roles
from agentctl.models import Revocation, Revocations
from agentctl.revocation_lists import export_list, import_list, verify_list
from agentctl.revocation_store import RevocationStore, StoredRevocations
from agentctl.store import Store
from agentctl.verify import StoreTrust

from test_actions import World

T0 = 1_800_000_000.0

# What an earlier agentctl wrote (tomli-w of Store.put_revocations): kept verbatim, as homes hold it.
OLD_TOML = """\
[[principal]]
id = "agent:gone"
at = 2026-11-29T14:54:02.123456+00:00
reason = "left the team"

[[key]]
id = "{kid}"
at = 2026-11-29T14:55:00+00:00

[[grant]]
id = "PVwt7Y018B1rWW0ADeMYRQ"
at = 2026-11-29T14:56:00+00:00
reason = "test"
"""


def jti(i: int) -> str:
    return b64u_encode(i.to_bytes(16, "big"))


def ctx_at(path: Path, now: float = T0) -> Context:
    return Context(Home(path), clock=FixedClock(now))


def admin(path: Path, now: float = T0) -> Context:
    """A home whose user:alice may sign revocation lists (a role carrying revoke = true)."""
    ctx = ctx_at(path, now)
    keygen(ctx, "user:alice")
    cfg = path / "config.toml"
    cfg.write_text(cfg.read_text() + "\n[roles.revoker]\nrevoke = true\n")
    ctx = ctx_at(path, now)
    set_roles(ctx, "user:alice", add=("revoker",))
    return ctx


def add(path: Path, entries) -> list[Revocation]:
    home = Home(path)
    with home.lock():
        return Store(home).add_revocations(entries)


# --- migration ------------------------------------------------------------------------------------


def test_an_old_revocations_file_is_migrated_on_first_use(tmp_path, cli):
    h = tmp_path / "home"
    keygen(ctx_at(h), "agent:gone")
    kid = Store(Home(h)).require("agent:gone").current.kid
    (h / "revocations.toml").write_text(OLD_TOML.format(kid=kid))
    os.chmod(h / "revocations.toml", 0o600)
    assert not (h / "revocations.db").exists()

    r = cli("--home", str(h), "--json", "show", "agent:gone")  # a reader: the first use
    assert r.code == 0, r.stderr
    assert r.json()["principal"]["status"] == "revoked"
    assert r.json()["principal"]["revoked"]["reason"] == "left the team"
    assert (h / "revocations.db").exists() and stat.S_IMODE((h / "revocations.db").stat().st_mode) == 0o600
    assert not (h / "revocations.toml").exists(), "the old file is no longer the store"
    assert (h / "revocations.toml.migrated").read_text() == OLD_TOML.format(kid=kid), "kept as it was, as a backup"
    held = Store(Home(h)).revocations()
    assert [(e.kind, e.id, e.reason) for e in held.entries] == [
        ("principal", "agent:gone", "left the team"), ("key", kid, ""), ("grant", "PVwt7Y018B1rWW0ADeMYRQ", "test")]
    assert held.principal("agent:gone").at == pytest.approx(1795964042.123456, abs=1e-6)
    # and it stays migrated: a write goes to the store, the backup is never read again
    (h / "revocations.toml.migrated").write_text("garbage = [\n")
    revoke_grant(ctx_at(h), jti(7))
    assert Store(Home(h)).revocations().grant(jti(7)) and len(Store(Home(h)).revocations()) == 4


def test_a_migrated_revocation_still_denies(cli, tmp_path):
    w = World(cli, tmp_path)
    leaf = parse_chain(w.grant).leaf.jti
    token = w.sign()
    w.ok(w.tool, "verify", token, "--action", "deploy.staging", "--resource", "api/web", "--data", str(w.payload))
    for f in ("revocations.db", "revocations.db-wal", "revocations.db-shm"):
        (w.tool / f).unlink(missing_ok=True)
    (w.tool / "revocations.toml").write_text(f'[[grant]]\nid = "{leaf}"\nat = 2026-11-29T14:56:00+00:00\n')
    r = w.run(w.tool, "verify", token, "--action", "deploy.staging", "--resource", "api/web", "--data", str(w.payload))
    assert r.code == 1 and f"revoked: grant {leaf}" in r.stderr
    assert (w.tool / "revocations.db").exists() and not (w.tool / "revocations.toml").exists()


def test_a_damaged_old_file_stops_the_migration_and_nothing_changes(tmp_path):
    h = tmp_path / "home"
    keygen(ctx_at(h), "agent:a")
    (h / "revocations.toml").write_text('[[principal]]\nid = "agent:a"\nat = "yesterday"\n')
    before = snapshot(h)
    for attempt in (lambda: Store(Home(h)).revocations(), lambda: revoke_grant(ctx_at(h), jti(1))):
        with pytest.raises(StoreError) as info:
            attempt()
        assert str(h / "revocations.toml") in info.value.message
    assert snapshot(h) == before and not (h / "revocations.db").exists()


def test_a_reader_of_a_home_without_revocations_creates_nothing(tmp_path):
    h = tmp_path / "home"
    keygen(ctx_at(h), "agent:a")
    before = snapshot(h)
    held = Store(Home(h)).revocations()
    assert held.principal("agent:a") is None and held.entries == ()
    assert snapshot(h) == before


# --- damage ---------------------------------------------------------------------------------------


def _other_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE revoked (kind TEXT, id TEXT)")
    conn.execute("INSERT INTO revoked VALUES ('principal', 'agent:a')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(b"not a database at all, just text " * 200),
    lambda p: p.write_bytes(b""),
    _other_db,
], ids=["garbage", "empty", "another database"])
def test_a_damaged_store_is_an_error_naming_it_and_is_never_replaced(tmp_path, damage):
    h = tmp_path / "home"
    keygen(ctx_at(h), "agent:a")
    revoke_grant(ctx_at(h), jti(1))
    db = h / "revocations.db"
    db.unlink()
    damage(db)
    os.chmod(db, 0o600)
    before = snapshot(h)
    attempts = (lambda: Store(Home(h)).revocations().principal("agent:a"),
                lambda: revoke_principal(ctx_at(h), "agent:a"),
                lambda: revoke_grant(ctx_at(h), jti(2)))
    for attempt in attempts:
        with pytest.raises(StoreError) as info:
            attempt()
        assert f"damaged store file {db}" in info.value.message
    assert snapshot(h) == before


def test_a_store_from_a_newer_agentctl_is_refused_unchanged(tmp_path):
    h = tmp_path / "home"
    revoke_grant(ctx_at(h), jti(1))
    conn = sqlite3.connect(h / "revocations.db")
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    before = snapshot(h)
    with pytest.raises(OperationalError, match="newer agentctl"):
        Store(Home(h)).revocations().grant(jti(1))
    with pytest.raises(OperationalError, match="newer agentctl"):
        revoke_grant(ctx_at(h), jti(2))
    assert snapshot(h) == before


def test_the_store_is_private_and_leaves_no_journal_behind(tmp_path, cli):
    h = tmp_path / "home"
    old = os.umask(0o022)
    try:
        assert cli("--home", str(h), "revoke", "--jti", jti(1)).code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((h / "revocations.db").stat().st_mode) == 0o600
    assert not [p.name for p in h.iterdir() if p.name.startswith(("revocations.db-", ".revocations.db"))]


# --- lookups, not loads ---------------------------------------------------------------------------


def test_a_check_looks_ids_up_and_never_reads_the_whole_store(cli, tmp_path, monkeypatch):
    w = World(cli, tmp_path)
    add(w.tool, (Revocation("grant", jti(i), T0) for i in range(3000)))
    token = w.sign()

    def whole(self):
        raise AssertionError("a check read every revocation")

    monkeypatch.setattr(StoredRevocations, "entries", property(whole))
    args = ("verify", token, "--action", "deploy.staging", "--resource", "api/web", "--data", str(w.payload))
    w.ok(w.tool, *args)
    w.ok(w.tool, "revoke", "--jti", jws.decode(token.split("~")[-1], jws.ACTION).claims["jti"])  # the action itself
    r = w.run(w.tool, *args)
    assert r.code == 1 and "revoked: action" in r.stderr


@pytest.mark.parametrize("n", [1, 3, 7, 25])
def test_a_lookup_searches_the_index_and_never_scans_the_store(tmp_path, n):
    """The cost of a check must not grow with the revocations held: every pair is an index search
    (a row-value ``IN (VALUES …)`` made SQLite scan the whole index, ~11 ms at 100,000)."""
    from agentctl.revocation_store import _SCHEMA, found_sql

    conn = sqlite3.connect(":memory:")
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.executemany("INSERT INTO revoked (kind, id, at) VALUES ('grant', ?, 0)", [(jti(i),) for i in range(2000)])
    conn.execute("ANALYZE")
    pairs = [("principal", "user:alice"), ("key", "k"), *[("grant", jti(i)) for i in range(0, 4 * n, 4)]][:n]
    args = [x for pair in pairs for x in pair]
    plan = " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + found_sql(n), args))
    assert "SCAN" not in plan and plan.count("SEARCH revoked") == n, plan
    assert {tuple(r) for r in conn.execute(found_sql(n), args)} == {p for p in pairs if p[0] == "grant"}


def test_each_lookup_sees_what_was_committed_since(tmp_path):
    h = tmp_path / "home"
    revoke_grant(ctx_at(h), jti(1))
    trust = StoreTrust(Store(Home(h)))
    held = trust.revocations()
    assert held.grant(jti(2)) is None
    revoke_grant(ctx_at(h), jti(2))
    assert held.grant(jti(2)) is not None, "a long-lived verifier honours a revocation made meanwhile"


# --- a change and its event together --------------------------------------------------------------


def test_an_import_whose_event_fails_adds_nothing(tmp_path):
    a, c = tmp_path / "a", tmp_path / "c"
    actx = admin(a)
    add(a, (Revocation("grant", jti(i), T0) for i in range(500)))
    token, _, count = export_list(actx, "user:alice")
    assert count == 500
    _trusting(a, c)
    revoke_grant(ctx_at(c), jti(10_000))
    before = snapshot(c)

    def fail(*_):
        raise OperationalError("audit append failed")

    with pytest.raises(OperationalError, match="audit append failed"):
        import_list(ctx_at(c), token, then=fail)
    assert snapshot(c) == before, "neither the revocations nor the versions held changed"
    held = Store(Home(c)).revocations()
    assert len(held) == 1 and held.grant(jti(3)) is None
    rl, added = import_list(ctx_at(c), token)
    assert added == 500 and len(Store(Home(c)).revocations()) == 501


def test_a_revocation_whose_event_fails_is_rolled_back(tmp_path):
    h = tmp_path / "home"
    revoke_grant(ctx_at(h), jti(1))
    before = {e.id for e in Store(Home(h)).revocations().entries}

    def fail(*_):
        raise OperationalError("audit append failed")

    with pytest.raises(OperationalError):
        revoke_grant(ctx_at(h), jti(2), then=fail)
    assert {e.id for e in Store(Home(h)).revocations().entries} == before
    assert revoke_grant(ctx_at(h), jti(2))[1] is True


def test_a_large_list_imports_into_a_large_store(tmp_path):
    c = tmp_path / "c"
    a = tmp_path / "a"
    actx = admin(a)
    add(a, (Revocation("grant", jti(i), T0 + i) for i in range(20_000)))
    token, _, count = export_list(actx, "user:alice")
    assert count == 20_000
    _trusting(a, c)
    add(c, (Revocation("grant", jti(i), T0) for i in range(15_000, 40_000)))  # 5,000 already held
    rl, added = import_list(ctx_at(c), token)
    held = Store(Home(c)).revocations()
    assert added == 15_000 and len(held) == 40_000
    assert held.grant(jti(15_001)).at == T0, "an id already revoked keeps its first revocation"
    assert held.grant(jti(3)).at == T0 + 3


def _trusting(a: Path, c: Path) -> None:
    """Make ``c`` trust ``a``'s user:alice as a revoker."""
    from agentctl.encoding import did_key
    from agentctl.identity import import_principal

    import_principal(ctx_at(c), "user:alice", did_key(Store(Home(a)).require("user:alice").current.public))
    cfg = c / "config.toml"
    cfg.write_text(cfg.read_text() + "\n[roles.revoker]\nrevoke = true\n")
    set_roles(ctx_at(c), "user:alice", add=("revoker",))


# --- expired grants leave the lists ---------------------------------------------------------------


def test_a_revoked_grant_leaves_the_lists_once_it_has_expired(tmp_path):
    a, c = tmp_path / "a", tmp_path / "c"
    admin(a)
    revoke_grant(ctx_at(a), jti(1), exp=int(T0) + 3600)  # expires in an hour
    revoke_grant(ctx_at(a), jti(2))  # exp unknown: travels for ever
    early, _, n_early = export_list(ctx_at(a, T0 + 3600 + 600), "user:alice")  # at exp + the largest leeway: kept
    late, _, n_late = export_list(ctx_at(a, T0 + 3600 + 601), "user:alice")
    assert n_early == 2 and n_late == 1
    grants = jws.decode(early, jws.REVOCATIONS, limit=jws.MAX_LIST_BYTES).claims["revoked"]["grants"]
    assert {g["id"]: g.get("exp") for g in grants} == {jti(1): int(T0) + 3600, jti(2): None}
    assert [g["id"] for g in jws.decode(late, jws.REVOCATIONS, limit=jws.MAX_LIST_BYTES).claims["revoked"]["grants"]] == [jti(2)]
    # an importer after the expiry does not store it either; before it, it does
    _trusting(a, c)
    rl, added = import_list(ctx_at(c, T0 + 3600 + 601), early)
    assert added == 1 and Store(Home(c)).revocations().grant(jti(1)) is None
    d = tmp_path / "d"
    _trusting(a, d)
    rl, added = import_list(ctx_at(d, T0), early)
    assert added == 2 and Store(Home(d)).revocations().grant(jti(1)).exp == int(T0) + 3600
    # the home that revoked keeps it: revocations are permanent here
    assert Store(Home(a)).revocations().grant(jti(1)) is not None


@pytest.mark.parametrize("entry", [
    {"id": "agent:x", "at": "2026-11-29T14:54:02Z", "exp": 1_800_000_000},  # exp on a principal
    {"id": jti(1), "at": "2026-11-29T14:54:02Z", "exp": "tomorrow"},
    {"id": jti(1), "at": "2026-11-29T14:54:02Z", "exp": 1.5},
    {"id": jti(1), "at": "2026-11-29T14:54:02Z", "exp": -1},
], ids=["on a principal", "text", "fraction", "negative"])
def test_a_list_entry_with_a_bad_exp_is_malformed(tmp_path, entry):
    a = tmp_path / "a"
    admin(a)
    seed = _seed(a)
    kind = "principals" if entry["id"].startswith("agent:") else "grants"
    claims = {"iss": "user:alice", "iat": int(T0), "jti": jti(99), "version": 1, "revoked": {kind: [entry]}}
    token = jws.encode(jws.REVOCATIONS, claims, seed)
    with pytest.raises(VerificationError) as info:
        verify_list(token, StoreTrust(Store(Home(a))))
    assert info.value.reason == "malformed"


def _seed(home: Path) -> bytes:
    from agentctl.signers import signer_for  # noqa: I001

    return signer_for(ctx_at(home), "user:alice").seed


def test_revoke_grant_refuses_a_bad_exp(tmp_path):
    from agentctl.errors import UsageError

    with pytest.raises(UsageError):
        revoke_grant(ctx_at(tmp_path / "h"), jti(1), exp=-5)
    assert not (tmp_path / "h" / "revocations.db").exists()


def test_stored_revocations_compare_as_revocations(tmp_path):
    h = tmp_path / "home"
    assert Store(Home(h)).revocations() == Revocations()
    entry = Revocation("grant", jti(1), T0, "r")
    add(h, [entry])
    assert Store(Home(h)).revocations() == Revocations((entry,))
    assert RevocationStore(Home(h)).view().grant(jti(1)) == entry
