"""Every command documents itself: help for each command and option, and --help that works.

The commands are found by walking the click command tree, so a command added later is covered
without touching this file (as sqlite-utils does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from agentctl._cli.app import app

try:
    from typer._click import Context  # Typer >= 0.25 vendors click
except ImportError:  # pragma: no cover - older Typer
    from click import Context

ROOT_COMMAND = get_command(app)


def _walk(command, ctx, path=()):
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, Context(sub, parent=ctx, info_name=name, **(sub.context_settings or {})), (*path, name))


COMMANDS = list(_walk(ROOT_COMMAND, Context(ROOT_COMMAND, info_name="agentctl", **(ROOT_COMMAND.context_settings or {}))))
GROUPS = [(path, cmd, ctx) for path, cmd, ctx in COMMANDS if hasattr(cmd, "list_commands")]
ids = [" ".join(path) or "agentctl" for path, _, _ in COMMANDS]
group_ids = [" ".join(path) or "agentctl" for path, _, _ in GROUPS]


def test_the_walk_finds_nested_commands():
    paths = [p for p, _, _ in COMMANDS]
    assert ("pubkey",) in paths and ("keygen",) in paths
    assert ("revocations", "export") in paths


@pytest.mark.parametrize("path, command, ctx", COMMANDS, ids=ids)
def test_command_has_help(path, command, ctx):
    assert (command.help or "").strip() or (command.short_help or "").strip(), f"'agentctl {' '.join(path)}' has no help text"


@pytest.mark.parametrize("path, command, ctx", COMMANDS, ids=ids)
def test_every_option_has_help(path, command, ctx):
    missing = [
        "/".join(p.opts)
        for p in command.get_params(ctx)
        if p.param_type_name == "option" and not getattr(p, "hidden", False) and not (getattr(p, "help", None) or "").strip()
    ]
    assert not missing, f"'agentctl {' '.join(path)}': options without help: {', '.join(missing)}"


def _listed_commands(help_text: str) -> list[str]:
    """The command names in the 'Commands:' section of a help page."""
    lines = help_text.splitlines()
    assert "Commands:" in lines, help_text
    out = []
    for line in lines[lines.index("Commands:") + 1 :]:
        if not line.strip():
            break
        if line.startswith("  ") and not line.startswith("   "):
            out.append(line.split()[0])
    return out


@pytest.mark.parametrize("path, command, ctx", GROUPS, ids=group_ids)
def test_group_help_lists_every_command(cli, path, command, ctx):
    r = cli(*path, "--help")
    assert r.code == 0, r.stderr
    expected = [n for n in command.list_commands(ctx) if not command.get_command(ctx, n).hidden]
    assert _listed_commands(r.stdout) == expected


def test_root_help_lists_every_command(cli):
    r = cli("--help")
    assert r.code == 0 and r.stderr == ""
    assert _listed_commands(r.stdout) == [n for n in ROOT_COMMAND.list_commands(None) if not ROOT_COMMAND.commands[n].hidden]
    for option in ("--home DIR", "--json", "--version", "-h, --help"):
        assert option in r.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("path, command, ctx", COMMANDS, ids=ids)
def test_command_help_exits_0(cli, path, command, ctx, flag):
    r = cli(*path, flag)
    assert r.code == 0, f"'agentctl {' '.join(path)} {flag}' exited {r.code}: {r.stderr}"
    assert r.stdout.startswith(f"Usage: {' '.join(('agentctl', *path))} ")
    assert r.stderr == ""


def test_no_arguments_is_help(cli):
    r = cli()
    assert "Usage: agentctl" in r.stdout + r.stderr


@pytest.mark.subprocess
def test_installed_script_help():
    script = Path(sys.executable).parent / "agentctl"
    if not script.exists():
        pytest.skip("the agentctl console script is not installed beside this interpreter")
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == ""
    assert _listed_commands(r.stdout) == list(ROOT_COMMAND.list_commands(None))


# --- examples, environment and summaries (agentctl/_cli/helptext.py) ----------------------------------

COMMON_ENV = ("AGENTCTL_HOME", "AGENTCTL_FORMAT", "NO_COLOR", "AGENTCTL_DEBUG")
GLOBALS = {"--json", "--home"}


def _section(help_text: str, title: str) -> list[str]:
    lines = help_text.splitlines()
    heads = [i for i, line in enumerate(lines) if line.strip() == title]
    assert heads, f"no '{title}' section:\n{help_text}"
    out = []
    for line in lines[heads[0] + 1:]:
        if not line.strip():
            break
        out.append(line.strip())
    return out


@pytest.mark.parametrize("path, command, ctx", COMMANDS, ids=ids)
def test_every_command_has_an_example_of_itself(cli, path, command, ctx):
    r = cli(*path, "--help")
    examples = _section(r.stdout, "Examples:")
    assert examples, f"'agentctl {' '.join(path)} --help' shows no example"
    for example in examples:
        if not (example.startswith("agentctl ") or " agentctl " in example):
            continue  # a continuation line
        words = example.split("agentctl ", 1)[1].split()
        i = 0
        while i < len(words) and words[i] in GLOBALS:
            i += 2 if words[i] == "--home" else 1
        assert tuple(words[i:i + len(path)]) == path or not path, f"example {example!r} is not of 'agentctl {' '.join(path)}'"


@pytest.mark.parametrize("path, command, ctx", COMMANDS, ids=ids)
def test_every_command_lists_the_environment_it_reads(cli, path, command, ctx):
    r = cli(*path, "--help")
    names = [line.split()[0] for line in _section(r.stdout, "Environment:")]
    for var in COMMON_ENV:
        assert var in names, f"'agentctl {' '.join(path)} --help' does not mention {var}"
    signs = path in {("sign",), ("delegate",), ("rotate",), ("revocations",), ("revocations", "export"), ("trust",),
                     ("trust", "export"), ("mcp", "sign"), ()}
    signs |= path in {("approval",), ("approval", "request"), ("approval", "approve")}
    assert ("AGENTCTL_SECRET_KEY" in names) == signs, path
    if path in {("keygen",), ("rotate",), ("sign",), ("delegate",), ("revoke",), ("audit", "checkpoint"), ("mcp", "sign")}:
        assert {"AGENTCTL_KEYSTORE", "AGENTCTL_PASSPHRASE"} <= set(names), path


@pytest.mark.parametrize("path, command, ctx", GROUPS, ids=group_ids)
def test_no_summary_is_cut_short_at_80_columns(cli, monkeypatch, path, command, ctx):
    monkeypatch.setenv("COLUMNS", "80")
    r = cli(*path, "--help")
    for line in _section(r.stdout, "Commands:"):
        assert not line.endswith("..."), f"a truncated summary in 'agentctl {' '.join(path)} --help': {line!r}"
        assert len(line) + 2 <= 80
