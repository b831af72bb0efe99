"""The public API: exactly ``agentctl.__all__``, each name documented in docs/library.md, docs that
import only from ``agentctl``, and a tool server built from those names alone that records exactly
what ``agentctl verify``, ``delegate`` and ``sign`` record."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

import agentctl

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_DOC = ROOT / "docs" / "library.md"
PUBLIC = [n for n in agentctl.__all__ if n != "__version__"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves_is_documented_and_described(name):
    value = getattr(agentctl, name)
    assert f"`{name}" in LIBRARY_DOC.read_text("utf-8"), f"{name} is public but docs/library.md does not describe it"
    if inspect.isclass(value) or inspect.isfunction(value):
        assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_no_name_outside_all_is_offered():
    with pytest.raises(AttributeError):
        agentctl.Store  # noqa: B018 - a private class, not part of the API
    assert sorted(dir(agentctl)) == sorted(agentctl.__all__)


def _python_blocks():
    for path in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        for block in re.findall(r"```python\n(.*?)```", path.read_text("utf-8"), re.S):
            yield path.name, block


def test_docs_examples_import_only_the_public_api():
    import ast

    offenders, seen = [], 0
    for name, block in _python_blocks():
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "agentctl":
                seen += 1
                if node.module != "agentctl":
                    offenders.append(f"{name}: from {node.module} import …")
                offenders += [f"{name}: {a.name} is not public" for a in node.names if a.name not in agentctl.__all__]
            elif isinstance(node, ast.Import):
                offenders += [f"{name}: import {a.name}" for a in node.names if a.name.startswith("agentctl.")]
    assert seen >= 3  # the examples exist and were read
    assert not offenders, offenders


def test_the_library_page_example_runs(capsys):
    block = re.findall(r"```python\n(.*?)```", LIBRARY_DOC.read_text("utf-8"), re.S)[1]
    exec(compile(block, "docs/library.md", "exec"), {})
    out = capsys.readouterr().out
    assert "agent:bot deploys for user:alice under deploy.staging:api/*" in out


# --- a tool server from the public names alone records what the command line records -------------

_IGNORED = {"seq", "time", "host", "version", "jtis"}


def _cli_events(cli, since: int) -> list[dict]:
    r = cli("--json", "audit", "--limit", "1000")
    assert r.code == 0, r.stderr
    events = [e for e in r.json()["events"] if e["seq"] > since]
    return [{k: v for k, v in e.items() if k not in _IGNORED} for e in reversed(events)]


def _lib_events(recorder) -> list[dict]:
    out = []
    for ev in recorder.events:
        doc = {"event": ev.event, "outcome": ev.outcome, "principal": ev.principal, "on_behalf_of": ev.on_behalf_of,
               "chain": list(ev.chain), "action": ev.action, "resource": ev.resource, "reason": ev.reason,
               "metadata": json.loads(json.dumps(ev.metadata))}
        out.append(doc)
    return out


def _last_seq(cli) -> int:
    r = cli("--json", "audit", "--limit", "1")
    events = r.json()["events"] if r.code == 0 else []
    return events[0]["seq"] if events else 0


def test_a_tool_server_from_the_public_api_records_what_the_cli_records(cli, home, tmp_path):
    """The same verifications (allowed, replayed, tampered, out of scope) through ``agentctl verify
    --once`` in a home and through a home-less ``Verifier`` built from ``agentctl.__all__`` produce the
    same audit events, and so do minting and signing."""
    env = {"AGENTCTL_KEYSTORE": "file"}
    for name in ("user:alice", "agent:bot"):
        assert cli("keygen", name, env=env).code == 0
    secrets = {}
    for name in ("user:alice", "agent:bot"):
        r = cli("rotate", name, "--export-secret", "-o", str(tmp_path / f"{name}.rot"), env=env)
        assert r.code == 0, r.stderr
        secrets[name] = r.stdout.strip()

    alice = agentctl.signer_from_secret(secrets["user:alice"])
    bot = agentctl.signer_from_secret(secrets["agent:bot"])
    payload = b'{"ref": "v2"}'
    (tmp_path / "p.json").write_bytes(payload)

    # minting and signing: the command line in the home, the library with a MemoryRecorder
    before = _last_seq(cli)
    lib_mint = agentctl.MemoryRecorder()
    grant, _ = agentctl.delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["deploy.*:api/*"], ttl=1800,
                                      recorder=lib_mint)
    action = agentctl.sign_action_with(bot, action="deploy.staging", resource="api/web", grant=grant, data=payload,
                                       recorder=lib_mint)
    with pytest.raises(agentctl.VerificationError):  # refused up front: outside the grant
        agentctl.sign_action_with(bot, action="deploy.production", resource="db/main", grant=grant, recorder=lib_mint)
    g = tmp_path / "g.jwt"
    assert cli("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*:api/*", "--ttl", "30m",
               "-o", str(g), env=env).code == 0
    assert cli("sign", "--as", "agent:bot", "--action", "deploy.staging", "--resource", "api/web", "--grant", str(g),
               "--data", str(tmp_path / "p.json"), "-o", str(tmp_path / "a.jwt"), env=env).code == 0
    assert cli("sign", "--as", "agent:bot", "--action", "deploy.production", "--resource", "db/main", "--grant", str(g),
               env=env).code == 1
    cli_mint = _cli_events(cli, before)

    def comparable(events):
        out = []
        for e in events:
            md = {k: v for k, v in e["metadata"].items() if k not in ("expires_at", "sha256")}
            out.append({**e, "metadata": md})
        return out

    assert [e["event"] for e in cli_mint] == ["delegate", "sign", "sign"]
    assert comparable(cli_mint) == comparable(_lib_events(lib_mint))

    # verifying: the same four tokens, through the command line and through the tool server
    tampered = action[:-4] + ("AAAA" if not action.endswith("AAAA") else "BBBB")
    cases = [
        (action, ("--action", "deploy.staging", "--resource", "api/web")),      # allowed
        (action, ("--action", "deploy.staging", "--resource", "api/web")),      # replayed
        (tampered, ("--action", "deploy.staging", "--resource", "api/web")),    # bad signature
        (grant, ("--action", "repo.delete", "--resource", "prod/billing")),     # out of scope
    ]
    before = _last_seq(cli)
    codes = []
    for token, flags in cases:
        once = ("--once",) if token != grant else ()
        codes.append(cli("verify", token, *flags, *once, env=env).code)
    assert codes == [0, 1, 1, 1]
    cli_verify = _cli_events(cli, before)

    audit = agentctl.MemoryRecorder()
    trust = agentctl.StaticTrust({"user:alice": alice.public, "agent:bot": bot.public})
    server = agentctl.Verifier(trust, recorder=audit, once=True, seen=agentctl.MemorySeenStore())
    for token, flags in cases:
        kw = {"action": flags[1], "resource": flags[3]}
        try:
            server.verify(token, **kw, once=token != grant)
        except agentctl.VerificationError:
            pass
    lib_verify = _lib_events(audit)
    assert [e["reason"] for e in lib_verify] == [None, "replayed", "bad_signature", "scope_denied"]
    assert lib_verify == cli_verify


def test_every_verify_event_names_the_presentation_by_its_digest(tmp_path):
    """SPEC, Beyond one machine: a disputed event is settled by producing the token, so each verify
    event carries presentation_sha256, for allowed and denied ones alike."""
    import hashlib
    import os

    alice = agentctl.signer_from_seed("user:alice", os.urandom(32))
    bot = agentctl.signer_from_seed("agent:bot", os.urandom(32))
    grant, _ = agentctl.delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["deploy.*:api/*"], ttl=600)
    action = agentctl.sign_action_with(bot, action="deploy.staging", resource="api/web", grant=grant)
    audit = agentctl.MemoryRecorder()
    verifier = agentctl.Verifier(agentctl.StaticTrust({"user:alice": alice.public}), recorder=audit)
    verifier.verify(action + "\n", action="deploy.staging", resource="api/web")
    with pytest.raises(agentctl.VerificationError):
        verifier.verify(action, action="deploy.staging", resource="api/other")
    with pytest.raises(agentctl.VerificationError):
        verifier.verify(action[:-2] + "xx")
    digests = [e.metadata.get("presentation_sha256") for e in audit.events]
    assert digests == [hashlib.sha256(action.encode()).hexdigest()] * 2 + [hashlib.sha256((action[:-2] + "xx").encode()).hexdigest()]


def test_library_errors_name_parameters_and_the_cli_names_its_flags(cli, home):
    """The library speaks of its parameters (max_depth), the command line of its flags (--max-depth):
    one table in the CLI maps one to the other (issue: library messages named CLI flags)."""
    import os

    alice = agentctl.signer_from_seed("user:alice", os.urandom(32))
    with pytest.raises(agentctl.UsageError) as e:
        agentctl.delegate_with(alice, to="agent:bot", to_public=alice.public, scopes=["x.y"], max_depth=99)
    assert e.value.message.startswith("max_depth must be") and e.value.param == "max_depth" and "--" not in e.value.message
    assert cli("keygen", "user:alice", env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    assert cli("keygen", "agent:bot", env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    r = cli("delegate", "--to", "agent:bot", "--scope", "x.y", "--max-depth", "99", env={"AGENTCTL_KEYSTORE": "file"})
    assert r.code == 2 and "agentctl: error: --max-depth must be" in r.stderr


def test_no_library_message_names_a_command_line_flag():
    """Flags belong to the command line: a library message or hint names its parameter instead. A hint
    that shows a whole agentctl command (``agentctl audit ship --init URL``) is a command, not a flag."""
    import re

    offenders = []
    for path in sorted((ROOT / "agentctl").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("agentctl/_cli/") or rel == "agentctl/mcp/proxy.py":
            continue
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not re.search(r"(raise |Error\(|hint=)", line):
                continue
            for literal in re.findall(r"f?\"[^\"]*\"|f?'[^']*'", line):
                if re.search(r"(?<![\w-])--[a-z]", literal) and "agentctl " not in literal:
                    offenders.append(f"{rel}:{n}: {literal}")
    assert not offenders, offenders
