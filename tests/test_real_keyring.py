"""agentctl against a real freedesktop Secret Service, through keyring's SecretService backend.

These run where a Secret Service answers on the session bus (a desktop, or CI's headless
gnome-keyring: see .ci/keyring-session). Elsewhere they skip, except under CI (the variable CI set),
where a missing Secret Service is a failure: CI must run them.

Every principal made here has a name unique to the run, and its entries are removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import keyring
import keyring.core
import pytest

import agentctl.keystore as ks
from agentctl.crypto import public_key
from agentctl.encoding import did_key
from agentctl.errors import KeystoreError
from agentctl.home import Home
from agentctl.keystore import SERVICE, FileKeystore, KeyringKeystore, keyring_available, open_keystore
from agentctl.secret import decode_secret
from conftest import snapshot


def store_snapshot(home: Path) -> dict[str, bytes]:
    """The home's files except the audit log: a failed command records its failure there."""
    return {k: v for k, v in snapshot(home).items() if not k.startswith("audit")}

pytestmark = pytest.mark.real_keyring

#: Set by .ci/keyring-session: the password of its throwaway login keyring, so that a test may lock
#: it and unlock it again without a prompt.
PASSWORD_VAR = "CI_KEYRING_PASSWORD"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the real-keyring tests, but {why} (run them under .ci/keyring-session)")
    pytest.skip(why)


@pytest.fixture
def secret_service(monkeypatch):
    """keyring's SecretService backend, chosen by keyring's own detection as on a user's machine."""
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    monkeypatch.setattr(ks, "_availability", None)
    ok, why = keyring_available()
    if not ok:
        _unavailable(f"no usable Secret Service here: {why}")
    from keyring.backends import SecretService

    kr = keyring.get_keyring()
    if not isinstance(kr, SecretService.Keyring):
        _unavailable(f"the keyring backend here is {type(kr).__module__}.{type(kr).__name__}, not the Secret Service")
    return kr


def _items_of(name: str) -> dict[str, str]:
    """Every agentctl entry of ``name`` in the Secret Service: username -> secret."""
    import secretstorage

    found = {}
    with closing(secretstorage.dbus_init()) as bus:
        for item in secretstorage.get_default_collection(bus).search_items({"service": SERVICE}):
            user = item.get_attributes().get("username", "")
            if user.startswith(f"{name}/"):
                found[user] = item.get_secret().decode("utf-8")
    return found


@pytest.fixture
def principal(secret_service):
    """A principal name unique to this run; its Secret Service entries are removed afterwards."""
    made = []

    def new(kind: str = "agent") -> str:
        name = f"{kind}:agentctl-test-{secrets.token_hex(6)}"
        made.append(name)
        return name

    yield new
    for name in made:
        for user in _items_of(name):
            secret_service.delete_password(SERVICE, user)
        assert _items_of(name) == {}


def _show(cli, name: str) -> dict:
    r = cli("--json", "show", name)
    assert r.code == 0, r.stderr
    return r.json()["principal"]


def _entry(secret_service, name: str, kid: str) -> str | None:
    return secret_service.get_password(SERVICE, f"{name}/{kid}")


def test_probe_finds_the_secret_service(secret_service):
    assert keyring_available() == (True, "Keyring")
    assert secret_service.get_password(SERVICE, "agentctl-probe") is None  # the probe only reads


