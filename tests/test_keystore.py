"""Keystores: the file keystore, the OS keyring (through the fake backend), and choosing between them.

SPEC, "Home, stores and secrets": key files are 0600 and refused when group or others may read them;
AGENTCTL_PASSPHRASE seals them; ``auto`` falls back to the file keystore with one notice; ``keyring``
without a usable keyring is an operational error (exit 3) that points at the file keystore.
"""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import keyring
import keyring.core
import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from keyring.compat import properties

import agentctl.keystore as ks
from agentctl.encoding import b64u_encode
from agentctl.errors import KeystoreError, OperationalError, PassphraseError, StoreError, UsageError
from agentctl.home import Home
from agentctl.keystore import SERVICE, FileKeystore, KeyringKeystore, keyring_available, open_keystore
from agentctl.secret import encode_secret
from conftest import snapshot


def store_snapshot(home: Path) -> dict[str, bytes]:
    """The home's files except the audit log: a failed command records its failure there."""
    return {k: v for k, v in snapshot(home).items() if not k.startswith("audit")}

NAME = "agent:reviewer:prod"
OTHER = "agent:intruder"
SEED = bytes(range(32))
KID = "kid-under-test"
FAIL_BACKEND = "keyring.backends.fail.Keyring"
NULL_BACKEND = "keyring.backends.null.Keyring"


@pytest.fixture
def h(tmp_path) -> Home:
    return Home(tmp_path / "home", env={})


@pytest.fixture
def use_backend(monkeypatch):
    """Select a keyring backend for this test, as a fresh process would: by PYTHON_KEYRING_BACKEND
    (a name) or an instance. keyring keeps one backend per process, and agentctl one answer to
    'is there a keyring', so both are forgotten (and restored after the test)."""

    def select(backend: str | KeyringBackend) -> None:
        if isinstance(backend, str):
            monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
            monkeypatch.setattr(keyring.core, "_keyring_backend", None)
        else:
            monkeypatch.setattr(keyring.core, "_keyring_backend", backend)
        monkeypatch.setattr(ks, "_availability", None)

    select("fakekeyring.FakeKeyring")
    return select


def fake_entries(tmp_path: Path) -> dict:
    path = tmp_path / "fake-keyring.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


class _TestBackend(KeyringBackend):
    """Base of the misbehaving backends below; never picked by keyring's own detection."""

    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("only set explicitly by a test")

    def get_password(self, service, username):
        return None

    def set_password(self, service, username, password):
        pass

    def delete_password(self, service, username):
        raise keyring.errors.PasswordDeleteError("no such password")


class HangingKeyring(_TestBackend):
    """Does not answer until released: a frozen Secret Service daemon. (The cap only turns a
    regression into a failure instead of a hung test run; a passing test never waits.)"""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.calls = 0

    def get_password(self, service, username):
        self.calls += 1
        self.release.wait(timeout=60)
        return None

    set_password = delete_password = get_password


class LockedKeyring(_TestBackend):
    """What keyring's SecretService backend raises when the collection stays locked."""

    def get_password(self, service, username):
        raise keyring.errors.KeyringLocked("Failed to unlock the collection!")

    set_password = delete_password = get_password


class BrokenKeyring(_TestBackend):
    """Reads work, writes fail with a multi-line backend error (as D-Bus errors are)."""

    def set_password(self, service, username, password):
        raise OSError("org.freedesktop.DBus.Error.NoReply: did not receive a reply\nline two of the error")


# --- the file keystore ------------------------------------------------------------------------------


def test_file_key_is_private_and_reads_back(h):
    store = FileKeystore(h, env={})
    store.put(NAME, KID, SEED)
    path = h.keys_dir / f"{KID}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(h.keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(h.path.stat().st_mode) == 0o700
    # Without a passphrase it is the exported secret itself, like an ssh key with no passphrase.
    assert path.read_text("ascii") == encode_secret(NAME, SEED) + "\n"
    assert store.get(NAME, KID) == SEED
    assert sorted(p.name for p in h.keys_dir.iterdir()) == [f"{KID}.key"]  # no temporary file left


