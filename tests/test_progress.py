"""Long work shows progress on a terminal, and only there: `audit verify`, `audit ship` and
`verify --batch` rewrite one line on stderr when it is a terminal, never into a pipe or a file and
never under --json; the results on stdout are the same either way."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest

from agentctl._cli import batch_cmds
from agentctl._cli.entry import main
from agentctl._cli.output import Output
from agentctl.audit import AuditLog, Event
from agentctl.home import Home


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(monkeypatch, args, *, out_tty: bool, err_tty: bool, stdin: str = "") -> tuple[int, str, str]:
    out = Tty() if out_tty else io.StringIO()
    err = Tty() if err_tty else io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# --- Output.progress ------------------------------------------------------------------------------


@pytest.mark.parametrize("out_tty,err_tty,json_mode,stdout_terminal,shown", [
    (True, True, False, True, True),
    (False, True, False, True, False),  # results piped: nothing on stderr either
    (True, False, False, True, False),  # stderr into a file
    (True, True, True, True, False),  # --json
    (False, True, False, False, True),  # a stream of results into a file, progress on the terminal
    (True, True, False, False, False),  # the results on the terminal are their own progress
])
def test_progress_only_on_a_terminal(out_tty, err_tty, json_mode, stdout_terminal, shown):
    err = Tty() if err_tty else io.StringIO()
    out = Output(json_mode, stdout=Tty() if out_tty else io.StringIO(), stderr=err)
    show, end = out.progress("verified", stdout_terminal=stdout_terminal)
    show(3, 10)
    show(10, 10)
    end()
    assert err.getvalue() == ("\ragentctl: verified 3/10 events\ragentctl: verified 10/10 events\n" if shown else "")


def test_nothing_shown_ends_no_line():
    err = Tty()
    show, end = Output(stdout=Tty(), stderr=err).progress("checked", unit="lines")
    end()
    assert err.getvalue() == ""
    show(5)
    end()
    assert err.getvalue() == "\ragentctl: checked 5 lines\n"


# --- audit verify -------------------------------------------------------------------------------------


@pytest.fixture
def logged(home):
    log = AuditLog.open(Home(home))
    try:
        for i in range(0, 300, 100):
            log.append([Event("verify", "allow", principal="agent:w", action="deploy.x", resource=f"r{k}") for k in range(i, i + 100)])
    finally:
        log.close()
    return home


def test_audit_verify_shows_its_progress_on_a_terminal(logged, monkeypatch):
    code, out, err = run(monkeypatch, ["audit", "verify"], out_tty=True, err_tty=True)
    assert code == 0, err
    assert "audit log intact: 300 events" in out
    assert err.endswith("\ragentctl: verified 300/300 events\n")


def test_audit_verify_progress_through_the_exact_walk(logged, monkeypatch):
    from agentctl.audit import sweep

    monkeypatch.setattr(sweep, "sweep", lambda *a, **k: None)  # the walk that names what it finds
    monkeypatch.setattr("agentctl.audit.tamper.sweep", lambda *a, **k: None)
    monkeypatch.setattr("agentctl.audit.tamper._CHUNK_LEVEL", 7)  # chunks of 128 events
    code, out, err = run(monkeypatch, ["audit", "verify"], out_tty=True, err_tty=True)
    assert code == 0, err
    assert err == "\ragentctl: verified 128/300 events\ragentctl: verified 256/300 events\ragentctl: verified 300/300 events\n"


@pytest.mark.parametrize("args,out_tty,err_tty", [
    (["audit", "verify"], False, True),  # into a pipe
    (["audit", "verify"], True, False),
    (["--json", "audit", "verify"], True, True),
])
def test_audit_verify_shows_no_progress_elsewhere(logged, monkeypatch, args, out_tty, err_tty):
    code, out, err = run(monkeypatch, args, out_tty=out_tty, err_tty=err_tty)
    assert code == 0, err
    assert err == ""
    if args[0] == "--json":
        assert json.loads(out)["size"] == 300


def test_a_tampered_log_still_fails_with_progress_on(logged, monkeypatch):
    import sqlite3

    from agentctl.audit import codec

    conn = sqlite3.connect(logged / "audit.db")
    codec.register(conn)  # the index functions the DELETE feeds
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.execute("DELETE FROM entries WHERE seq = 150")
    conn.commit()
    conn.close()
    code, out, err = run(monkeypatch, ["audit", "verify"], out_tty=True, err_tty=True)
    assert code == 1
    assert "event 150" in err and "intact" not in out


# --- verify --batch -----------------------------------------------------------------------------------


def test_batch_counts_its_lines_on_the_terminal_when_the_verdicts_go_elsewhere(home, monkeypatch):
    monkeypatch.setattr(batch_cmds, "CHUNK", 2)
    lines = "".join(f"not-a-token-{i}\n" for i in range(5))
    code, out, err = run(monkeypatch, ["verify", "--batch"], out_tty=False, err_tty=True, stdin=lines)
    assert code == 1
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert [v["line"] for v in verdicts] == [1, 2, 3, 4, 5] and all(v["reason"] == "malformed" for v in verdicts)
    assert err.startswith("\ragentctl: checked 2 lines\ragentctl: checked 4 lines\n")


@pytest.mark.parametrize("out_tty,err_tty", [(True, True), (False, False)])
def test_batch_shows_no_count_when_the_verdicts_are_on_the_terminal_or_all_is_piped(home, monkeypatch, out_tty, err_tty):
    monkeypatch.setattr(batch_cmds, "CHUNK", 2)
    lines = "".join(f"not-a-token-{i}\n" for i in range(5))
    code, out, err = run(monkeypatch, ["verify", "--batch"], out_tty=out_tty, err_tty=err_tty, stdin=lines)
    assert code == 1
    assert len(out.splitlines()) == 5
    assert "checked" not in err