def test_keygen_stores_the_secret_in_the_secret_service(cli, home, principal, secret_service):
    name = principal()
    r = cli("--json", "keygen", name, env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 0, r.stderr
    doc = r.json()["principal"]
    assert doc["keystore"] == "keyring"
    kid = doc["kid"]
    stored = _entry(secret_service, name, kid)
    assert stored is not None
    secret = decode_secret(stored)
    assert secret.name == name
    assert did_key(public_key(secret.seed)) == doc["did"]
    assert _items_of(name) == {f"{name}/{kid}": stored}
    assert not (home / "keys").exists()  # nothing in the file keystore
    for f in home.rglob("*"):  # the store and the audit log never hold the secret
        assert not f.is_file() or stored.encode("ascii") not in f.read_bytes(), f


def test_auto_picks_the_secret_service_without_a_notice(cli, home, principal, secret_service):
    name = principal()
    r = cli("--json", "keygen", name)
    assert r.code == 0, r.stderr
    assert r.json()["principal"]["keystore"] == "keyring"
    assert "no usable os keyring" not in r.stderr
    assert list(_items_of(name)) == [f"{name}/{r.json()['principal']['kid']}"]


def test_rotate_reads_and_replaces_the_secret(cli, home, principal, secret_service):
    name = principal()
    r = cli("--json", "keygen", name, env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 0, r.stderr
    old_kid = r.json()["principal"]["kid"]

    r = cli("--json", "rotate", name)
    assert r.code == 0, r.stderr
    doc = r.json()["principal"]
    new_kid = doc["kid"]
    assert new_kid != old_kid
    assert doc["keystore"] == "keyring"
    stored = _entry(secret_service, name, new_kid)
    assert stored is not None and did_key(public_key(decode_secret(stored).seed)) == doc["did"]
    assert _entry(secret_service, name, old_kid) is None  # the retired secret is gone
    assert list(_items_of(name)) == [f"{name}/{new_kid}"]

    # rotate signs with the secret it reads from the Secret Service: without it, it cannot.
    secret_service.delete_password(SERVICE, f"{name}/{new_kid}")
    before = store_snapshot(home)
    r = cli("rotate", name)
    assert r.code == 3
    assert "missing from the keyring keystore" in r.stderr and "Traceback" not in r.stderr
    assert store_snapshot(home) == before
    assert _items_of(name) == {}


def test_revoke_removes_the_secret(cli, home, principal, secret_service):
    name = principal()
    r = cli("--json", "keygen", name, env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 0, r.stderr
    r = cli("--json", "rotate", name)
    assert r.code == 0, r.stderr
    assert len(_items_of(name)) == 1
    r = cli("--json", "revoke", name, "--reason", "test")
    assert r.code == 0, r.stderr
    assert r.json()["revoked"] == {"kind": "principal", "id": name, "at": r.json()["revoked"]["at"], "reason": "test"}
    assert _items_of(name) == {}
    assert _show(cli, name)["status"] == "revoked"


def test_export_secret_no_store_leaves_nothing(cli, home, principal, secret_service):
    name = principal()
    r = cli("keygen", name, "--export-secret", "--no-store", env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 0, r.stderr
    line = r.stdout.strip()
    assert decode_secret(line).name == name
    assert _items_of(name) == {}
    assert _show(cli, name)["keystore"] is None
    assert not (home / "keys").exists()


def test_keystore_library_round_trip(principal, secret_service, tmp_path):
    name = principal()
    store = open_keystore("auto", Home(tmp_path / "home", env={}), env={}, notify=pytest.fail)
    assert isinstance(store, KeyringKeystore)
    seed = bytes(range(32))
    store.put(name, "kid-1", seed)
    store.put(name, "kid-1", seed[::-1])  # replaces, does not duplicate
    assert list(_items_of(name)) == [f"{name}/kid-1"]
    assert store.get(name, "kid-1") == seed[::-1]
    store.delete(name, "kid-1")
    store.delete(name, "kid-1")
    assert store.get(name, "kid-1") is None
    assert _items_of(name) == {}


@pytest.mark.subprocess
def test_console_script_uses_the_secret_service(tmp_path, principal, secret_service):
    """A real process: keyring's own detection, no test fixtures in between."""
    script = Path(sys.executable).with_name("agentctl")
    assert script.exists(), f"the console script is not installed next to {sys.executable}"
    name = principal()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_") and k != "PYTHON_KEYRING_BACKEND"}
    env.update(AGENTCTL_HOME=str(tmp_path / "home"), AGENTCTL_KEYSTORE="keyring")
    r = subprocess.run([str(script), "--json", "keygen", name], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    kid = json.loads(r.stdout)["principal"]["kid"]
    assert decode_secret(_entry(secret_service, name, kid)).name == name


# --- a locked Secret Service ------------------------------------------------------------------------


@pytest.fixture
def locked_login_keyring(secret_service):
    """Lock the default collection for the test, then unlock it with its password (no prompt)."""
    password = os.environ.get(PASSWORD_VAR)
    if not password:
        # Locking a person's own keyring would ask them to type its password.
        _unavailable(f"{PASSWORD_VAR} is not set: only a throwaway keyring (.ci/keyring-session) is locked by tests")
    import secretstorage
    from secretstorage.defines import SS_PATH
    from secretstorage.util import DBusAddressWrapper, format_secret, open_session

    with closing(secretstorage.dbus_init()) as bus:
        service = DBusAddressWrapper(SS_PATH, "org.freedesktop.Secret.Service", bus)
        (path,) = service.call("ReadAlias", "s", "default")
        collection = secretstorage.Collection(bus, path)
        collection.lock()
        assert collection.is_locked()
        try:
            yield
        finally:
            gnome = DBusAddressWrapper(SS_PATH, "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface", bus)
            gnome.call("UnlockWithMasterPassword", "o(oayays)", path, format_secret(open_session(bus), password.encode(), "text/plain"))
            assert not collection.is_locked()


def test_locked_secret_service_is_a_clear_error(cli, home, principal, locked_login_keyring, monkeypatch):
    monkeypatch.setattr(ks, "_availability", None)
    ok, why = keyring_available()
    assert not ok
    assert "locked" in why and "did not answer" not in why  # refused at once, not timed out

    monkeypatch.setattr(ks, "_availability", None)
    with pytest.raises(KeystoreError) as info:
        open_keystore("keyring", Home(home, env={}), env={})
    assert info.value.exit_code == 3 and "locked" in info.value.message

    name = principal()
    monkeypatch.setattr(ks, "_availability", None)
    r = cli("keygen", name, env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 3
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("agentctl: error: no usable os keyring: the os keyring is locked")
    assert lines[1].startswith("agentctl: hint: ") and "AGENTCTL_KEYSTORE=file" in lines[1]
    assert snapshot(home) == {}

    # auto: the file keystore, said once.
    monkeypatch.setattr(ks, "_availability", None)
    r = cli("--json", "keygen", name, env={"AGENTCTL_KEYSTORE": None})
    assert r.code == 0, r.stderr
    assert r.json()["principal"]["keystore"] == "file"
    assert r.stderr.count("no usable os keyring (the os keyring is locked") == 1
    assert isinstance(open_keystore("file", Home(home, env={}), env={}), FileKeystore)