def test_file_missing_key_is_none(h):
    assert FileKeystore(h, env={}).get(NAME, KID) is None
    assert not h.path.exists()  # reading creates nothing


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_file_key_readable_by_others_is_refused(h, mode):
    store = FileKeystore(h, env={})
    store.put(NAME, KID, SEED)
    path = h.keys_dir / f"{KID}.key"
    path.chmod(mode)
    with pytest.raises(OperationalError) as info:
        store.get(NAME, KID)
    e = info.value
    assert e.exit_code == 3
    assert str(path) in e.message and f"{mode:04o}" in e.message
    assert e.hint == f"run: chmod 600 {path}"
    assert stat.S_IMODE(path.stat().st_mode) == mode  # refused, not silently "fixed"


def test_passphrase_seals_the_key_file(h):
    store = FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "correct horse"})
    store.put(NAME, KID, SEED)
    raw = (h.keys_dir / f"{KID}.key").read_bytes()
    text = raw.decode("ascii")
    assert text.startswith(FileKeystore.SEALED + " argon2id ")
    secret = encode_secret(NAME, SEED)
    for needle in (secret, secret[len("AGENTCTL-SECRET-KEY-1"):], b64u_encode(SEED), SEED.hex()):
        assert needle not in text
    assert SEED not in raw
    assert NAME not in text
    assert store.get(NAME, KID) == SEED
    # A second key gets its own salt and nonce.
    store.put(NAME, "kid-two", SEED)
    assert (h.keys_dir / "kid-two.key").read_bytes() != raw


def test_wrong_passphrase(h):
    FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "correct horse"}).put(NAME, KID, SEED)
    with pytest.raises(PassphraseError) as info:
        FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "battery staple"}).get(NAME, KID)
    assert info.value.exit_code == 2
    assert str(h.keys_dir / f"{KID}.key") in info.value.message
    assert "battery" not in info.value.message and "AGENTCTL_PASSPHRASE" in info.value.hint


def test_sealed_key_without_passphrase(h):
    FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "correct horse"}).put(NAME, KID, SEED)
    with pytest.raises(PassphraseError) as info:
        FileKeystore(h, env={}).get(NAME, KID)
    assert info.value.exit_code == 2
    assert "encrypted" in info.value.message and str(h.keys_dir / f"{KID}.key") in info.value.message
    assert "AGENTCTL_PASSPHRASE" in info.value.hint


def test_prompted_passphrase(h):
    asked = []

    def prompt(purpose):
        asked.append(purpose)
        return b"typed at a terminal"

    store = FileKeystore(h, env={}, prompt=prompt)
    store.put(NAME, KID, SEED)
    assert (h.keys_dir / f"{KID}.key").read_text("ascii").startswith(FileKeystore.SEALED)
    assert store.get(NAME, KID) == SEED
    assert asked == ["new", "unlock"]
    # The environment wins over the prompt, and an empty answer means "no passphrase".
    assert FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "typed at a terminal"}, prompt=pytest.fail).get(NAME, KID) == SEED
    FileKeystore(h, env={}, prompt=lambda purpose: b"").put(NAME, "plain", SEED)
    assert (h.keys_dir / "plain.key").read_text("ascii").startswith("AGENTCTL-SECRET-KEY-1")


def _sealed_fields(h) -> list[str]:
    FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "pw"}).put(NAME, KID, SEED)
    return (h.keys_dir / f"{KID}.key").read_text("ascii").split()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text, fields: "garbage\n", id="garbage"),
        pytest.param(lambda text, fields: "", id="empty"),
        pytest.param(lambda text, fields: text[:40] + "\n", id="truncated-secret"),
        pytest.param(lambda text, fields: text.replace(text[30], "A" if text[30] != "A" else "B", 1), id="mistyped-secret"),
        pytest.param(lambda text, fields: " ".join(fields[:6]) + "\n", id="sealed-missing-field"),
        pytest.param(lambda text, fields: " ".join(fields[:2] + ["lots"] + fields[3:]) + "\n", id="sealed-bad-number"),
        pytest.param(lambda text, fields: " ".join(fields[:4] + ["AAAA"] + fields[5:]) + "\n", id="sealed-short-salt"),
        pytest.param(lambda text, fields: " ".join(fields[:5] + ["AAAA"] + fields[6:]) + "\n", id="sealed-short-nonce"),
        pytest.param(lambda text, fields: " ".join(fields[:6] + ["not base64!"]) + "\n", id="sealed-bad-base64"),
        pytest.param(lambda text, fields: " ".join(fields[:1] + ["scrypt"] + fields[2:]) + "\n", id="sealed-unknown-kdf"),
    ],
)
def test_damaged_key_file_names_the_file(h, damage):
    fields = _sealed_fields(h)
    FileKeystore(h, env={}).put(NAME, KID, SEED)
    path = h.keys_dir / f"{KID}.key"
    plain = path.read_text("ascii")
    text = damage(plain, fields)
    path.write_text(text, "ascii")
    with pytest.raises(StoreError) as info:
        FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "pw"}).get(NAME, KID)
    e = info.value
    assert e.exit_code == 3
    assert str(path) in e.message
    assert plain.strip()[len("AGENTCTL-SECRET-KEY-1"):][:12] not in e.message  # never echoes the secret
    assert path.read_text("ascii") == text  # never silently replaced


