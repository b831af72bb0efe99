"""A fake keyring backend for tests: a JSON file named by AGENTCTL_TEST_KEYRING (so subprocess runs
share it), else memory. Selected with PYTHON_KEYRING_BACKEND=fakekeyring.FakeKeyring; it passes the
keyring package's own backend test suite (tests/test_fake_keyring.py)."""

from __future__ import annotations

import json
import os

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FakeKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self._memory: dict[str, dict[str, str]] = {}

    def _path(self) -> str | None:
        return os.environ.get("AGENTCTL_TEST_KEYRING") or None

    def _load(self) -> dict[str, dict[str, str]]:
        path = self._path()
        if path is None:
            return self._memory
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        path = self._path()
        if path is None:
            self._memory = data
            return
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        try:
            del data[service][username]
        except KeyError:
            raise PasswordDeleteError("no such password") from None
        self._save(data)
