"""The one command outline: every -o means the same, every failure under --json has one shape, and a
closed stdout or an odd config.toml is a clear error, never a traceback or a hang."""

from __future__ import annotations

import json

import os
import stat
import subprocess
import sys

import pytest

from agentctl.errors import KINDS

from conftest import snapshot

#: Every command with -o, and what it writes (a token, a statement, a list, a checkpoint note).
O_COMMANDS = {
    "delegate": ["delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.staging:api/*"],
    "sign": ["sign", "--as", "user:alice", "--action", "deploy.staging", "--resource", "api/web"],
    "rotate": ["rotate", "user:alice"],
    "revocations export": ["revocations", "export", "--sign-as", "user:alice"],
    "audit checkpoint": ["audit", "checkpoint"],
}


@pytest.fixture
def people(cli, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("user:alice", "agent:bot"):
        assert cli("keygen", name).code == 0
    return home


@pytest.mark.parametrize("command", list(O_COMMANDS))
def test_dash_is_stdout(cli, people, tmp_path, command):
    r = cli(*O_COMMANDS[command], "-o", "-")
    assert r.code == 0, r.stderr
    assert r.stdout.strip(), "the result goes to stdout"
    assert not (tmp_path / "-").exists(), "no file named '-'"


@pytest.mark.parametrize("command", list(O_COMMANDS))
@pytest.mark.parametrize("where", ["dir", "missing parent", "unwritable dir"])
def test_a_target_that_cannot_be_written_is_refused_before_anything_changes(cli, people, tmp_path, command, where):
    if where == "unwritable dir" and os.geteuid() == 0:
        pytest.skip("root writes into any directory")
    locked = tmp_path / "locked"
    locked.mkdir()
    target = {"dir": str(tmp_path), "missing parent": str(tmp_path / "missing" / "x"), "unwritable dir": str(locked / "x")}[where]
    os.chmod(locked, 0o500)
    try:
        before = snapshot(people)
        r = cli(*O_COMMANDS[command], "-o", target)
    finally:
        os.chmod(locked, 0o700)
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("agentctl: error: cannot write "), r.stderr
    assert snapshot(people) == before, "nothing changed or recorded"
    assert not os.path.exists(target) or os.path.isdir(target)


@pytest.mark.parametrize("command", list(O_COMMANDS))
def test_a_full_device_is_an_operational_error(cli, people, command):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    before = snapshot(people)
    r = cli(*O_COMMANDS[command], "-o", "/dev/full")
    assert r.code == 3, r.stderr
    assert "agentctl: error: cannot write /dev/full" in r.stderr and "Traceback" not in r.stderr
    after = snapshot(people)
    if command == "rotate":  # the statement must not be lost: the rotation is undone
        assert after["principals/user+alice.toml"] == before["principals/user+alice.toml"]
    if command == "audit checkpoint":  # written before it commits: no checkpoint is kept
        assert after["audit.db"]["checkpoints"] == before["audit.db"]["checkpoints"] == []


@pytest.mark.parametrize("command", list(O_COMMANDS))
@pytest.mark.parametrize("umask", [0o077, 0o022])
def test_the_file_gets_the_mode_the_umask_gives(cli, people, tmp_path, command, umask):
    old = os.umask(umask)
    try:
        r = cli(*O_COMMANDS[command], "-o", str(tmp_path / "out.txt"))
    finally:
        os.umask(old)
    assert r.code == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o666 & ~umask
    assert (tmp_path / "out.txt").read_text().strip()


def test_a_device_is_written_into_not_renamed_over(cli, people):
    r = cli(*O_COMMANDS["delegate"], "-o", "/dev/null")
    assert r.code == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


# --- one failure shape -----------------------------------------------------------------------

SHAPE = {"ok", "error", "reason", "message", "exit_code"}


def _failures(tmp_path):
    missing = str(tmp_path / "nope.jwt")
    return {
        "unknown flag": (2, ["list", "--bogus"]),
        "unknown command": (2, ["frobnicate"]),
        "bad argument": (2, ["pubkey", "user:alice", "--format", "pem"]),
        "missing file": (2, ["verify", missing]),
        "missing revocation list": (2, ["revocations", "import", missing]),
        "missing checkpoint": (2, ["audit", "consistency", missing, missing]),
        "unknown principal": (2, ["show", "user:nobody"]),
        "exists": (2, ["keygen", "user:alice"]),
        "bad duration": (2, ["delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "a.b:c", "--ttl", "forever"]),
        "bad -o": (2, ["sign", "--as", "user:alice", "--action", "a.b", "--resource", "c", "-o", str(tmp_path)]),
        "denied": (1, ["verify", "a.b.c"]),
        "denied inspect": (1, ["inspect", "a.b.c"]),
        "no completion": (2, ["completion", "tcsh"]),
    }


@pytest.mark.parametrize("case", list(_failures(__import__("pathlib").Path("/x"))))
@pytest.mark.parametrize("where", ["before", "after"])
def test_every_failure_under_json_has_one_shape(cli, people, tmp_path, case, where):
    code, argv = _failures(tmp_path)[case]
    args = ["--json", *argv] if where == "before" else [*argv, "--json"]
    if where == "after" and case == "unknown command":
        args = ["--json", *argv]
    r = cli(*args)
    assert r.code == code, r.stderr
    doc = r.json()
    assert SHAPE <= set(doc), doc
    assert doc["ok"] is False and doc["exit_code"] == code
    assert doc["error"] in KINDS and KINDS[doc["error"]] == code
    assert isinstance(doc["message"], str) and doc["message"]
    if doc["error"] == "denied":
        assert doc["reason"] == "malformed" and doc["detail"]  # the verdict fields stay
    else:
        assert doc["reason"] is None and set(doc) <= SHAPE | {"hint"}, doc


def test_an_operational_failure_has_the_shape(cli, people):
    (people / "config.toml").write_text("this is = = not toml\n")
    r = cli("--json", "keygen", "agent:other")
    assert r.code == 3
    doc = r.json()
    assert set(doc) <= SHAPE | {"hint"} and doc["error"] == "operational" and doc["reason"] is None


def test_tampering_has_the_shape(cli, people):
    import sqlite3

    from agentctl.audit import codec

    conn = sqlite3.connect(people / "audit.db")
    codec.register(conn)  # the stored leaves are deflated (schema 3)
    triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for t in triggers:
        conn.execute(f'DROP TRIGGER "{t}"')
    conn.execute("UPDATE entries SET body = audit_pack(replace(audit_leaf(body), 'user:alice', 'user:mallo')) WHERE seq = 1")
    conn.commit()
    conn.close()
    r = cli("--json", "audit", "verify")
    assert r.code == 1
    doc = r.json()
    assert SHAPE <= set(doc) and doc["error"] == "tampered" and doc["exit_code"] == 1 and doc["reason"] is None


# --- stdout closed, config.toml that is no file ----------------------------------------------


@pytest.mark.parametrize("argv", [["--version"], ["list"], ["--json", "list"], ["demo"]])
def test_a_closed_stdout_is_an_operational_error_without_a_traceback(home, argv):
    r = subprocess.run([sys.executable, "-m", "agentctl", *argv], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, pass_fds=(), preexec_fn=lambda: os.close(1), timeout=120)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == "agentctl: error: stdout is closed; nothing was done"


def test_a_fifo_at_config_toml_is_refused_not_waited_on(cli, home):
    home.mkdir()
    os.mkfifo(home / "config.toml")
    r = cli("keygen", "agent:x")  # would block forever reading the FIFO
    assert r.code == 3 and "is not a regular file" in r.stderr


def test_deeply_nested_config_toml_is_a_usage_error(cli, home):
    home.mkdir()
    (home / "config.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    r = cli("keygen", "agent:x")
    assert r.code == 2, r.stderr
    assert "nested too deeply" in r.stderr and "internal error" not in r.stderr


@pytest.mark.parametrize("group, key", [("revocations", "list"), ("trust", "bundle")])
def test_an_export_whose_file_cannot_be_written_counts_no_version(cli, tmp_path, monkeypatch, group, key):
    from agentctl._cli.target import Target
    from agentctl.errors import OperationalError

    home = str(tmp_path / "h")
    assert cli("--home", home, "keygen", "user:admin").code == 0

    def broken(self, text):
        raise OperationalError(f"cannot write {self.path}: disk full")

    with monkeypatch.context() as m:
        m.setattr(Target, "write", broken)
        r = cli("--home", home, "--json", group, "export", "--sign-as", "user:admin", "-o", str(tmp_path / "out"))
    assert r.code == 3 and "disk full" in r.json()["message"]
    assert not (tmp_path / "out").exists()
    r = cli("--home", home, "--json", group, "export", "--sign-as", "user:admin", "-o", str(tmp_path / "out"))
    assert r.code == 0 and r.json()["version"] == 1  # the failed export's version was put back
    lines = cli("--home", home, "audit", "export").stdout.splitlines()
    exports = [json.loads(x) for x in lines if json.loads(x)["event"] == f"{group}.export"]
    assert [(e["outcome"], e["metadata"].get("undone")) for e in exports] == [("ok", None), ("error", True), ("ok", None)]
