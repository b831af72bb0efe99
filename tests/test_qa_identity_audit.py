"""QA regressions for keygen, list, show, pubkey, import, rotate, revoke, audit, demo and global options."""

from __future__ import annotations

import io
import json
import os

import pytest

from conftest import snapshot


@pytest.fixture(autouse=True)
def file_keystore(monkeypatch):
    monkeypatch.setenv("AGENTCTL_KEYSTORE", "file")


def _one_error(r, code: int) -> None:
    assert r.code == code, (r.code, r.stderr)
    lines = r.stderr.splitlines()
    assert lines and lines[0].startswith("agentctl: error: "), r.stderr
    assert all(line.startswith("agentctl: hint: ") for line in lines[1:]), r.stderr
    assert "Traceback" not in r.stderr


# --- the home ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", [["list"], ["show", "agent:a"], ["pubkey", "agent:a"], ["audit"], ["audit", "verify"],
                                 ["audit", "export"], ["audit", "prove", "1"], ["keygen", "agent:a"]])
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_home_that_is_a_file_is_one_usage_error(cli, tmp_path, cmd, where):
    f = tmp_path / "plain"
    f.write_text("x")
    home = f if where == "file" else f / "sub" / "home"
    r = cli("--json", "--home", str(home), *cmd)
    _one_error(r, 2)
    assert "not a directory" in r.stderr or "is a file" in r.stderr
    assert json.loads(r.stdout)["exit_code"] == 2
    assert f.read_text() == "x"


def test_home_from_env_that_is_a_file(cli, tmp_path):
    f = tmp_path / "plain"
    f.write_text("x")
    _one_error(cli("list", env={"AGENTCTL_HOME": str(f)}), 2)


def test_empty_home_option_is_not_the_default_home(cli, home):
    r = cli("--home", "", "list")
    _one_error(r, 2)
    assert "--home" in r.stderr


def test_deep_missing_home_is_not_created_by_a_reader(cli, tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    assert cli("--home", str(deep), "list").code == 0
    assert cli("--home", str(deep), "audit").code == 0
    assert not (tmp_path / "a").exists()


# --- audit ------------------------------------------------------------------------------------


def test_huge_limit_and_seq_are_not_internal_errors(cli, home):
    assert cli("keygen", "agent:a").code == 0
    r = cli("audit", "--limit", "9" * 25)
    assert r.code == 0 and "Traceback" not in r.stderr and "internal" not in r.stderr
    r = cli("--json", "audit", "prove", "9" * 25)
    _one_error(r, 2)
    assert "internal" not in r.stderr and json.loads(r.stdout)["ok"] is False


@pytest.mark.parametrize("target", ["missing/cp.txt", "dir", "plain/cp.txt"])
def test_failed_checkpoint_output_leaves_no_checkpoint(cli, home, tmp_path, target):
    assert cli("keygen", "agent:a").code == 0
    (tmp_path / "dir").mkdir()
    (tmp_path / "plain").write_text("x")
    before = snapshot(home)
    r = cli("audit", "checkpoint", "-o", str(tmp_path / target))
    _one_error(r, 2)
    assert snapshot(home) == before  # no checkpoint signed, no event appended, no host key made


def test_empty_kept_checkpoint_says_so(cli, home, tmp_path):
    assert cli("keygen", "agent:a").code == 0
    empty = tmp_path / "empty"
    empty.write_text("")
    r = cli("audit", "verify", "--checkpoint", str(empty))
    _one_error(r, 2)
    assert "empty" in r.stderr


# --- import -----------------------------------------------------------------------------------


def test_import_of_a_directory_names_it(cli, home, tmp_path):
    r = cli("import", "agent:x", str(tmp_path))
    _one_error(r, 2)
    assert "directory" in r.stderr


def test_import_of_an_empty_file_says_empty(cli, home, tmp_path):
    f = tmp_path / "key.jwk"
    f.write_text("")
    r = cli("import", "agent:x", str(f))
    _one_error(r, 2)
    assert "empty" in r.stderr


def test_one_key_cannot_be_two_principals(cli, home):
    assert cli("keygen", "agent:a").code == 0
    did = cli("pubkey", "agent:a").stdout.strip()
    before = snapshot(home)
    r = cli("import", "agent:copy", did)
    _one_error(r, 2)
    assert "agent:a" in r.stderr
    assert snapshot(home) == before
    # otherwise revoking agent:a would leave its key trusted as agent:copy
    assert "agent:copy" not in cli("list").stdout


# --- keygen -----------------------------------------------------------------------------------


def test_conflicting_attribute_values_are_refused(cli, home):
    r = cli("keygen", "agent:a", "--attr", "team=a", "--attr", "team=b")
    _one_error(r, 2)
    assert not home.exists()
    assert cli("keygen", "agent:b", "--attr", "team=a", "--attr", "team=a").code == 0


# --- terminal output --------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("cmd", [["list"], ["show", "agent:a"], ["audit"]])
def test_terminal_gets_a_table_and_no_color_means_no_escapes(cli, home, monkeypatch, cmd):
    from agentctl._cli.entry import main

    assert cli("keygen", "agent:a", "--role", "r").code == 0
    monkeypatch.setenv("NO_COLOR", "1")
    tty = _Tty()
    monkeypatch.setattr("sys.stdout", tty)
    code = main(cmd)
    text = tty.getvalue()
    assert code == 0, text
    assert "\x1b" not in text
    assert "internal error" not in text
    if cmd[0] == "show":  # a narrow terminal folds the key id, never cuts it
        kid = json.loads(cli("--json", "show", "agent:a").stdout)["principal"]["kid"]
        assert "…" not in text and kid[:12] in text and kid[-8:] in text


def test_table_cells_are_not_markup(home):
    from agentctl._cli.output import Output

    tty = _Tty()
    Output(stdout=tty).table(("a",), [("[bold]x[/bold] [/]",)])
    assert "[bold]x[/bold]" in tty.getvalue()


# --- demo -------------------------------------------------------------------------------------


def test_demo_reader_going_away_is_141_not_1(home, monkeypatch):
    from agentctl._cli.demo import do_demo
    from agentctl._cli.common import State
    from agentctl._cli.output import Output

    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    try:
        assert do_demo(State(), Output(stdout=Closed(), stderr=io.StringIO())) == 141
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
