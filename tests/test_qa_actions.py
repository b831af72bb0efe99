"""QA regressions for delegate, inspect, sign, verify and revocations: bad input gets one error line and
the right exit code, and a failed command changes nothing in the home (audit records of verdicts aside)."""

from __future__ import annotations

import json

import pytest

from conftest import snapshot


def unaudited(path) -> dict:
    return {k: v for k, v in snapshot(path).items() if not k.startswith("audit")}


@pytest.fixture
def world(cli, home, tmp_path, monkeypatch):
    """user:alice, agent:bot and agent:sub in a file keystore; a grant alice -> bot for deploy.*:api/*
    (re-delegable), and an action the bot signed under it."""
    monkeypatch.setenv("AGENTCTL_KEYSTORE", "file")
    for name in ("user:alice", "agent:bot", "agent:sub"):
        assert cli("keygen", name).code == 0
    r = cli("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*:api/*", "--max-depth", "2")
    assert r.code == 0, r.stderr
    grant = tmp_path / "grant.jwt"
    grant.write_text(r.stdout)
    r = cli("sign", "--as", "agent:bot", "--action", "deploy.staging", "--resource", "api/web", "--grant", str(grant))
    assert r.code == 0, r.stderr
    action = tmp_path / "action.jwt"
    action.write_text(r.stdout)
    (tmp_path / "adir").mkdir()
    return {"grant": grant, "action": action, "adir": tmp_path / "adir", "tmp": tmp_path}


def one_error(r, code: int, text: str) -> None:
    lines = r.stderr.splitlines()
    assert r.code == code, (r.code, r.stderr)
    assert lines and lines[0].startswith("agentctl: error: ") and text in lines[0], r.stderr
    assert all(line.startswith("agentctl: hint: ") for line in lines[1:]), r.stderr
    assert "Traceback" not in r.stderr


def test_delegate_empty_from_is_a_bad_name_not_the_default_signer(cli, home, monkeypatch):
    monkeypatch.setenv("AGENTCTL_KEYSTORE", "file")
    assert cli("keygen", "user:alice").code == 0
    assert cli("keygen", "agent:bot").code == 0  # alice is the only one who could sign a grant to the bot
    before = unaudited(home)
    r = cli("delegate", "--from", "", "--to", "agent:bot", "--scope", "deploy.x")
    one_error(r, 2, "bad principal name ''")
    assert r.stdout == "" and unaudited(home) == before


@pytest.mark.parametrize("cmd", [
    ("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.x"),
    ("sign", "--as", "agent:bot", "--action", "deploy.x", "--resource", "api/x"),
    ("revocations", "export", "--sign-as", "user:alice"),
])
@pytest.mark.parametrize("where", ["adir", "", "grant.jwt/x", "missing/x"])
def test_unwritable_output_fails_before_anything_happens(cli, home, world, cmd, where):
    target = str(world["tmp"] / where) if where else ""
    before = snapshot(home)  # the audit log too: no "ok" event for a grant nobody received
    r = cli(*cmd, "-o", target)
    assert r.code == 2 and "agentctl: error: " in r.stderr and "Traceback" not in r.stderr
    assert snapshot(home) == before
    r = cli("revocations", "export", "--sign-as", "user:alice", "--json")
    if cmd[0] == "revocations":
        assert r.json()["version"] == 1  # the failed export did not use up a version


def test_directory_given_as_token_says_so(cli, home, world):
    adir = str(world["adir"])
    for args in (("inspect", adir), ("verify", adir),
                 ("delegate", "--to", "agent:sub", "--scope", "deploy.x:api/x", "--parent", adir),
                 ("sign", "--as", "agent:bot", "--action", "deploy.x", "--resource", "api/x", "--grant", adir)):
        one_error(cli(*args), 2, "it is a directory")


def test_empty_file_names_are_usage_errors(cli, home, world):
    action = str(world["action"])
    one_error(cli("revocations", "import", ""), 2, "an empty name")
    one_error(cli("verify", action, "--revocations", ""), 2, "an empty name")
    one_error(cli("sign", "--as", "agent:bot", "--action", "deploy.x", "--resource", "api/x", "--data", ""), 2, "an empty name")


