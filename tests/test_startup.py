"""The hot commands start light: ``agentctl --version`` and ``agentctl pubkey NAME`` take the fast path
and never import Typer, rich, keyring or sqlite3, nor platformdirs when the home is named. A single
``agentctl verify`` (audit on) takes it too: no Typer, rich, keyring or platformdirs, no
:mod:`dataclasses` (nor the inspect/ast it loads), no OpenSSL (``_hashlib``: the built-in SHA-256 does
its few digests), none of the minting-only modules; ``--batch`` keeps OpenSSL.

Each case runs ``main([...])`` in a fresh interpreter and reads ``sys.modules`` afterwards. Nothing
here measures time (bench/startup.py does, and prints it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("typer", "click", "rich", "keyring", "sqlite3", "_sqlite3")
HOME_LOOKUP = ("platformdirs",)
# reading config.toml and principal files: agentctl.toml_subset reads what agentctl writes without tomllib
# (nor the string and datetime it loads); rfc3339 formats without datetime
TOML = ("tomllib", "string", "datetime")
# what a cold single verify has no use for: dataclasses' own imports, OpenSSL's libcrypto, minting and I/O
# it never does (frozen.dataclass, the built-in SHA-256 and lazy imports keep them out)
VERIFY_UNUSED = ("dataclasses", "inspect", "ast", "dis", "tokenize", "_hashlib", "secrets", "hmac", "random", "socket",
                 "logging", "email", "subprocess", "shutil", "tempfile", "uuid", "textwrap", "importlib_metadata",
                 "tomllib", "string")  # datetime: sqlite3 imports it when the audit log is open
NAME = "agent:code-reviewer:prod"

PROBE = """
import json, os, sys
from agentctl._cli.entry import main
rc = main(sys.argv[1:])
with open(os.environ["AGENTCTL_TEST_PROBE"], "w") as f:
    json.dump({"rc": rc, "modules": sorted(m for m, v in sys.modules.items() if v is not None)}, f)