def test_undecodable_key_file(h):
    h.ensure("keys")
    path = h.keys_dir / f"{KID}.key"
    path.write_bytes(b"\xff\xfe binary")
    path.chmod(0o600)
    with pytest.raises(StoreError) as info:
        FileKeystore(h, env={}).get(NAME, KID)
    assert str(path) in info.value.message


def test_key_file_of_another_principal(h):
    FileKeystore(h, env={}).put(OTHER, KID, SEED)
    with pytest.raises(StoreError) as info:
        FileKeystore(h, env={}).get(NAME, KID)
    assert str(h.keys_dir / f"{KID}.key") in info.value.message
    assert OTHER in info.value.message


def test_file_delete(h):
    store = FileKeystore(h, env={})
    store.put(NAME, KID, SEED)
    store.delete(NAME, KID)
    assert not (h.keys_dir / f"{KID}.key").exists()
    assert store.get(NAME, KID) is None
    store.delete(NAME, KID)  # already gone: fine


# --- the OS keyring (fake backend) ------------------------------------------------------------------


def test_keyring_round_trip(use_backend, tmp_path, h):
    store = KeyringKeystore()
    assert store.name == "keyring"
    store.put(NAME, KID, SEED)
    assert fake_entries(tmp_path) == {SERVICE: {f"{NAME}/{KID}": encode_secret(NAME, SEED)}}
    assert store.get(NAME, KID) == SEED
    assert store.get(NAME, "another-kid") is None
    store.delete(NAME, KID)
    assert fake_entries(tmp_path) == {}
    store.delete(NAME, KID)  # already gone: fine
    assert not h.path.exists()  # the keyring keystore writes nothing in the home


def test_keyring_entry_of_another_principal(use_backend):
    keyring.get_keyring().set_password(SERVICE, f"{NAME}/{KID}", encode_secret(OTHER, SEED))
    with pytest.raises(StoreError) as info:
        KeyringKeystore().get(NAME, KID)
    assert f"os keyring entry {NAME}/{KID}" in info.value.message
    assert OTHER in info.value.message
    assert info.value.exit_code == 3


def test_damaged_keyring_entry(use_backend):
    secret = encode_secret(NAME, SEED)
    keyring.get_keyring().set_password(SERVICE, f"{NAME}/{KID}", secret[:-3])
    with pytest.raises(StoreError) as info:
        KeyringKeystore().get(NAME, KID)
    assert f"os keyring entry {NAME}/{KID}" in info.value.message
    assert secret[len("AGENTCTL-SECRET-KEY-1"):][:12] not in info.value.message


def test_keyring_locked(use_backend):
    use_backend(LockedKeyring())
    ok, why = keyring_available()
    assert not ok and "locked" in why
    with pytest.raises(KeystoreError) as info:
        KeyringKeystore()
    assert info.value.exit_code == 3
    assert "locked" in info.value.message and "AGENTCTL_KEYSTORE=file" in info.value.hint


def test_keyring_backend_error_is_one_clear_line(use_backend):
    use_backend(BrokenKeyring())
    store = KeyringKeystore()
    with pytest.raises(KeystoreError) as info:
        store.put(NAME, KID, SEED)
    e = info.value
    assert e.exit_code == 3
    assert e.message == "os keyring failed to store a key: OSError: org.freedesktop.DBus.Error.NoReply: did not receive a reply"
    assert "\n" not in e.message and "file" in e.hint
    assert e.__suppress_context__  # the backend's traceback is not chained on


