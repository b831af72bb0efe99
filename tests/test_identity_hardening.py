"""Homes owned by others, file-backed keyrings, passphrases, and the identity inputs a user meets
(issue 9 items 6, 8, 13, 18, 24 and roles)."""

from __future__ import annotations

import json
import os
import string

import keyring.core
import pytest
from keyring.backend import KeyringBackend
from keyring.compat import properties

import agentctl.keystore as ks
from agentctl.errors import PassphraseError
from agentctl.home import Home
from agentctl.keystore import FileKeystore
from conftest import snapshot

OTHER_UID = 65534  # nobody


def events(cli) -> list[dict]:
    return list(reversed(cli("--json", "audit").json()["events"]))


# --- item 8: a home someone else can write is refused -------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
@pytest.mark.parametrize("where", ["", "principals", "revocations.db"])
def test_home_owned_by_another_user_is_refused(cli, home, where):
    cli("keygen", "user:alice")
    cli("revoke", "--grant", "G" * 22)
    victim = home / where if where else home
    os.chown(victim, OTHER_UID, OTHER_UID)
    for args in (("list",), ("verify", "e30.e30.e30"), ("keygen", "agent:x")):
        r = cli(*args)
        assert r.code == 3, (args, r.stderr)
        assert f"owned by uid {OTHER_UID}" in r.stderr and "hint: " in r.stderr
        assert "internal error" not in r.stderr


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o722])
def test_home_writable_by_group_or_others_is_refused(cli, home, mode):
    cli("keygen", "user:alice")
    os.chmod(home, mode)
    r = cli("--json", "list")
    assert r.code == 3
    assert "writable by group or others" in r.stderr and f"chmod 700 {home}" in r.stderr
    os.chmod(home, 0o700)
    assert cli("list").code == 0


def test_group_writable_store_directory_is_refused(cli, home):
    cli("keygen", "user:alice")
    os.chmod(home / "principals", 0o777)
    r = cli("show", "user:alice")
    assert r.code == 3 and "principals" in r.stderr


def test_a_fresh_home_is_accepted(cli, tmp_path):
    assert cli("--home", str(tmp_path / "new"), "keygen", "user:a").code == 0
    assert oct(os.stat(tmp_path / "new").st_mode & 0o777) == "0o700"


def test_home_with_a_too_long_name_is_one_line(cli, tmp_path):
    r = cli("--home", str(tmp_path / ("x" * 300)), "list")
    assert r.code == 2 and "name too long" in r.stderr.lower()
    assert "internal error" not in r.stderr


# --- item 6: a keyring that keeps secrets in files is no OS keyring -----------------------------


class PlaintextLike(KeyringBackend):
    """Stands for keyrings.alt's PlaintextKeyring: a backend from keyrings.alt."""

    @properties.classproperty
    def priority(cls) -> float:  # keyring registers every backend class: never join its detection
        raise RuntimeError("only set explicitly by a test")

    def __init__(self) -> None:
        super().__init__()
        self.stored = {}

    def get_password(self, service, username):
        return self.stored.get((service, username))

    def set_password(self, service, username, password):
        self.stored[(service, username)] = password

    def delete_password(self, service, username):
        self.stored.pop((service, username), None)


PlaintextLike.__module__ = "keyrings.alt.file"


@pytest.fixture
def plaintext_keyring(monkeypatch):
    backend = PlaintextLike()
    monkeypatch.setattr(keyring.core, "_keyring_backend", backend)
    monkeypatch.setattr(ks, "_availability", None)
    return backend


def test_auto_never_takes_keyrings_alt_for_an_os_keyring(cli, home, plaintext_keyring):
    r = cli("keygen", "agent:a", env={"AGENTCTL_PASSPHRASE": "pw"})
    assert r.code == 0, r.stderr
    assert "keyrings.alt" in r.stderr and "file keystore" in r.stderr
    assert plaintext_keyring.stored == {}  # nothing in the plain-file backend
    doc = cli("--json", "show", "agent:a").json()["principal"]
    assert doc["keystore"] == "file"
    key_file = next((home / "keys").iterdir())
    assert key_file.read_text().startswith("AGENTCTL-SEALED-KEY-1")  # AGENTCTL_PASSPHRASE was honoured


