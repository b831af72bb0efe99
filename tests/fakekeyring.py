"""A fake keyring backend for tests: a JSON file named by AGENTCTL_TEST_KEYRING (so subprocess runs
share it), else memory. Selected with PYTHON_KEYRING_BACKEND=fakekeyring.FakeKeyring; it passes the
keyring package's own backend test suite (tests/test_fake_keyring.py).

It is viable only when PYTHON_KEYRING_BACKEND names it: keyring registers every backend class that is
imported, and a fake that joined keyring's own detection would be chained in front of (or behind) a
real Secret Service in the tests that use one.
"""

from __future__ import annotations

import json
import os

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError

ENV_FILE = "AGENTCTL_TEST_KEYRING"


class FakeKeyring(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        if os.environ.get("PYTHON_KEYRING_BACKEND") != f"{cls.__module__}.{cls.__qualname__}":
            raise RuntimeError("the fake keyring is used only when PYTHON_KEYRING_BACKEND names it")
        return 1

    def __init__(self) -> None:
        super().__init__()
        self._memory: dict[str, dict[str, str]] = {}

    def _path(self) -> str | None:
        # Read at every call: keyring keeps one backend object per process, and each test names its
        # own file.
        return os.environ.get(ENV_FILE) or None

    def _load(self) -> dict[str, dict[str, str]]:
        path = self._path()
        if path is None:
            return {service: dict(users) for service, users in self._memory.items()}
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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
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
        if not data[service]:
            del data[service]
        self._save(data)
