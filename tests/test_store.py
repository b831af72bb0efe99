"""The file store and the home (SPEC, "Home, stores and secrets"): directories 0700, files 0600, atomic
writes (temporary file, fsync, rename) serialized by a lock, and a damaged file is an error that names
the file, never silently replaced."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from conftest import snapshot

from agentctl.context import Context
from agentctl.clock import FixedClock
from agentctl.errors import NotFoundError, OperationalError, StoreError, UsageError
from agentctl.home import Home, atomic_write
from agentctl.identity import keygen, revoke_grant, revoke_principal, rotate
from agentctl.models import Key, Principal, Revocation, Revocations
from agentctl.store import Store

T0 = 1_800_000_000.0
PUB1 = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")  # RFC 8032 test 1
PUB2 = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")  # RFC 8032 test 2


def mode_of(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def ctx_for(path: Path, **env) -> Context:
    environ = dict(os.environ, **env)
    return Context(Home(path, environ), clock=FixedClock(T0), env=environ)


def a_principal(name="agent:a") -> Principal:
    return Principal(
        name=name,
        origin="local",
        created=T0,
        keys=(Key(PUB1, T0, "retired", T0 + 60), Key(PUB2, T0 + 60)),
        roles=("reviewer", "ops"),
        attrs=(("env", "prod"), ("team", "x=y z")),
        keystore="keyring",
    )


# --- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_directories_are_0700_and_files_0600_whatever_the_umask(tmp_path, umask):
    path = tmp_path / "home"
    old = os.umask(umask)
    try:
        ctx = ctx_for(path, AGENTCTL_KEYSTORE="file")
        keygen(ctx, "agent:a")
        keygen(ctx, "agent:b", roles=("r",))
        rotate(ctx, "agent:a")
        revoke_principal(ctx, "agent:b")
        revoke_grant(ctx, "g" * 22)
    finally:
        os.umask(old)
    dirs = [path, *(p for p in path.rglob("*") if p.is_dir())]
    files = [p for p in path.rglob("*") if p.is_file()]
    assert {d.name for d in dirs} >= {"home", "principals", "keys"}
    assert {f.suffix for f in files} >= {".toml", ".key"}
    for d in dirs:
        assert mode_of(d) == 0o700, d
    for f in files:
        assert mode_of(f) == 0o600, f


def test_a_new_home_is_created_0700_with_its_parents(tmp_path):
    home = Home(tmp_path / "a" / "b" / "home")
    home.ensure("principals", "keys")
    for d in (home.path, home.principals_dir, home.keys_dir):
        assert d.is_dir() and mode_of(d) == 0o700


def test_a_home_that_is_a_file_is_a_usage_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        Home(f).ensure()


def _ensure_racer(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        Home(path).ensure("principals", "keys")
        results.put("ok")
    except Exception as e:  # noqa: BLE001 - compared below
        results.put(f"{type(e).__name__}: {e}")


def test_many_processes_creating_the_same_home_at_once_all_succeed(tmp_path):
    mp = multiprocessing.get_context("fork")
    n = 16
    for attempt in range(10):
        path = str(tmp_path / f"home-{attempt}")
        barrier, results = mp.Barrier(n), mp.Queue()
        procs = [mp.Process(target=_ensure_racer, args=(path, barrier, results)) for _ in range(n)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["ok"] * n
        assert all(mode_of(d) == 0o700 for d in (Path(path), Path(path) / "principals", Path(path) / "keys"))


def test_ensure_tolerates_a_directory_another_process_made_meanwhile(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def racing_mkdir(self, *args, **kwargs):
        real_mkdir(self, mode=0o700, parents=True, exist_ok=True)  # the other process wins the race
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    Home(tmp_path / "home").ensure("principals", "keys")
    monkeypatch.undo()
    assert (tmp_path / "home" / "keys").is_dir()


# --- atomic writes ------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "f.toml"
    target.write_bytes(b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("fail", ["replace", "fsync", "write"])
def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary_file(tmp_path, monkeypatch, fail):
    target = tmp_path / "f.toml"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, fail, boom)
    with pytest.raises(OperationalError, match=r"cannot write .*f\.toml: No space left on device"):
        atomic_write(target, b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_a_failed_principal_write_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    ctx = ctx_for(tmp_path / "home")
    keygen(ctx, "agent:a")
    before = snapshot(ctx.home.path)

    def boom(*a, **k):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OperationalError):
        rotate(ctx, "agent:a")
    with pytest.raises(OperationalError):
        keygen(ctx, "agent:b")
    monkeypatch.undo()
    assert snapshot(ctx.home.path) == before
    assert temp_files(ctx.home.path) == []
    assert Store(ctx.home).names() == ["agent:a"]


def test_no_temporary_files_after_a_busy_session(tmp_path):
    ctx = ctx_for(tmp_path / "home", AGENTCTL_KEYSTORE="file")
    for i in range(5):
        keygen(ctx, f"agent:n{i}")
        rotate(ctx, f"agent:n{i}")
    revoke_principal(ctx, "agent:n0")
    assert temp_files(ctx.home.path) == []


# --- round trips --------------------------------------------------------------------------------


def test_a_principal_round_trips(tmp_path):
    store = Store(Home(tmp_path / "home"))
    p = a_principal()
    store.put(p)
    q = store.get("agent:a")
    assert q == p
    assert q.current.public == PUB2 and q.keys[0].status == "retired"
    assert store.names() == ["agent:a"]
    assert store.all() == [p]
    assert store.find_key(q.keys[0].kid) == (p, p.keys[0])
    assert store.find_key("A" * 43) is None


def test_the_principal_file_is_readable_toml_named_after_the_principal(tmp_path):
    import tomllib

    store = Store(Home(tmp_path / "home"))
    store.put(a_principal("agent:code-reviewer:prod"))
    path = tmp_path / "home" / "principals" / "agent+code-reviewer+prod.toml"
    doc = tomllib.loads(path.read_text())
    assert doc["name"] == "agent:code-reviewer:prod"
    assert [k["status"] for k in doc["keys"]] == ["retired", "current"]


def test_a_missing_principal(tmp_path):
    store = Store(Home(tmp_path / "home"))
    assert store.get("agent:nope") is None
    assert store.names() == [] and store.all() == []
    with pytest.raises(NotFoundError, match="no principal 'agent:nope'"):
        store.require("agent:nope")
    assert not (tmp_path / "home").exists(), "reading must not create the home"


def test_revocations_round_trip(tmp_path):
    store = Store(Home(tmp_path / "home"))
    assert store.revocations() == Revocations()
    revs = Revocations()
    for entry in (Revocation("principal", "agent:a", T0, "left"), Revocation("key", "k" * 43, T0 + 1), Revocation("grant", "j" * 22, T0 + 2, "oops")):
        revs = revs.adding(entry)
    assert revs.adding(Revocation("grant", "j" * 22, T0 + 99)) is revs  # permanent: the first wins
    assert store.add_revocations(revs.entries) == list(revs.entries)
    assert store.add_revocations([Revocation("grant", "j" * 22, T0 + 99)]) == []  # permanent: the first wins
    back = store.revocations()
    assert back.principal("agent:a").reason == "left"
    assert back.key("k" * 43).at == pytest.approx(T0 + 1)
    assert back.grant("j" * 22).reason == "oops"
    assert back.principal("agent:b") is None


# --- damaged files ------------------------------------------------------------------------------

HINT = "restore it from a backup"


def damaged_cases():
    return {
        "invalid toml": lambda text: text + "\nname = [\n",
        "not utf-8": lambda text: text.encode() + b"\xff\xfe",
        "empty": lambda text: "",
        "no keys": lambda text: "\n".join(l for l in text.splitlines() if not l.startswith("[[keys]]") and "kid" not in l and "public" not in l and "status" not in l),
        "bad kid": lambda text: text.replace('kid = "', 'kid = "X', 1),
        "bad public key": lambda text: text.replace('public = "', 'public = "!', 1),
        "bad name inside": lambda text: text.replace('name = "agent:a"', 'name = "Agent:A"'),
        "other name inside": lambda text: text.replace('name = "agent:a"', 'name = "agent:b"'),
        "bad role": lambda text: text.replace('"reviewer"', '"Bad Role"'),
        "bad origin": lambda text: text.replace('origin = "local"', 'origin = "stolen"'),
        "two current keys": lambda text: text.replace('status = "retired"', 'status = "current"'),
        "created not a time": lambda text: text.replace("created = 20", 'created = "yesterday" #', 1),
        "attrs not strings": lambda text: text.replace('env = "prod"', "env = 5"),
    }


@pytest.mark.parametrize("case", list(damaged_cases()))
def test_a_damaged_principal_file_is_an_error_naming_it_and_is_left_alone(tmp_path, case):
    home = Home(tmp_path / "home")
    store = Store(home)
    store.put(a_principal())
    path = store.principal_path("agent:a")
    damaged = damaged_cases()[case](path.read_text())
    path.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
    before = path.read_bytes()
    for read in (lambda: store.get("agent:a"), store.all, lambda: store.require("agent:a"), lambda: store.find_key("k" * 43)):
        with pytest.raises(StoreError) as info:
            read()
        assert str(path) in info.value.message
        assert info.value.exit_code == 3
        assert "\n" not in info.value.message
    # and nothing that writes replaces it
    ctx = Context(home, clock=FixedClock(T0))
    for write in (lambda: keygen(ctx, "agent:a"), lambda: rotate(ctx, "agent:a"), lambda: revoke_principal(ctx, "agent:a")):
        with pytest.raises(StoreError):
            write()
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_principal_in_the_principals_directory_is_an_error_naming_it(tmp_path):
    store = Store(Home(tmp_path / "home"))
    store.put(a_principal())
    stray = tmp_path / "home" / "principals" / "notes.toml"
    stray.write_text("x = 1\n")
    with pytest.raises(StoreError) as info:
        store.all()
    assert str(stray) in info.value.message
    assert stray.read_text() == "x = 1\n"


def test_hidden_and_non_toml_files_are_not_principals(tmp_path):
    store = Store(Home(tmp_path / "home"))
    store.put(a_principal())
    (tmp_path / "home" / "principals" / ".agent+a.toml.tmp-123").write_text("partial")
    (tmp_path / "home" / "principals" / "README").write_text("hi")
    assert store.names() == ["agent:a"]


@pytest.mark.parametrize(
    "text",
    ["principal = [\n", 'principal = "agent:a"\n', 'principal = [{ id = "agent:a", at = "now" }]\n', "grant = [{ at = 2026-01-01T00:00:00Z }]\n"],
    ids=["invalid toml", "not a list", "time not a time", "no id"],
)
def test_a_damaged_revocations_file_is_an_error_and_is_never_replaced(tmp_path, text):
    home = Home(tmp_path / "home")
    ctx = Context(home, clock=FixedClock(T0))
    keygen(ctx, "agent:a")
    home.revocations_file.write_text(text)
    with pytest.raises(StoreError) as info:
        Store(home).revocations()
    assert str(home.revocations_file) in info.value.message
    for write in (lambda: revoke_principal(ctx, "agent:a"), lambda: revoke_grant(ctx, "j" * 22)):
        with pytest.raises(StoreError):
            write()
    assert home.revocations_file.read_text() == text


def test_a_damaged_config_file_is_an_error_naming_it(tmp_path):
    home = Home(tmp_path / "home")
    home.ensure()
    home.config_file.write_text("keystore = \n")
    with pytest.raises(StoreError) as info:
        home.config
    assert str(home.config_file) in info.value.message


@pytest.mark.parametrize("text", ['colour = "red"\n', "audit = 1\n", 'keystore = "vault"\n'])
def test_a_config_with_unknown_or_mistyped_settings_is_refused(tmp_path, text):
    home = Home(tmp_path / "home")
    home.ensure()
    home.config_file.write_text(text)
    with pytest.raises((StoreError, UsageError)):
        home.config


# --- resolution and locking ---------------------------------------------------------------------


def test_home_resolution_order(tmp_path):
    assert Home.resolve(str(tmp_path / "x"), {"AGENTCTL_HOME": str(tmp_path / "y")}).path == tmp_path / "x"
    assert Home.resolve(None, {"AGENTCTL_HOME": str(tmp_path / "y")}).path == tmp_path / "y"
    import platformdirs

    assert Home.resolve(None, {}).path == Path(platformdirs.user_data_dir("agentctl", appauthor=False))


def test_the_lock_serializes_writers(tmp_path):
    home = Home(tmp_path / "home")
    order: list[str] = []
    held = threading.Event()

    def first():
        with home.lock():
            held.set()
            time.sleep(0.3)
            order.append("first released")

    t = threading.Thread(target=first)
    t.start()
    held.wait()
    with Home(tmp_path / "home").lock():
        order.append("second acquired")
    t.join()
    assert order == ["first released", "second acquired"]
    assert mode_of(home.path / ".lock") == 0o600