def test_keyring_mode_with_keyrings_alt_is_an_error(cli, home, plaintext_keyring):
    r = cli("keygen", "agent:a", env={"AGENTCTL_KEYSTORE": "keyring"})
    assert r.code == 3 and "no os keyring" in r.stderr
    assert plaintext_keyring.stored == {}
    assert cli("show", "agent:a").code == 2


def test_the_real_keyrings_alt_plaintext_backend_is_refused(monkeypatch):
    file_mod = pytest.importorskip("keyrings.alt.file")
    monkeypatch.setattr(keyring.core, "_keyring_backend", file_mod.PlaintextKeyring())
    monkeypatch.setattr(ks, "_availability", None)
    ok, why = ks.keyring_available()
    assert not ok and "keyrings.alt" in why


@pytest.mark.parametrize("backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"])
def test_fail_and_null_backends_are_no_keyring(monkeypatch, backend):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    monkeypatch.setattr(ks, "_availability", None)
    assert ks.keyring_available()[0] is False


def test_empty_passphrase_never_writes_an_unencrypted_key(cli, home):
    r = cli("keygen", "agent:a", env={"AGENTCTL_KEYSTORE": "file", "AGENTCTL_PASSPHRASE": ""})
    assert r.code == 2 and "AGENTCTL_PASSPHRASE is set but empty" in r.stderr
    assert not (home / "keys").exists() or not any((home / "keys").iterdir())
    assert cli("show", "agent:a").code == 2


# --- item 18: prompts name the key and allow three tries ----------------------------------------


def _sealed(tmp_path):
    h = Home(tmp_path / "home", env={})
    FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "right"}).put("agent:a", "K" * 43, b"\x01" * 32)
    return h


def test_prompt_names_the_key_and_retries(tmp_path):
    h = _sealed(tmp_path)
    asked = []

    def prompt(purpose, label):
        asked.append((purpose, label))
        return b"right" if len(asked) == 3 else b"wrong"

    assert FileKeystore(h, env={}, prompt=prompt).get("agent:a", "K" * 43) == b"\x01" * 32
    assert [p for p, _ in asked] == ["unlock", "retry", "retry"]
    assert all("agent:a" in label for _, label in asked)


def test_three_wrong_answers_do_not_push_the_environment_variable(tmp_path):
    h = _sealed(tmp_path)
    asked = []
    with pytest.raises(PassphraseError) as e:
        FileKeystore(h, env={}, prompt=lambda purpose, label: asked.append(1) or b"wrong").get("agent:a", "K" * 43)
    assert len(asked) == 3
    assert "3 tries" in e.value.message and "agent:a" in e.value.message
    assert "AGENTCTL_PASSPHRASE" not in (e.value.hint or "")


def test_a_wrong_environment_passphrase_is_tried_once(tmp_path):
    h = _sealed(tmp_path)
    with pytest.raises(PassphraseError) as e:
        FileKeystore(h, env={"AGENTCTL_PASSPHRASE": "wrong"}, prompt=lambda p: pytest.fail("asked")).get("agent:a", "K" * 43)
    assert "AGENTCTL_PASSPHRASE" in e.value.hint


def test_a_one_argument_prompt_still_works(tmp_path):
    h = _sealed(tmp_path)
    assert FileKeystore(h, env={}, prompt=lambda purpose: b"right").get("agent:a", "K" * 43) == b"\x01" * 32


# --- item 13: files and arguments named, never "internal error" ----------------------------------


@pytest.mark.parametrize("text", ["exported = 5\n", "[exported]\n'user:admin' = 'x'\n", "[imported]\nnot-a-name = 1\n", "\xff"])
def test_damaged_revocation_lists_file_is_named(cli, home, text):
    cli("keygen", "user:admin")
    (home / "revocation-lists.toml").write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff" else b"\xff")
    r = cli("revocations", "export", "--sign-as", "user:admin")
    assert r.code == 3, r.stderr
    assert "revocation-lists.toml" in r.stderr and "internal error" not in r.stderr


def test_very_long_import_argument_is_a_usage_error(cli, home):
    r = cli("import", "agent:x", "A" * 5000)
    assert r.code == 2 and "internal error" not in r.stderr
    assert len(r.stderr.splitlines()[0]) < 300


