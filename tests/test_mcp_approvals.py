"""Approvals, policy and revocation at the tool boundary, through the two proxies as subprocesses with a
real SDK server and a real ClientSession: client -> agentctl mcp sign --approvals DIR -> agentctl mcp
guard -> server. Every refusal is checked from the client's side (the JSON-RPC error) and the server's
(the tool never ran)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess
pytest.importorskip("mcp")
pytest.importorskip("regopy")  # in the test extra: a missing engine fails here, loudly, not silently

AGENTCTL = str(Path(sys.executable).parent / "agentctl")

SERVER = r'''
import os
from mcp.server.mcpserver import MCPServer
srv = MCPServer("stock")
@srv.tool()
def echo(text: str) -> str:
    if os.path.exists(os.environ["FAIL"]):  # fail once: the server answers with an error
        os.unlink(os.environ["FAIL"])
        from mcp.shared.exceptions import MCPError
        raise MCPError(-32000, "busy, try again")
    with open(os.environ["CALLS"], "a") as f:
        f.write(text + "\n")
    return text + "!"
srv.run()
'''


def run(env, *args, ok=True):
    r = subprocess.run([AGENTCTL, *args], env=env, capture_output=True, text=True, timeout=60)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def world(tmp_path, home):
    env = os.environ.copy()
    env["AGENTCTL_HOME"] = str(home)
    env["CALLS"] = str(tmp_path / "calls")
    env["FAIL"] = str(tmp_path / "fail")
    (tmp_path / "bot.secret").write_text(run(env, "keygen", "agent:bot", "--export-secret").stdout.strip())
    for args in (("keygen", "user:alice"), ("keygen", "user:carol"),
                 ("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "mcp.call:files/*",
                  "-o", str(tmp_path / "bot.grant"))):
        run(env, *args)
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "approvals").mkdir()
    return tmp_path, env


def require_approval(home: Path) -> None:
    p = home / "config.toml"
    p.write_text('audience = "some-other-gate"\n[approvals]\nrequire = ["mcp.call:files/echo"]\napprovers = ["user:carol"]\n')
    os.chmod(p, 0o600)


def session(world, calls: list[dict], *, guard_extra=(), sign_extra=(), sign_home=None):
    """One client session through both proxies: the result text or the MCPError of each call."""
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.shared.exceptions import MCPError

    tmp_path, env = world
    guard_env: list[str] = []
    if sign_home is not None:  # the signer's home knows less than the guard's: the guard must refuse by itself
        guard_env = ["env", f"AGENTCTL_HOME={env['AGENTCTL_HOME']}"]
        env = {**env, "AGENTCTL_HOME": str(sign_home), "AGENTCTL_SECRET_KEY": (tmp_path / "bot.secret").read_text()}
    args = ["mcp", "sign", "--as", "agent:bot", "--grant", str(tmp_path / "bot.grant"), "--server", "files",
            "--approvals", str(tmp_path / "approvals"), *sign_extra, "--",
            *guard_env, AGENTCTL, "mcp", "guard", "--name", "files", *guard_extra, "--", sys.executable, str(tmp_path / "server.py")]

    async def go():
        out = []
        async with stdio_client(StdioServerParameters(command=AGENTCTL, args=args, env=env)) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                for arguments in calls:
                    try:
                        out.append((await s.call_tool("echo", arguments)).content[0].text)
                    except MCPError as e:
                        out.append(e)
        return out

    return anyio.run(go)


def ran(tmp_path) -> list[str]:
    p = tmp_path / "calls"
    return p.read_text().splitlines() if p.exists() else []


def approve(world, arguments: dict, name: str) -> str:
    """agent:bot asks, user:carol approves; the approval lands in the approvals directory."""
    tmp_path, env = world
    data = tmp_path / f"{name}.json"
    from agentctl.encoding import canonical_json

    data.write_bytes(canonical_json(arguments))  # the request binds the canonical form's digest, as the call does
    req = run(env, "approval", "request", "--as", "agent:bot", "--action", "mcp.call", "--resource", "files/echo",
              "--audience", "mcp:files", "--grant", str(tmp_path / "bot.grant"), "--data", str(data), "--embed").stdout.strip()
    out = tmp_path / "approvals" / f"{name}.jwt"
    run(env, "approval", "approve", req, "--as", "user:carol", "-o", str(out))
    return str(out)


def reason(e) -> str:
    from mcp.shared.exceptions import MCPError

    assert isinstance(e, MCPError) and e.code == -31001, e
    return e.data["reason"]


def test_a_tool_that_needs_an_approval(world, home):
    tmp_path, env = world
    require_approval(home)
    # without one: refused, and the error tells an approver exactly what to approve
    [e] = session(world, [{"text": "hi"}])
    assert reason(e) == "approval_required"
    from agentctl.encoding import canonical_json
    from agentctl.presentation import digest

    grant = (tmp_path / "bot.grant").read_text().strip()
    assert {k: e.data[k] for k in ("agent", "action", "resource", "payload_sha256", "grant")} == {
        "agent": "agent:bot", "action": "mcp.call", "resource": "files/echo",
        "payload_sha256": __import__("hashlib").sha256(canonical_json({"text": "hi"})).hexdigest(),
        "grant": digest(grant.rsplit("~", 1)[-1])}
    assert ran(tmp_path) == []
    # approved: these exact arguments run once; other arguments are not covered; the same again is a replay
    approve(world, {"text": "hi"}, "hi")
    first = session(world, [{"text": "hi"}, {"text": "other"}, {"text": "hi"}])
    assert first[0] == "hi!"
    assert reason(first[1]) == "approval_required"
    assert reason(first[2]) == "replayed"
    assert ran(tmp_path) == ["hi"]
    # a restarted guard (the home's seen-store, the default) still knows the approval was used
    [again] = session(world, [{"text": "hi"}])
    assert reason(again) == "replayed" and "approval" in again.data["detail"]
    assert ran(tmp_path) == ["hi"]


def test_a_server_error_leaves_the_approval_for_the_retry(world, home):
    tmp_path, env = world
    require_approval(home)
    approve(world, {"text": "hi"}, "hi")
    (tmp_path / "fail").write_text("")
    # the server fails the first call: the approval is not used up (each call has its own action token)
    failed, retried, again = session(world, [{"text": "hi"}] * 3)
    from mcp.shared.exceptions import MCPError

    assert isinstance(failed, MCPError) and failed.code == -32000
    assert retried == "hi!"
    assert reason(again) == "replayed" and "approval" in again.data["detail"]
    assert ran(tmp_path) == ["hi"]
    # the give-back is in the home's audit log, which still verifies
    import json

    events = json.loads(run(env, "audit", "--json").stdout)
    events = events["events"] if isinstance(events, dict) else events
    released = [e for e in events if e["event"] == "mcp.release"]
    assert len(released) == 1 and released[0]["metadata"]["answer"] == "error"
    run(env, "audit", "verify")


def test_an_approval_for_another_audience_or_approver_does_not_hold(world, home):
    tmp_path, env = world
    require_approval(home)
    approve(world, {"text": "hi"}, "hi")
    # the guard's audience is --audience (the approval names mcp:files): refused, the tool never ran
    [e] = session(world, [{"text": "hi"}], guard_extra=("--audience", "elsewhere"), sign_extra=("--audience", "elsewhere"))
    assert reason(e) == "approval_invalid" and e.data["detail"].startswith("audience")
    assert ran(tmp_path) == []


def test_a_policy_denies_and_a_revoked_agent_is_refused(world):
    tmp_path, env = world
    policy = tmp_path / "p.rego"
    policy.write_text('package agent.authz\ndefault allow = false\nallow if { input.agent.id == "agent:someone-else" }\n')
    [e] = session(world, [{"text": "hi"}], guard_extra=("--policy", str(policy)))
    assert reason(e) == "policy_denied"
    assert ran(tmp_path) == []
    # the same policy naming the agent allows: the refusal above was the policy's
    policy.write_text('package agent.authz\ndefault allow = false\nallow if { input.agent.id == "agent:bot" }\n')
    assert session(world, [{"text": "hi"}], guard_extra=("--policy", str(policy))) == ["hi!"]
    import shutil

    before = tmp_path / "before-revocation"
    shutil.copytree(env["AGENTCTL_HOME"], before)
    run(env, "revoke", "agent:bot", "--reason", "compromised")
    # signed where the revocation is not known yet; the guard's home knows it
    [e] = session(world, [{"text": "again"}], sign_home=before)
    assert reason(e) == "revoked"
    assert ran(tmp_path) == ["hi"]


def test_a_guard_refuses_a_bad_policy_before_the_server_starts(world):
    tmp_path, env = world
    bad = tmp_path / "bad.rego"
    bad.write_text("package agent.authz\nallow if {\n")
    r = subprocess.run([AGENTCTL, "mcp", "guard", "--name", "files", "--policy", str(bad), "--", sys.executable,
                        str(tmp_path / "server.py")], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode in (2, 3) and r.stdout == "" and r.stderr.startswith("agentctl: error:")
    assert "Traceback" not in r.stderr
    r = run(env, "mcp", "guard", "--name", "files", "--query", "data.x", "--", "true", ok=False)
    assert r.returncode == 2 and "--query goes with --policy" in r.stderr
