"""What a person sees: tables that fit the terminal without breaking a name or a time, and output that
never crashes on a stdout that cannot encode every character."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl._cli.entry import main
from agentctl._cli.output import Output

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch, columns: int, *args: str) -> tuple[int, list[str]]:
    monkeypatch.setenv("COLUMNS", str(columns))
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    code = main(list(args))
    return code, [ANSI.sub("", line) for line in tty.getvalue().splitlines()]


@pytest.fixture
def principals(cli, home):
    for name, role in (("agent:code-reviewer:prod", "reviewer"), ("user:alice", "maintainer"), ("agent:linter-for-the-web-repo", "linter")):
        r = cli("keygen", name, "--role", role, env={"AGENTCTL_KEYSTORE": "file"})
        assert r.code == 0, r.stderr
    return cli("--json", "list").json()["principals"]


def _cells_whole(lines: list[str], values: list[str]) -> None:
    for v in values:
        assert any(v in line for line in lines), f"{v!r} is broken or missing:\n" + "\n".join(lines)


@pytest.mark.parametrize("columns", [80, 60])
def test_list_fits_the_terminal_and_keeps_names_whole(principals, monkeypatch, columns):
    code, lines = on_terminal(monkeypatch, columns, "list")
    assert code == 0
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    _cells_whole(lines, [p["name"] for p in principals])


@pytest.mark.parametrize("columns", [80, 100])
def test_audit_fits_the_terminal_and_keeps_times_whole(principals, cli, monkeypatch, columns):
    events = cli("--json", "audit").json()["events"]
    code, lines = on_terminal(monkeypatch, columns, "audit")
    assert code == 0
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    times = [t for line in lines for t in TIME.findall(line)]
    assert len(times) == len(events)  # one whole timestamp per event, never split over lines
    _cells_whole(lines, [e["principal"] for e in events])
    if columns == 80:
        assert any("left out to fit" in line for line in lines)


def test_a_very_narrow_terminal_gets_one_block_per_record(principals, cli, monkeypatch):
    code, lines = on_terminal(monkeypatch, 40, "audit")
    assert code == 0
    events = cli("--json", "audit").json()["events"]
    assert sum(1 for line in lines if line.startswith("time ")) == len(events)
    _cells_whole(lines, [e["principal"] for e in events])
    assert len([t for line in lines for t in TIME.findall(line)]) == len(events)
    code, lines = on_terminal(monkeypatch, 40, "show", "agent:code-reviewer:prod")
    kid = principals[0]["kid"]
    _cells_whole(lines, [kid])


def test_a_pipe_gets_every_column(principals, cli):
    r = cli("list", env={"COLUMNS": "40"})
    head = r.stdout.splitlines()[0].split()
    assert head == ["NAME", "STATUS", "ORIGIN", "KEY", "ROLES", "AUTHORITY", "CREATED"]


def test_colour_only_without_no_color(principals, monkeypatch):
    _, lines = on_terminal(monkeypatch, 200, "list")
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    assert main(["list"]) == 0 and "\x1b[1m" in tty.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = Tty()
    monkeypatch.setattr(sys, "stdout", tty)
    assert main(["list"]) == 0 and "\x1b" not in tty.getvalue()


def test_table_unit_drops_the_optional_columns_in_order(monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    tty = Tty()
    Output(stdout=tty).table(("a", "b", "c"), [("x" * 10, "y" * 10, "z" * 10)], optional=("c", "b"))
    lines = ANSI.sub("", tty.getvalue()).splitlines()
    assert lines[0].split() == ["A", "B"] and "c left out" in lines[-1]


# --- a stdout that cannot encode everything ----------------------------------------------------


def _ascii_stream() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")


def test_ascii_stdout_gets_stand_ins_not_a_crash(principals, cli, monkeypatch):
    out, err = _ascii_stream(), _ascii_stream()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["list"]) == 0
    out.flush()
    text = out.buffer.getvalue().decode("ascii")
    assert "..." in text and "agent:code-reviewer:prod" in text  # the key id's ellipsis became '...'


def test_json_on_an_ascii_stdout_is_the_same_document(cli, home, monkeypatch):
    assert cli("keygen", "agent:bot").code == 0
    assert cli("revoke", "agent:bot", "--reason", "d\u00e9command\u00e9 \u2014 \u2603").code == 0
    out = _ascii_stream()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["--json", "show", "agent:bot"]) == 0
    out.flush()
    doc = json.loads(out.buffer.getvalue().decode("ascii"))
    assert doc["principal"]["revoked"]["reason"] == "d\u00e9command\u00e9 \u2014 \u2603"


@pytest.mark.subprocess
@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}])
def test_the_demo_runs_on_an_ascii_terminal(tmp_path, env):
    script = Path(sys.executable).parent / "agentctl"
    if not script.exists():
        pytest.skip("the agentctl console script is not installed beside this interpreter")
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LANG", "LC_ALL", "LC_CTYPE")}
    full.update(env, HOME=str(tmp_path))
    r = subprocess.run([str(script), "demo"], capture_output=True, env=full, timeout=120)
    assert r.returncode == 0, r.stderr.decode("ascii", "replace")
    out = r.stdout.decode("ascii")  # nothing but ASCII reached it
    assert "UnicodeEncodeError" not in out + r.stderr.decode("ascii", "replace")
    assert "> Every person and agent" in out  # the step marker's stand-in
