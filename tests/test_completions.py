"""The committed completion scripts: current, deterministic, valid, and completing for real.

bash always runs; zsh and fish run where they are installed and skip otherwise.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tools") not in sys.path:  # the generator is a build tool, not part of the package
    sys.path.insert(0, str(ROOT / "tools"))

import completions as comp  # noqa: E402  (tools/completions.py)

COMPLETIONS = ROOT / "completions"
PACKAGED = ROOT / "agentctl" / "completions"
BASH_EXE = shutil.which("bash") or "bash"
BIN = Path(sys.executable).parent  # the venv's bin: the installed console script lives here
REGENERATE = "run 'python tools/completions.py --write' and commit completions/ and agentctl/completions/"


# --- the committed files ------------------------------------------------------------------------


@pytest.mark.parametrize("directory", [COMPLETIONS, PACKAGED], ids=["completions", "agentctl/completions"])
@pytest.mark.parametrize("name", sorted(comp.SHELLS))
def test_committed_script_is_current(name, directory):
    expected = comp.render()[name]
    committed = directory / name
    where = committed.relative_to(ROOT)
    assert committed.exists(), f"{where} is missing: {REGENERATE}"
    assert committed.read_text("utf-8") == expected, f"{where} is stale: {REGENERATE}"


def test_the_generator_is_not_shipped():
    assert not (ROOT / "agentctl" / "_cli" / "completions.py").exists()
    import importlib.util

    assert importlib.util.find_spec("agentctl._cli.completions") is None


# --- agentctl completion SHELL ---------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_the_packaged_script(cli, shell):
    r = cli("completion", shell)
    assert r.code == 0 and r.stderr == ""
    assert r.stdout == (PACKAGED / f"agentctl.{shell}").read_text("utf-8")
    j = cli("--json", "completion", shell)
    assert j.code == 0 and j.json() == {"ok": True, "shell": shell, "script": r.stdout}


def test_completion_command_needs_no_typer():
    code = ("import sys; from agentctl._cli.entry import main; code = main(['completion', 'bash']);"
            "sys.stderr.write(' '.join(m for m in ('typer', 'click', 'rich') if m in sys.modules)); sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("# bash completion for agentctl")


@pytest.mark.parametrize("args", [["completion", "ksh"], ["completion"], ["completion", "bash", "zsh"]])
def test_completion_command_refuses_other_shells(cli, args):
    r = cli(*args)
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.startswith("agentctl: error: ")
    assert "Traceback" not in r.stderr


def test_bash_completes_the_completion_shells():
    assert bash_complete(BASH, ["agentctl", "completion", ""]) == ["bash", "zsh", "fish"]


@pytest.mark.subprocess
def test_the_wheel_ships_the_scripts(tmp_path):
    """A non-editable install (a wheel) holds the scripts as package data, and not the generator."""
    import shutil as sh
    import zipfile

    src = tmp_path / "src"
    sh.copytree(ROOT / "agentctl", src / "agentctl", ignore=sh.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        sh.copy(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "No matching distribution" in r.stderr:
        pytest.skip("no build backend available to pip here (offline)")
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("agentctl-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for shell in ("bash", "zsh", "fish"):
            assert z.read(f"agentctl/completions/agentctl.{shell}").decode("utf-8") == (COMPLETIONS / f"agentctl.{shell}").read_text("utf-8")
    assert not [n for n in names if n.startswith("tools/") or n.endswith("_cli/completions.py")]


def test_check_names_the_stale_file(tmp_path, capsys):
    assert comp.main(["--write", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(comp.SHELLS)
    assert comp.main(["--check", "--write", str(tmp_path)]) == 0
    capsys.readouterr()

    (tmp_path / "agentctl.zsh").write_text("# edited by hand\n")
    assert comp.main(["--check", "--write", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "agentctl.zsh is stale" in err
    assert "agentctl.bash" not in err and "agentctl.fish" not in err

    (tmp_path / "agentctl.fish").unlink()
    assert comp.main(["--check", "--write", str(tmp_path)]) == 1
    assert "agentctl.fish is stale" in capsys.readouterr().err


def test_generation_is_deterministic():
    # help option names come from a set: two interpreters with different hash seeds must agree
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); from completions import render; sys.stdout.write(''.join(render().values()))"
    outs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1
    assert outs.pop() == "".join(comp.render().values())


def test_every_command_is_in_every_script():
    tree = comp.command_tree()
    scripts = comp.render(tree)
    for node in tree.walk():
        for name in node.path:
            for script in scripts.values():
                assert name in script
        for opt in node.options:
            for name in opt.names:
                assert name in scripts["agentctl.bash"]


# --- what a metavar completes to ----------------------------------------------------------------


@pytest.mark.parametrize(
    "metavar, kind, choices",
    [
        ("did|jwk|jwks|b64", "text", ("did", "jwk", "jwks", "b64")),
        ("allow|deny|ok|error", "text", ("allow", "deny", "ok", "error")),
        ("FILE", "file", ()),
        ("DIR", "dir", ()),
        ("NAME", "name", ()),
        ("[NAME]", "name", ()),
        ("NAME...", "name", ()),
        ("TOKEN|FILE|-", "file", ()),
        ("FILE|-", "file", ()),
        ("KEY=VALUE", "text", ()),
        ("[KEY]", "file", ()),
        ("GRANT", "file", ()),
        ("KID", "text", ()),
        ("DURATION", "text", ()),
    ],
)
def test_metavar(metavar, kind, choices):
    v = comp.parse_metavar(metavar)
    assert (v.kind, v.choices) == (kind, choices)


def test_global_options_and_choices_in_the_tree():
    tree = comp.command_tree()
    root = {n: o for o in tree.options for n in o.names}
    assert root["--home"].value.kind == "dir"
    assert root["--json"].value is None and root["--version"].value is None
    assert root["--help"].exits and root["-h"] is root["--help"]
    pubkey = next(n for n in tree.commands if n.name == "pubkey")
    fmt = next(o for o in pubkey.options if "--format" in o.names)
    assert fmt.value.choices == ("did", "jwk", "jwks", "b64")
    assert pubkey.args[0].value.kind == "name"
    keygen = next(n for n in tree.commands if n.name == "keygen")
    assert keygen.args[0].value.kind == "text"  # a new name: nothing to offer


# --- syntax -------------------------------------------------------------------------------------


def test_bash_syntax():
    subprocess.run(["bash", "-n", str(COMPLETIONS / "agentctl.bash")], check=True)


@pytest.mark.parametrize("shell, name", [("zsh", "agentctl.zsh"), ("fish", "agentctl.fish")])
def test_other_shells_syntax(shell, name):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    subprocess.run([shell, "-n", str(COMPLETIONS / name)], check=True)


# --- real bash completion -----------------------------------------------------------------------


def bash_complete(script: Path, words: list[str], *, line: bool = False, path: str | None = None) -> list[str]:
    """Source ``script`` and run its completion function as bash would, returning COMPREPLY.

    ``words`` ends with the word being completed (``""`` after a space). With ``line``, COMP_LINE and
    COMP_POINT are set too and the words split at ':' and '=' as bash splits them.
    """
    cword = len(words) - 1
    setup = [f"source {_q(str(script))}"]
    if line:
        text = " ".join(words)
        split = [p for w in words[:-1] for p in re.findall(r"[^:=]+|[:=]+", w)]
        split += re.findall(r"[^:=]+|[:=]+", words[-1]) or [""]
        setup += [f"COMP_LINE={_q(text)}", f"COMP_POINT={len(text)}"]
        words, cword = split, len(split) - 1
    setup += ["COMP_WORDS=(" + " ".join(_q(w) for w in words) + ")", f"COMP_CWORD={cword}", "_agentctl", "rc=$?", 'printf "%s\\n" "${COMPREPLY[@]}"', "exit $rc"]
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    r = subprocess.run([BASH_EXE, "-c", "\n".join(setup)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return [w for w in r.stdout.split("\n") if w]


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


BASH = COMPLETIONS / "agentctl.bash"


def test_bash_completes_a_command():
    assert bash_complete(BASH, ["agentctl", "pub"]) == ["pubkey"]


def test_bash_completes_format_values():
    assert bash_complete(BASH, ["agentctl", "pubkey", "x", "--format", ""]) == ["did", "jwk", "jwks", "b64"]


def test_bash_completes_with_the_line_as_bash_splits_it():
    assert bash_complete(BASH, ["agentctl", "pubkey", "x", "--format="], line=True) == ["did", "jwk", "jwks", "b64"]
    # readline replaces only what follows the '=': the replies say just that
    assert bash_complete(BASH, ["agentctl", "pubkey", "x", "--format=jw"], line=True) == ["jwk", "jwks"]
    assert bash_complete(BASH, ["agentctl", "--json", "pu"], line=True) == ["pubkey"]


def test_bash_completes_commands_options_and_files(tmp_path):
    top = bash_complete(BASH, ["agentctl", ""])
    assert [n.name for n in comp.command_tree().commands] == top
    assert bash_complete(BASH, ["agentctl", "-"]) == ["--home", "--json", "--version", "-h", "--help"]
    assert "--format" in bash_complete(BASH, ["agentctl", "pubkey", "--"])
    (tmp_path / "rotation-statement.jwt").write_text("x")
    (tmp_path / "subdir").mkdir()
    assert bash_complete(BASH, ["agentctl", "rotate", "x", "-o", str(tmp_path / "rot")]) == [str(tmp_path / "rotation-statement.jwt")]
    assert bash_complete(BASH, ["agentctl", "--home", f"{tmp_path}/"]) == [str(tmp_path / "subdir")]


@pytest.mark.parametrize("words", [
    ["agentctl", "sign", "--grant"],
    ["agentctl", "delegate", "--parent"],
    ["agentctl", "import", "agent:x"],
])
def test_bash_completes_grants_and_keys_as_files(tmp_path, words):
    (tmp_path / "grant-to-linter.jwt").write_text("x")
    assert bash_complete(BASH, [*words, str(tmp_path / "grant-")]) == [str(tmp_path / "grant-to-linter.jwt")]


def _keygen(cli, home: Path, *names: str) -> None:
    """Principals in ``home``; auditing is off there, as completion has nothing to do with it."""
    home.mkdir(mode=0o700, exist_ok=True)
    (home / "config.toml").write_text("audit = false\n")
    for n in names:
        r = cli("keygen", n, env={"AGENTCTL_KEYSTORE": "file"})
        assert r.code == 0, r.stderr


needs_console_script = pytest.mark.skipif(not (BIN / "agentctl").exists(), reason="the agentctl console script is not installed beside this interpreter")


@pytest.mark.subprocess
@needs_console_script
def test_bash_completes_principal_names(cli, home, tmp_path):
    _keygen(cli, home, "agent:code-reviewer:prod", "user:alice")
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    assert bash_complete(BASH, ["agentctl", "show", ""], path=path) == ["agent:code-reviewer:prod", "user:alice"]
    # bash splits agent:co at the ':', and readline replaces only what follows it
    assert bash_complete(BASH, ["agentctl", "pubkey", "agent:co"], line=True, path=path) == ["code-reviewer:prod"]
    # --home on the command line wins over AGENTCTL_HOME
    other = tmp_path / "other"
    assert bash_complete(BASH, ["agentctl", "--home", str(other), "show", ""], path=path) == []
    assert bash_complete(BASH, ["agentctl", f"--home={home}", "show", "u"], line=True, path=path) == ["user:alice"]


def test_bash_stays_quiet_when_agentctl_fails(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "agentctl").write_text('#!/bin/sh\necho \'      "name": "user:nobody",\' >&2\necho garbage\nexit 3\n')
    (fake / "agentctl").chmod(0o755)
    base = os.environ.get("PATH", "")
    assert bash_complete(BASH, ["agentctl", "show", ""], path=os.pathsep.join([str(fake), base])) == []
    # and when there is no agentctl at all
    assert bash_complete(BASH, ["agentctl", "show", ""], path=str(tmp_path / "empty")) == []


# --- nested groups: generated from a made-up application ------------------------------------------


class Outcome(str, enum.Enum):
    allow = "allow"
    deny = "deny"


def nested_app():
    import typer

    app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})
    audit = typer.Typer(help="The audit log.")
    checkpoints = typer.Typer(help="Checkpoints.")

    @app.callback()
    def root(home: Optional[str] = typer.Option(None, "--home", metavar="DIR", help="Home.")) -> None:
        """Root."""

    @audit.callback(invoke_without_command=True)
    def audit_root(outcome: Optional[str] = typer.Option(None, "--outcome", metavar="allow|deny|ok|error", help="Outcome.")) -> None:
        """Query the audit log."""

    @audit.command()
    def verify(checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="FILE", help="A checkpoint.")) -> None:
        """Verify the log."""

    @checkpoints.command("show")
    def show_(kind: Outcome = typer.Option(Outcome.allow, "--kind", help="Kind."), names: List[str] = typer.Argument(..., metavar="NAME...")) -> None:
        """Show checkpoints."""

    audit.add_typer(checkpoints, name="checkpoints")
    app.add_typer(audit, name="audit")

    @app.command()
    def version() -> None:
        """Version."""

    return app


def test_nested_groups(tmp_path):
    from typer.main import get_command

    tree = comp.command_tree(get_command(nested_app()))
    assert [n.path for n in tree.walk()] == [(), ("version",), ("audit",), ("audit", "verify"), ("audit", "checkpoints"), ("audit", "checkpoints", "show")]
    files = comp.render(tree)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    script = tmp_path / "agentctl.bash"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert bash_complete(script, ["agentctl", ""]) == ["version", "audit"]
    assert bash_complete(script, ["agentctl", "audit", ""]) == ["verify", "checkpoints"]
    assert bash_complete(script, ["agentctl", "--home", "/x", "audit", "--outcome", "d"]) == ["deny"]
    assert bash_complete(script, ["agentctl", "audit", "--outcome", "ok", "v"]) == ["verify"]
    assert bash_complete(script, ["agentctl", "audit", "verify", "-"]) == ["--checkpoint", "-h", "--help"]
    assert bash_complete(script, ["agentctl", "audit", "checkpoints", "show", "--kind", ""]) == ["allow", "deny"]
    for shell in ("zsh", "fish"):
        if shutil.which(shell):
            subprocess.run([shell, "-n", str(tmp_path / f"agentctl.{shell}")], check=True)
    if shutil.which("fish"):
        assert fish_complete(tmp_path / "agentctl.fish", "agentctl audit checkpoints ") == ["show"]
        assert sorted(fish_complete(tmp_path / "agentctl.fish", "agentctl audit --outcome ")) == ["allow", "deny", "error", "ok"]


# --- real zsh and fish completion, where those shells exist -----------------------------------------


def fish_complete(script: Path, line: str, path: str | None = None) -> list[str]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    r = subprocess.run(["fish", "--no-config", "-c", f"source {_q(str(script))}; complete -C{_q(line)}"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [w.split("\t")[0] for w in r.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes(cli, home):
    script = COMPLETIONS / "agentctl.fish"
    assert fish_complete(script, "agentctl pub") == ["pubkey"]
    assert sorted(fish_complete(script, "agentctl pubkey x --format ")) == ["b64", "did", "jwk", "jwks"]
    assert fish_complete(script, "agentctl revocations ") == ["export", "import"]
    if (BIN / "agentctl").exists():
        _keygen(cli, home, "user:alice")
        path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
        assert fish_complete(script, "agentctl show ", path) == ["user:alice"]


# Run zsh's completion system in a pseudo-terminal; compadd prints each match it is given as <<match>>.
ZSH_CAPTURE = r"""
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "source ${(q)2}"
local line
repeat 100; do
  zpty -r z line || exit 4
  [[ $line == *'<<ready>>'* ]] && break