def test_stdin_is_read_by_one_option_only(cli, home, world):
    token = world["action"].read_text()
    for args in (("verify", "-", "--revocations", "-"), ("verify", str(world["action"]), "--data", "-", "--revocations", "-"),
                 ("verify", "--batch", "--revocations", "-")):
        r = cli(*args, input=token)
        one_error(r, 2, "stdin")
        assert r.stdout == ""


@pytest.mark.parametrize("flag", [("--action", "deploy.*"), ("--resource", "api/a b"), ("--audience", "")])
def test_batch_flags_are_checked_up_front(cli, home, world, flag):
    r = cli("verify", "--batch", *flag, input=world["action"].read_text())
    one_error(r, 2, flag[0].lstrip("-"))
    assert r.stdout == ""


@pytest.mark.parametrize("aud", ["", "a b", "a\x01", "a" * 257])
def test_verify_refuses_a_bad_audience(cli, home, world, aud):
    r = cli("verify", str(world["action"]), "--audience", aud)
    one_error(r, 2, "--audience")
    r = cli("sign", "--as", "agent:bot", "--action", "deploy.x", "--resource", "api/x", "--audience", aud)
    one_error(r, 2, "--audience")


def test_batch_odd_objects_are_malformed_lines_not_a_crash(cli, home, world):
    token = world["action"].read_text().strip()
    lines = [
        '{"token": "%s", "data": "\\ud800"}' % token,  # a lone surrogate cannot be UTF-8 encoded
        json.dumps({"token": token, "data": "x", "data_b64": "eA"}),  # which one?
        json.dumps({"token": token, "resouce": "api/other"}),  # a misspelt key would drop a check
        token,
    ]
    r = cli("verify", "--batch", input="\n".join(lines))
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.code == 1 and "Traceback" not in r.stderr
    assert [v["reason"] for v in out] == ["malformed"] * 3 + [None]
    assert [v["line"] for v in out] == [1, 2, 3, 4]


def test_long_bad_resource_is_shown_short(cli, home, world):
    r = cli("sign", "--as", "agent:bot", "--action", "deploy.x", "--resource", "a" * 5000)
    one_error(r, 2, "bad --resource")
    assert len(r.stderr) < 300


def test_output_dash_is_stdout_not_a_file_named_dash(cli, home, world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (("delegate", "--to", "agent:sub", "--scope", "deploy.x:api/x", "--parent", str(world["grant"])),
                 ("sign", "--as", "agent:bot", "--action", "deploy.x", "--resource", "api/x"),
                 ("revocations", "export", "--sign-as", "user:alice")):
        r = cli(*args, "-o", "-")
        assert r.code == 0 and r.stdout.startswith("eyJ"), r.stderr
        assert not (tmp_path / "-").exists()


def test_a_batch_line_cannot_drop_a_check_the_flags_ask_for(cli, home, tmp_path):
    import json as _json

    assert cli("keygen", "user:alice").code == 0
    assert cli("keygen", "agent:bot").code == 0
    grant = tmp_path / "g.jwt"
    assert cli("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*:api/*", "-o", str(grant)).code == 0
    token = cli("sign", "--as", "agent:bot", "--action", "deploy.staging", "--resource", "api/web", "--grant", str(grant)).stdout.strip()
    line = _json.dumps({"token": token, "action": None, "resource": None}) + "\n"
    r = cli("verify", "--batch", "--action", "deploy.production", "--resource", "api/web", input=line)
    assert r.code == 1
    verdict = _json.loads(r.stdout)
    assert verdict["ok"] is False and verdict["reason"] == "scope_denied"


@pytest.mark.parametrize(
    "args",
    [
        ("verify", "tok", "--action", "a.b", "--action", "c.d"),
        ("verify", "tok", "--resource=x", "--resource", "y"),
        ("delegate", "--to", "agent:a", "--to", "agent:b", "--scope", "x"),
        ("sign", "--as", "agent:a", "--action", "a", "--resource", "r", "-o", "f1", "--output", "f2"),
        ("audit", "--limit", "3", "--limit", "4"),
    ],
)
def test_an_option_that_takes_one_value_given_twice_is_refused(cli, home, args):
    r = cli(*args)
    assert r.code == 2
    assert r.stderr.startswith("agentctl: error: --") and "more than once" in r.stderr


def test_repeatable_options_may_repeat(cli, home):
    r = cli("keygen", "agent:x", "--role", "a", "--role", "b", "--attr", "k=v", "--attr", "j=w")
    assert r.code == 0, r.stderr
