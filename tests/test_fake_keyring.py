"""The fake keyring must behave like a real backend: it passes keyring's own backend test suite, in
both of its modes (a JSON file named by AGENTCTL_TEST_KEYRING, and memory when that is unset)."""

from __future__ import annotations

import json
import os
import stat

import keyring
import keyring.core
import pytest
from keyring.errors import PasswordDeleteError
from keyring.testing.backend import BackendBasicTests

from fakekeyring import FakeKeyring


class TestFileMode(BackendBasicTests):
    """AGENTCTL_TEST_KEYRING names a file (the conftest sets one per test)."""

    def init_keyring(self):
        assert os.environ.get("AGENTCTL_TEST_KEYRING"), "the conftest must set a keyring file per test"
        return FakeKeyring()


class TestMemoryMode(BackendBasicTests):
    """AGENTCTL_TEST_KEYRING unset: values live in the backend object."""

    @pytest.fixture(autouse=True)
    def _init_properties(self, request, monkeypatch):
        # Overrides the suite's fixture so that the variable is gone before the keyring is made and
        # stays gone until the suite's cleanup has run.
        monkeypatch.delenv("AGENTCTL_TEST_KEYRING", raising=False)
        self.keyring = self.init_keyring()
        self.credentials_created = set()
        request.addfinalizer(self.cleanup)

    def init_keyring(self):
        assert "AGENTCTL_TEST_KEYRING" not in os.environ, "memory mode must be set up before the keyring"
        return FakeKeyring()


# --- what the suite above does not cover, and agentctl relies on -----------------------------------


def test_file_mode_is_shared_between_instances(tmp_path):
    """Subprocess runs see what the test process stored: the state lives in the file, not the object."""
    path = tmp_path / "fake-keyring.json"
    first, second = FakeKeyring(), FakeKeyring()
    first.set_password("agentctl", "agent:a/kid", "v1")
    assert path.exists()
    assert json.loads(path.read_text("utf-8")) == {"agentctl": {"agent:a/kid": "v1"}}
    assert second.get_password("agentctl", "agent:a/kid") == "v1"
    second.delete_password("agentctl", "agent:a/kid")
    assert first.get_password("agentctl", "agent:a/kid") is None


def test_file_mode_file_is_private(tmp_path):
    FakeKeyring().set_password("s", "u", "secret")
    mode = stat.S_IMODE((tmp_path / "fake-keyring.json").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)


def test_file_mode_follows_the_environment(tmp_path, monkeypatch):
    """keyring caches one backend per process, so the fake must read the variable at each call."""
    kr = FakeKeyring()
    kr.set_password("s", "u", "in-a")
    monkeypatch.setenv("AGENTCTL_TEST_KEYRING", str(tmp_path / "b.json"))
    assert kr.get_password("s", "u") is None
    kr.set_password("s", "u", "in-b")
    assert json.loads((tmp_path / "b.json").read_text("utf-8")) == {"s": {"u": "in-b"}}
    assert json.loads((tmp_path / "fake-keyring.json").read_text("utf-8")) == {"s": {"u": "in-a"}}


def test_memory_mode_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTCTL_TEST_KEYRING")
    kr = FakeKeyring()
    kr.set_password("s", "u", "p")
    assert kr.get_password("s", "u") == "p"
    assert FakeKeyring().get_password("s", "u") is None  # memory is per object
    assert list(tmp_path.iterdir()) == []


def test_delete_of_a_missing_entry_leaves_others(tmp_path):
    kr = FakeKeyring()
    kr.set_password("s", "u", "p")
    with pytest.raises(PasswordDeleteError):
        kr.delete_password("s", "other")
    with pytest.raises(PasswordDeleteError):
        kr.delete_password("other", "u")
    assert kr.get_password("s", "u") == "p"


def test_selected_by_environment_variable(monkeypatch):
    """PYTHON_KEYRING_BACKEND=fakekeyring.FakeKeyring (set by the conftest) loads this class."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    assert isinstance(keyring.get_keyring(), FakeKeyring)
    assert keyring.core.recommended(FakeKeyring)
