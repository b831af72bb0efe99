"""The hot commands start light: ``agentctl --version`` and ``agentctl pubkey NAME`` take the fast path
and never import Typer, rich, keyring or sqlite3, nor platformdirs when the home is named.

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
NAME = "agent:code-reviewer:prod"

PROBE = """
import json, os, sys
from agentctl._cli.entry import main
rc = main(sys.argv[1:])
with open(os.environ["AGENTCTL_TEST_PROBE"], "w") as f:
    json.dump({"rc": rc, "modules": sorted(sys.modules)}, f)
"""


def probe(tmp_path: Path, args: list[str], env: dict[str, str | None] | None = None):
    """Run ``main(args)`` in a fresh interpreter: (exit code, stdout, stderr, imported top-level packages)."""
    out = tmp_path / "probe.json"
    full = dict(os.environ, AGENTCTL_TEST_PROBE=str(out))
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=full, timeout=60)
    assert r.returncode == 0 and out.exists(), r.stderr
    doc = json.loads(out.read_text())
    packages = {m.split(".")[0] for m in doc["modules"]}
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
    assert imported(packages, HEAVY + HOME_LOOKUP) == []


@pytest.mark.parametrize("extra", [[], ["--format", "jwk"], ["--format=jwks"], ["--json"]])
def test_pubkey_with_home_variable(tmp_path, principal, extra):
    code, out, err, packages = probe(tmp_path, ["pubkey", NAME, *extra])  # AGENTCTL_HOME is set
    assert (code, err) == (0, "")
    assert out.strip()
    assert imported(packages, HEAVY + HOME_LOOKUP) == []


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
