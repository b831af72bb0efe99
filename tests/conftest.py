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


testdata.__test__ = False  # type: ignore[attr-defined]  # imported by test modules: a helper, not a test


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
    import toml_check

    toml_check.check_tree(tmp_path)  # every TOML file a test left: agentctl.toml_subset reads it as tomllib does


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


# --- a real PostgreSQL for the central audit store (tests/test_ship*.py) -----------------------


def _pg_bindir() -> Path | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PgCluster:
    """A private PostgreSQL cluster on a unix socket: ``owner_url(db)`` connects as its superuser
    (trusted on the socket); every other role logs in with a password (scram-sha-256)."""

    socket_dir: Path
    owner: str = "agentctl_owner"

    def url(self, role: str, db: str) -> str:
        return f"postgresql://{role}@/{db}?host={self.socket_dir}"

    def owner_url(self, db: str = "postgres") -> str:
        return self.url(self.owner, db)


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL cluster per test session, started as a non-root user in a temporary directory.
    Skipped only when the PostgreSQL server binaries are absent, and never in CI (CI=true): there a
    missing server fails the run."""
    import pwd
    import shutil
    import subprocess
    import tempfile

    bindir = _pg_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are missing; CI installs Debian's postgresql (.ci/run)", pytrace=False)
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql to run the central audit tests")
    base = Path(tempfile.mkdtemp(prefix="agentctl-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as a system user
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.fail("running as root with no 'postgres' or 'nobody' user to run PostgreSQL as", pytrace=False)
        pw = pwd.getpwnam(user)
        os.chmod(base, 0o755)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
    data, sock = base / "data", base / "sock"
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}

    def run(*cmd: str) -> None:
        r = subprocess.run([*prefix, *cmd], capture_output=True, text=True, env=env, cwd=base, timeout=120)
        if r.returncode:
            log = (base / "log").read_text(errors="replace")[-2000:] if (base / "log").exists() else ""
            pytest.fail(f"{' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr.strip()[-2000:]}\n{log}", pytrace=False)

    run("mkdir", "-m", "0700", str(sock))
    run(str(bindir / "initdb"), "-D", str(data), "-U", PgCluster.owner, "-A", "trust",
        "--no-sync", "-E", "UTF8", "--locale=C")
    hba = f"local all {PgCluster.owner} trust\nlocal all all scram-sha-256\n"
    run("sh", "-c", f"printf '%s' '{hba}' > {data}/pg_hba.conf")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "-o",
        f"-k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off", "start")
    os.chmod(base, 0o755)
    try:
        yield PgCluster(sock)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, env=env, cwd=base, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