# --- item 24: retired keys exported, did:key fragments, secret typos ----------------------------


def test_pubkey_all_jwks_exports_retired_keys_with_their_validity(cli, home):
    cli("keygen", "agent:a")
    cli("rotate", "agent:a")
    cli("rotate", "agent:a")
    doc = json.loads(cli("pubkey", "agent:a", "--all", "--format", "jwks").stdout)
    keys = doc["keys"]
    shown = cli("--json", "show", "agent:a").json()["principal"]["keys"]
    assert [k["kid"] for k in keys] == [k["kid"] for k in reversed(shown)]
    assert "exp" not in keys[0] and all("exp" in k and k["exp"] >= k["iat"] for k in keys[1:])
    cli("revoke", "--key", keys[2]["kid"])
    keys = json.loads(cli("pubkey", "agent:a", "--all", "--format", "jwks").stdout)["keys"]
    assert len(keys) == 2  # a revoked key verifies nothing: not exported
    assert cli("pubkey", "agent:a", "--all").code == 2  # only as a key set


def test_pubkey_all_keys_verify_old_tokens_with_pyjwt(cli, home):
    jwt = pytest.importorskip("jwt")
    cli("keygen", "user:alice")
    cli("keygen", "agent:x")
    grant = cli("delegate", "--from", "user:alice", "--to", "agent:x", "--scope", "a.b:r").stdout.strip()
    cli("rotate", "user:alice")
    keys = json.loads(cli("pubkey", "user:alice", "--all", "--format", "jwks").stdout)["keys"]
    kid = jwt.get_unverified_header(grant)["kid"]
    match = next(k for k in keys if k["kid"] == kid)
    key = jwt.PyJWK(match)
    claims = jwt.decode(grant, key.key, algorithms=["EdDSA"], options={"verify_aud": False})
    assert claims["iat"] <= match["exp"]


def test_import_did_key_with_its_own_fragment(cli, home, tmp_path):
    there = tmp_path / "there"
    cli("--home", str(there), "keygen", "agent:far")
    did = cli("--home", str(there), "pubkey", "agent:far").stdout.strip()
    r = cli("import", "agent:far", f"{did}#{did[len('did:key:'):]}")
    assert r.code == 0, r.stderr
    cli("--home", str(there), "keygen", "agent:other")
    other = cli("--home", str(there), "pubkey", "agent:other").stdout.strip()
    r = cli("import", "agent:mixed", f"{did}#{other[len('did:key:'):]}")
    assert r.code == 2 and "fragment" in r.stderr


def test_last_character_typo_in_a_secret_is_a_bad_checksum(cli, home):
    secret = cli("keygen", "agent:ci2", "--export-secret", "--no-store").stdout.strip()  # 46 bytes: 2 spare bits
    for c in string.ascii_letters + string.digits + "-_":
        typo = secret[:-1] + c
        if typo == secret:
            continue
        r = cli("sign", "--as", "agent:ci2", "--action", "a.b", "--resource", "r", env={"AGENTCTL_SECRET_KEY": typo})
        assert r.code == 2 and "bad checksum" in r.stderr, (c, r.stderr)


# --- roles --------------------------------------------------------------------------------------


def test_role_add_and_remove_are_audited(cli, home):
    cli("keygen", "user:alice", "--role", "engineer")
    r = cli("--json", "role", "add", "user:alice", "deployer", "engineer")
    assert r.code == 0, r.stderr
    assert r.json()["added"] == ["deployer"]
    assert cli("--json", "show", "user:alice").json()["principal"]["roles"] == ["engineer", "deployer"]
    assert cli("role", "remove", "user:alice", "engineer").code == 0
    assert cli("--json", "show", "user:alice").json()["principal"]["roles"] == ["deployer"]
    evs = [e for e in events(cli) if e["event"] == "role"]
    assert [(e["metadata"]["added"], e["metadata"]["removed"]) for e in evs] == [(["deployer"], []), ([], ["engineer"])]


def test_role_bad_input_changes_nothing(cli, home):
    cli("keygen", "user:alice")
    before = snapshot(home)
    assert cli("role", "add", "user:alice", "Bad Role").code == 2
    assert cli("role", "add", "user:nobody", "x").code == 2
    assert cli("role", "add", "user:alice").code == 2
    assert snapshot(home) == before