def test_hanging_keyring_is_bounded(use_backend, monkeypatch):
    """A frozen keyring daemon costs KEYRING_TIMEOUT, then a clear error; never a hang."""
    backend = HangingKeyring()
    use_backend(backend)
    monkeypatch.setattr(ks, "KEYRING_TIMEOUT", 0)  # give up at once: no real waiting in tests
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    try:
        ok, why = keyring_available()
        assert not ok
        assert why.startswith("the os keyring did not answer (no answer within 0 s)")
        with pytest.raises(KeystoreError) as info:
            open_keystore("keyring", Home("unused", env={}))
        assert "did not answer" in info.value.message
        # With the probe passed, a call that hangs later is bounded too.
        monkeypatch.setattr(ks, "_availability", (True, "HangingKeyring"))
        with pytest.raises(KeystoreError) as info:
            KeyringKeystore().get(NAME, KID)
        assert info.value.message.startswith("os keyring failed to read a key: the os keyring did not answer")
    finally:
        backend.release.set()  # let the abandoned threads finish
    assert backend.calls >= 2


def test_prompt_timeout_on_a_desktop(monkeypatch):
    monkeypatch.setattr(ks.sys, "platform", "linux")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    assert ks._timeout() == ks.KEYRING_TIMEOUT
    monkeypatch.setenv("DISPLAY", ":0")  # a person may be answering an unlock prompt
    assert ks._timeout() == ks.KEYRING_PROMPT_TIMEOUT > ks.KEYRING_TIMEOUT


# --- choosing a keystore ------------------------------------------------------------------------------


def test_open_file_and_keyring(use_backend, h):
    assert isinstance(open_keystore("file", h, env={}), FileKeystore)
    assert isinstance(open_keystore("keyring", h, env={}), KeyringKeystore)


def test_auto_uses_a_working_keyring_silently(use_backend, h):
    notices = []
    store = open_keystore("auto", h, env={}, notify=notices.append)
    assert isinstance(store, KeyringKeystore)
    assert notices == []
    assert keyring_available() == (True, "FakeKeyring")


@pytest.mark.parametrize("backend", [FAIL_BACKEND, NULL_BACKEND])
def test_auto_falls_back_to_file_with_one_notice(use_backend, h, backend):
    use_backend(backend)
    notices = []
    store = open_keystore("auto", h, env={}, notify=notices.append)
    assert isinstance(store, FileKeystore) and store.name == "file"
    assert len(notices) == 1
    assert notices[0].startswith("no usable os keyring (")
    assert str(h.keys_dir) in notices[0]
    store.put(NAME, KID, SEED)
    assert (h.keys_dir / f"{KID}.key").exists()


def test_context_opens_auto_once(use_backend, tmp_path, monkeypatch):
    """One notice per command, however often the command asks for its keystore."""
    from agentctl.context import Context

    use_backend(FAIL_BACKEND)
    notices = []
    ctx = Context(Home(tmp_path / "home", env={}), env={}, notify=notices.append)
    assert ctx.keystore() is ctx.keystore()
    assert isinstance(ctx.keystore("auto"), FileKeystore)
    assert len(notices) == 1


@pytest.mark.parametrize("backend", [FAIL_BACKEND, NULL_BACKEND])
def test_keyring_mode_without_a_keyring(use_backend, h, backend):
    use_backend(backend)
    with pytest.raises(KeystoreError) as info:
        open_keystore("keyring", h, env={}, notify=pytest.fail)
    e = info.value
    assert e.exit_code == 3
    assert e.message.startswith("no usable os keyring: ")
    assert "file keystore" in e.hint and "AGENTCTL_KEYSTORE=file" in e.hint


def test_unviable_named_backend_is_not_a_crash(use_backend, h):
    """PYTHON_KEYRING_BACKEND naming a backend that cannot work here: keyring raises on loading it."""
    use_backend("keyring.backends.macOS.Keyring" if ks.sys.platform != "darwin" else "keyring.backends.Windows.WinVaultKeyring")
    ok, why = keyring_available()
    assert not ok and why
    notices = []
    assert isinstance(open_keystore("auto", h, env={}, notify=notices.append), FileKeystore)
    assert len(notices) == 1