done
zpty -w z "$1"$'\t'
while zpty -r z line; do
  print -r -- $line
  [[ $line == *'<<done>>'* ]] && break
done
"""

ZSH_SETUP = r"""
PROMPT=
fpath=("$AGENTCTL_TEST_FPATH" $fpath)
autoload -U compinit
compinit -u -D
compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
    builtin compadd "$@"
    return
  fi
  local -a hits
  local h
  builtin compadd -A hits "$@"
  for h in $hits; do print -r -- "<""<$IPREFIX$h>"">"; done
  builtin compadd "$@"
}
bindkey '^I' complete-word
done-line() { print -r -- '<''<done>''>' }
comppostfuncs=(done-line exit)
print -r -- '<''<ready>''>'
"""


def zsh_complete(line: str, tmp_path: Path, path: str | None = None) -> list[str]:
    fpath = tmp_path / "zfunc"
    fpath.mkdir(exist_ok=True)
    shutil.copy(COMPLETIONS / "agentctl.zsh", fpath / "_agentctl")
    (tmp_path / "capture.zsh").write_text(ZSH_CAPTURE)
    (tmp_path / "setup.zsh").write_text(ZSH_SETUP)
    env = dict(os.environ, AGENTCTL_TEST_FPATH=str(fpath))
    if path is not None:
        env["PATH"] = path
    r = subprocess.run(["zsh", "-f", str(tmp_path / "capture.zsh"), line, str(tmp_path / "setup.zsh")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = []
    for chunk in r.stdout.split("<<")[1:]:
        hit = chunk.split(">>")[0]
        if hit != "done" and hit not in out:
            out.append(hit)
    return out


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes(cli, home, tmp_path):
    assert zsh_complete("agentctl pub", tmp_path) == ["pubkey"]
    assert zsh_complete("agentctl pubkey x --format ", tmp_path) == ["did", "jwk", "jwks", "b64"]
    assert zsh_complete("agentctl revocations ", tmp_path) == ["export", "import"]
    if (BIN / "agentctl").exists():
        _keygen(cli, home, "user:alice")
        path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
        assert zsh_complete(f"agentctl --home {home} show ", tmp_path, path) == ["user:alice"]
