"""ruff and mypy over the tree, as part of the suite (so the README's test command and CI run them):
pyflakes and bugbear's likely bugs everywhere, and the library's types (pyproject.toml holds both
configurations)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    r = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_finds_nothing_in_the_library():
    r = _run(sys.executable, "-m", "mypy", "--cache-dir", "/dev/null")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no issues found" in r.stdout