def test_availability_is_probed_once(use_backend):
    backend = HangingKeyring()
    backend.release.set()  # answers at once
    use_backend(backend)
    assert keyring_available() == (True, "HangingKeyring")
    assert keyring_available() == (True, "HangingKeyring")
    assert backend.calls == 1


def test_unknown_mode(h):
    with pytest.raises(UsageError):
        open_keystore("vault", h, env={})


# --- through the CLI ------------------------------------------------------------------------------


def test_cli_keygen_keyring_mode_without_keyring(cli, home, use_backend):
    use_backend(FAIL_BACKEND)
    r = cli("keygen", NAME, env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 3
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("agentctl: error: no usable os keyring: ")
    assert lines[1].startswith("agentctl: hint: ") and "file keystore" in lines[1]
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout == ""
    assert snapshot(home) == {}


def test_cli_keygen_keyring_mode_without_keyring_json(cli, home, use_backend):
    use_backend(FAIL_BACKEND)
    r = cli("--json", "keygen", NAME, env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 3
    doc = r.json()
    assert doc["ok"] is False and doc["exit_code"] == 3 and doc["error"] == "operational"
    assert "file keystore" in doc["hint"]
    assert snapshot(home) == {}


def test_cli_keygen_auto_falls_back_once(cli, home, use_backend):
    use_backend(FAIL_BACKEND)
    r = cli("--json", "keygen", NAME)
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["principal"]["keystore"] == "file"
    assert r.stderr.count("no usable os keyring") == 1
    kid = doc["principal"]["kid"]
    key_file = home / "keys" / f"{kid}.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text("ascii").startswith("AGENTCTL-SECRET-KEY-1")


def test_cli_keygen_keyring_mode_stores_in_keyring(cli, home, use_backend, tmp_path):
    r = cli("--json", "keygen", NAME, env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["principal"]["keystore"] == "keyring"
    entries = fake_entries(tmp_path)[SERVICE]
    assert list(entries) == [f"{NAME}/{doc['principal']['kid']}"]
    assert not (home / "keys").exists()
    assert "no usable os keyring" not in r.stderr


def test_cli_refuses_world_readable_key_file(cli, home, use_backend):
    r = cli("--json", "keygen", NAME, env={"AGENTCTL_KEYSTORE": "file"})
    assert r.code == 0, r.stderr
    key_file = home / "keys" / f"{r.json()['principal']['kid']}.key"
    key_file.chmod(0o644)
    before = store_snapshot(home)
    r = cli("rotate", NAME)
    assert r.code == 3
    assert "agentctl: error: key file" in r.stderr and "readable by group or others" in r.stderr
    assert f"agentctl: hint: run: chmod 600 {key_file}" in r.stderr.splitlines()
    assert "Traceback" not in r.stderr
    assert store_snapshot(home) == before


def test_cli_wrong_passphrase(cli, home, use_backend):
    r = cli("--json", "keygen", NAME, env={"AGENTCTL_KEYSTORE": "file", "AGENTCTL_PASSPHRASE": "right"})
    assert r.code == 0, r.stderr
    before = store_snapshot(home)
    r = cli("rotate", NAME, env={"AGENTCTL_PASSPHRASE": "Zq7-not-it"})
    assert r.code == 2  # a bad argument; exit 1 is for verdicts
    assert r.stderr.startswith("agentctl: error: wrong passphrase for key file ")
    assert "Zq7-not-it" not in r.stderr and "Traceback" not in r.stderr
    assert store_snapshot(home) == before


def test_the_file_keystore_fallback_is_announced_once_per_home(cli, home, monkeypatch):
    import keyring.core

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    notices = []
    for name in ("agent:a", "agent:b"):
        monkeypatch.setattr(ks, "_availability", None)
        monkeypatch.setattr(keyring.core, "_keyring_backend", None)
        r = cli("keygen", name)
        assert r.code == 0, r.stderr
        notices.append(r.stderr.count("no usable os keyring"))
    assert notices == [1, 0]
