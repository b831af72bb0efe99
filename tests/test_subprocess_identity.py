"""Real runs of the installed console script: what a shell script sees (exit codes, stdout, stderr),
and many processes writing one home at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

AGENTCTL = Path(sys.executable).parent / "agentctl"


@pytest.fixture
def env(home) -> dict:
    """The environment the autouse fixture set up (fake keyring, no developer settings) plus the home."""
    e = os.environ.copy()
    e["AGENTCTL_HOME"] = str(home)
    return e


def agentctl(*args: str, env: dict, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run([str(AGENTCTL), *args], env=env, input=input, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


def test_the_console_script_is_installed():
    assert AGENTCTL.is_file() and os.access(AGENTCTL, os.X_OK)


def test_version(env):
    from agentctl import __version__

    r = agentctl("--version", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"agentctl {__version__}\n", "")


def test_python_dash_m_agentctl(env):
    r = subprocess.run([sys.executable, "-m", "agentctl", "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("agentctl ")


def test_keygen_then_pubkey_round_trip(env, home):
    r = agentctl("keygen", "agent:code-reviewer:prod", "--role", "reviewer", env=env)
    assert r.returncode == 0, r.stderr
    did = r.stdout.strip()
    assert r.stdout == did + "\n" and did.startswith("did:key:z6Mk")
    assert "created agent:code-reviewer:prod" in r.stderr
    assert agentctl("pubkey", "agent:code-reviewer:prod", env=env).stdout == did + "\n"
    b64 = agentctl("pubkey", "agent:code-reviewer:prod", "--format", "b64", env=env).stdout.strip()
    jwk = json.loads(agentctl("pubkey", "agent:code-reviewer:prod", "--format", "jwk", env=env).stdout)
    assert jwk["x"] == b64
    doc = json.loads(agentctl("--json", "show", "agent:code-reviewer:prod", env=env).stdout)["principal"]
    assert doc["did"] == did and doc["kid"] == jwk["kid"] and doc["roles"] == ["reviewer"]
    # the same key, trusted on a second machine, and its rotation accepted there
    other = dict(env, AGENTCTL_HOME=str(home.parent / "other"))
    assert agentctl("import", "agent:code-reviewer:prod", did, env=other).returncode == 0
    statement = home.parent / "rotation.jwt"
    assert agentctl("rotate", "agent:code-reviewer:prod", "-o", str(statement), env=env).returncode == 0
    assert agentctl("import", "agent:code-reviewer:prod", "--rotation", str(statement), env=other).returncode == 0
    assert agentctl("pubkey", "agent:code-reviewer:prod", env=other).stdout == agentctl("pubkey", "agent:code-reviewer:prod", env=env).stdout


def test_exported_secret_on_a_fresh_runner(env, home):
    r = agentctl("keygen", "agent:ci", "--export-secret", "--no-store", env=env)
    assert r.returncode == 0
    secret = r.stdout.strip()
    assert r.stdout == secret + "\n" and secret.startswith("AGENTCTL-SECRET-KEY-1")
    assert secret not in r.stderr
    # the principal's home rotates it with the exported secret, and exports the new one
    statement = home.parent / "rotation.jwt"
    r = agentctl("rotate", "agent:ci", "--export-secret", "--no-store", "-o", str(statement), env=dict(env, AGENTCTL_SECRET_KEY=secret))
    assert r.returncode == 0, r.stderr
    new_secret = r.stdout.strip()
    assert new_secret.startswith("AGENTCTL-SECRET-KEY-1") and new_secret != secret
    assert statement.read_text().count(".") == 2


@pytest.mark.parametrize(
    "setup,args,code",
    [
        ((), ("list",), 0),
        ((), ("keygen", "Agent:X"), 2),
        ((), ("keygen", "agent:a", "--bogus"), 2),
        ((), ("frobnicate",), 2),
        ((), ("show", "agent:nope"), 2),
        ((), ("pubkey", "agent:nope"), 2),
        ((), ("pubkey", "agent:a", "--format", "pem"), 2),
        ((("keygen", "agent:a"),), ("keygen", "agent:a"), 2),
        ((("keygen", "agent:a"), ("revoke", "agent:a")), ("rotate", "agent:a"), 1),
        ((("keygen", "agent:a"), ("damage",)), ("show", "agent:a"), 3),
        ((("keygen", "agent:a"), ("damage",)), ("pubkey", "agent:a"), 3),
    ],
    ids=["ok", "bad name", "unknown flag", "unknown command", "unknown principal", "unknown principal (fast path)", "bad format (fast path)", "exists", "revoked", "damaged store", "damaged store (fast path)"],
)
@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_exit_codes(env, home, setup, args, code, json_mode):
    for step in setup:
        if step == ("damage",):
            f = home / "principals" / "agent+a.toml"
            f.write_text(f.read_text() + "\n[[[\n")
        else:
            assert agentctl(*step, env=env).returncode == 0
    r = agentctl(*(("--json",) if json_mode else ()), *args, env=env)
    assert r.returncode == code, r.stderr
    if code:
        lines = r.stderr.splitlines()
        assert lines[-1].startswith(("agentctl: error: ", "agentctl: hint: "))
        assert sum(l.startswith("agentctl: error: ") for l in lines) == 1
    if json_mode:
        doc = json.loads(r.stdout)
        assert doc["ok"] is (code == 0)
    elif code:
        assert r.stdout == ""


def test_an_unreadable_principal_is_an_error_not_a_traceback(env, home):
    home.mkdir(mode=0o700)
    (home / "principals").mkdir(mode=0o700)
    (home / "principals" / "agent+a.toml").mkdir()  # a directory where a file belongs
    r = agentctl("show", "agent:a", env=env)
    assert r.returncode == 3 and r.stderr.startswith("agentctl: error: ")


def test_eight_concurrent_keygens_leave_eight_valid_principals(env, home):
    names = [f"agent:worker-{i}" for i in range(8)]
    procs = [
        subprocess.Popen([str(AGENTCTL), "keygen", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in names
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for name, (code, out, err) in zip(names, results):
        assert code == 0, (name, err)
        assert out.startswith("did:key:z6Mk") and "Traceback" not in err
    for name, (_, out, _) in zip(names, results):
        r = agentctl("show", name, env=env)
        assert r.returncode == 0 and out.strip() in r.stdout
        assert agentctl("pubkey", name, env=env).stdout == out
    listed = json.loads(agentctl("list", "--json", env=env).stdout)["principals"]
    assert sorted(p["name"] for p in listed) == sorted(names)
    assert len(listed) == 8 and len({p["kid"] for p in listed}) == 8
    leftovers = [p for p in home.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_eight_concurrent_keygens_of_one_name_create_it_once(env, home):
    procs = [
        subprocess.Popen([str(AGENTCTL), "keygen", "agent:contested"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [2] * 7, results
    winner = next(out for code, out, _ in results if code == 0).strip()
    for code, _, err in results:
        if code:
            assert err.startswith("agentctl: error: principal 'agent:contested' already exists")
    assert agentctl("pubkey", "agent:contested", env=env).stdout.strip() == winner
    # exactly one secret was kept, the winner's
    doc = json.loads(agentctl("--json", "show", "agent:contested", env=env).stdout)["principal"]
    kr = json.loads(Path(env["AGENTCTL_TEST_KEYRING"]).read_text())["agentctl"]
    assert [k for k in kr if k.startswith("agent:contested/")] == [f"agent:contested/{doc['kid']}"]


def test_the_fast_path_does_not_import_typer(env):
    code = (
        "import sys\n"
        "from agentctl._cli.entry import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert 'typer' not in sys.modules and 'click' not in sys.modules, 'typer imported'\n"
        "sys.exit(rc)\n"
    )
    for args in (["--version"], ["pubkey", "agent:nope"], ["--json", "pubkey", "Agent:X"]):
        r = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)
        assert "typer imported" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.returncode in (0, 2)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize("args", [("--version",), ("pubkey", "agent:a"), ("show", "agent:a"), ("--json", "list")], ids=" ".join)
def test_a_reader_that_goes_away_is_not_an_error(env, args, unbuffered):
    assert agentctl("keygen", "agent:a", env=env).returncode == 0
    env = dict(env)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read, write = os.pipe()
    os.close(read)  # like `agentctl … | head -0`
    try:
        r = subprocess.run([str(AGENTCTL), *args], env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert r.stderr == ""
    assert r.returncode == 141
