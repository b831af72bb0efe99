"""Shared fixtures: an isolated home per test, a fake keyring, and an in-process CLI runner."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: Public test vectors, vendored with their sources and licences (tests/data/README.md).
TESTDATA = TESTS / "data"

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def testdata(*parts: str) -> Path:
    """A vendored vector file or folder under tests/data. A missing one fails the run (at collection,
    where it is asked for): the suite never quietly runs fewer cases."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data missing: {path} (vendored in tests/data; see tests/data/README.md)", pytrace=False)
    return path


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test sees the developer's home, keyring, secrets or settings."""
    for var in list(os.environ):
        if var.startswith("AGENTCTL_") or var in ("PYTHON_KEYRING_BACKEND", "NO_COLOR"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "fakekeyring.FakeKeyring")
    monkeypatch.setenv("AGENTCTL_TEST_KEYRING", str(tmp_path / "fake-keyring.json"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    import keyring.core

    import agentctl.keystore as ks

    monkeypatch.setattr(ks, "_availability", None)
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # keyring caches the backend it picked
    yield


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh home (not yet created on disk), also set as AGENTCTL_HOME."""
    h = tmp_path / "home"
    monkeypatch.setenv("AGENTCTL_HOME", str(h))
    return h


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(monkeypatch):
    """Run agentctl in-process: ``cli("keygen", "agent:x", input=..., env={...})``."""
    from agentctl._cli.entry import main

    def run(*args: str, input: str = "", env: dict | None = None) -> Result:
        for k, v in (env or {}).items():
            if v is None:
                monkeypatch.delenv(k, raising=False)
            else:
                monkeypatch.setenv(k, v)
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdin", io.StringIO(input))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return Result(code, out.getvalue(), err.getvalue())

    return run


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes, to prove a failed command changed nothing."""
    if not path.exists():
        return {}
    transient = {".lock", "audit.lock", "audit.db-wal", "audit.db-shm"}  # lock files and SQLite's own
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.name not in transient:
            out[str(p.relative_to(path))] = _audit_rows(p) if p.name == "audit.db" else p.read_bytes()
    return out


def _audit_rows(db: Path):
    """The audit log's content, not its pages: SQLite may fold its WAL into the file at any close."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: conn.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
    except sqlite3.DatabaseError:
        return db.read_bytes()
    finally:
        conn.close()