"""


def probe(tmp_path: Path, args: list[str], env: dict[str, str | None] | None = None, stdin: str = ""):
    """Run ``main(args)`` in a fresh interpreter: (exit code, stdout, stderr, imported top-level packages)."""
    out = tmp_path / "probe.json"
    full = dict(os.environ, AGENTCTL_TEST_PROBE=str(out))
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    r = subprocess.run([sys.executable, "-c", PROBE, *args], input=stdin, capture_output=True, text=True, env=full, timeout=60)
    assert r.returncode == 0 and out.exists(), r.stderr
    doc = json.loads(out.read_text())
    packages = {m.split(".")[0] for m in doc["modules"]}  # loaded ones: a name blocked with None is absent
    return doc["rc"], r.stdout, r.stderr, packages


def imported(packages: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in packages)


@pytest.fixture
def principal(cli, home) -> Path:
    """A home holding NAME (auditing off: start-up has nothing to do with it). AGENTCTL_HOME is set."""
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("audit = false\n")
    r = cli("keygen", NAME, env={"AGENTCTL_KEYSTORE": "file"})
    assert r.code == 0, r.stderr
    return home


def test_version(tmp_path):
    code, out, err, packages = probe(tmp_path, ["--version"], env={"AGENTCTL_HOME": None})
    assert (code, err) == (0, "")
    assert out.startswith("agentctl ")
    assert imported(packages, HEAVY + HOME_LOOKUP + ("nacl",)) == []


def test_pubkey_with_home_option(tmp_path, principal):
    code, out, err, packages = probe(tmp_path, ["--home", str(principal), "pubkey", NAME], env={"AGENTCTL_HOME": None})
    assert (code, err) == (0, "")
    assert out.startswith("did:key:z6Mk")
    assert imported(packages, HEAVY + HOME_LOOKUP + TOML) == []


@pytest.mark.parametrize("extra", [[], ["--format", "jwk"], ["--format=jwks"], ["--json"]])
def test_pubkey_with_home_variable(tmp_path, principal, extra):
    code, out, err, packages = probe(tmp_path, ["pubkey", NAME, *extra])  # AGENTCTL_HOME is set
    assert (code, err) == (0, "")
    assert out.strip()
    assert imported(packages, HEAVY + HOME_LOOKUP + TOML) == []


def test_pubkey_of_an_unknown_name_fails_light_too(tmp_path, principal):
    code, out, err, packages = probe(tmp_path, ["--json", "--home", str(principal), "pubkey", "agent:nobody"], env={"AGENTCTL_HOME": None})
    assert code != 0 and err.startswith("agentctl: ")
    assert json.loads(out)["ok"] is False
    assert imported(packages, HEAVY + HOME_LOOKUP) == []


def test_pubkey_without_a_home_looks_it_up_but_stays_light(tmp_path):
    env = {"AGENTCTL_HOME": None, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    code, _, err, packages = probe(tmp_path, ["pubkey", NAME], env=env)
    assert code != 0 and err.startswith("agentctl: ")
    assert imported(packages, HEAVY) == []


def test_the_probe_sees_typer_when_it_is_imported(tmp_path):
    # the fast path does not take `pubkey` without a name: Typer reports the usage error
    code, _, err, packages = probe(tmp_path, ["pubkey"], env={"AGENTCTL_HOME": None})
    assert code == 2 and "agentctl: error:" in err
    assert "typer" in packages


@pytest.mark.subprocess
def test_installed_script_importtime(tmp_path, principal):
    """The console script itself, under ``-X importtime``: the same imports stay out."""
    script = Path(sys.executable).parent / "agentctl"
    if not script.exists():
        pytest.skip("the agentctl console script is not installed beside this interpreter")
    env = {k: v for k, v in os.environ.items() if k != "AGENTCTL_HOME"}
    for args in (["--version"], ["--home", str(principal), "pubkey", NAME]):
        r = subprocess.run([sys.executable, "-X", "importtime", str(script), *args], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in r.stderr.splitlines() if line.startswith("import time:") and "|" in line}
        assert "agentctl" in modules
        assert imported(modules, HEAVY + HOME_LOOKUP) == [], args


@pytest.fixture
def grant(cli, home, tmp_path) -> Path:
    """A 1-hop grant from user:u to agent:a in a home with auditing on (the default); AGENTCTL_HOME is set."""
    for name in ("user:u", "agent:a"):
        assert cli("keygen", name, env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    path = tmp_path / "grant.jwt"
    r = cli("delegate", "--from", "user:u", "--to", "agent:a", "--scope", "deploy.staging:api/*", "-o", str(path),
            env={"AGENTCTL_KEYSTORE": "file"})
    assert r.code == 0, r.stderr
    return path


VERIFY = ["--action", "deploy.staging", "--resource", "api/web"]


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_verify_takes_the_light_path_and_records(tmp_path, home, grant, extra):
    code, out, err, packages = probe(tmp_path, ["--home", str(home), "verify", str(grant), *VERIFY, *extra],
                                     env={"AGENTCTL_HOME": None})
    assert (code, err) == (0, "")
    assert out.startswith("ok: grant to agent:a") or json.loads(out)["ok"] is True
    assert imported(packages, ("typer", "click", "rich", "keyring") + HOME_LOOKUP + VERIFY_UNUSED) == []
    assert "sqlite3" in packages  # audit on: the verdict was recorded
    import sqlite3

    with sqlite3.connect(home / "audit.db") as db:  # the event is there, committed
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] >= 1


def test_verify_with_auditing_off_reads_its_files_without_tomllib(tmp_path, home, grant):
    """config.toml (hand-edited here) and the principal files: the subset reader takes them. (datetime is
    loaded by sqlite3, which the revocation store imports, so it is not asserted here: pubkey asserts it.)"""
    (home / "config.toml").write_text((home / "config.toml").read_text() + "audit = false\n")
    code, out, err, packages = probe(tmp_path, ["--home", str(home), "verify", str(grant), *VERIFY], env={"AGENTCTL_HOME": None})
    assert (code, err) == (0, "")
    assert out.startswith("ok: grant to agent:a") and "until 20" in out  # the expiry, formatted without datetime
    assert imported(packages, ("tomllib", "string") + VERIFY_UNUSED) == []


def test_a_config_outside_the_subset_still_reads_through_tomllib(tmp_path, home, grant):
    """A hand-written config.toml the subset reader does not take (a literal string here) is read by
    tomllib: the same settings, the same verdict."""
    (home / "config.toml").write_text((home / "config.toml").read_text() + "keystore = 'file'  # literal string\n")
    code, out, err, packages = probe(tmp_path, ["--home", str(home), "verify", str(grant), *VERIFY], env={"AGENTCTL_HOME": None})
    assert (code, err) == (0, "")
    assert "tomllib" in packages


def test_a_denied_verify_stays_light_and_says_why(tmp_path, home, grant):
    code, out, err, packages = probe(tmp_path, ["--home", str(home), "verify", str(grant), "--action", "deploy.prod",
                                                "--resource", "api/web"], env={"AGENTCTL_HOME": None})
    assert code == 1 and "deploy.prod" in out + err
    assert imported(packages, ("typer", "click", "rich", "keyring") + HOME_LOOKUP + VERIFY_UNUSED) == []


def test_a_tampered_grant_is_refused_on_the_light_path(tmp_path, home, grant):
    token = grant.read_text().strip()
    head, body, sig = token.split(".")
    bad = tmp_path / "bad.jwt"
    bad.write_text(f"{head}.{body}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}\n")
    code, out, err, packages = probe(tmp_path, ["--home", str(home), "verify", str(bad), *VERIFY], env={"AGENTCTL_HOME": None})
    assert code == 1 and "signature" in (out + err).lower()
    assert "_hashlib" not in packages


def test_verify_batch_keeps_openssl(tmp_path, home, grant):
    """The built-in hashes are for one verify; --batch hashes many lines and keeps OpenSSL's."""
    import hashlib

    if getattr(hashlib.sha256, "__name__", "") != "openssl_sha256":
        pytest.skip("this Python's hashlib has no OpenSSL")
    code, out, err, packages = probe(tmp_path, ["--home", str(home), "verify", "--batch", *VERIFY], env={"AGENTCTL_HOME": None},
                                     stdin=grant.read_text().strip() + "\n")
    assert code == 0 and json.loads(out.splitlines()[0])["ok"] is True, err
    assert "_hashlib" in packages
