"""The real flow across machines, with the installed console script in subprocesses.

An admin home (user:alice), an agent home (agent:deployer), a tool-server home that imported only
alice's public key, and a CI run with an empty home and nothing but AGENTCTL_SECRET_KEY.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

AGENTCTL = Path(sys.executable).parent / "agentctl"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "verifying.md"


class Machine:
    def __init__(self, name: str, root: Path, **env: str) -> None:
        self.home = root / name
        self.cwd = root
        self.env = os.environ.copy()  # the fake keyring settings of the autouse fixture
        self.env["AGENTCTL_HOME"] = str(self.home)
        self.env.pop("AGENTCTL_SECRET_KEY", None)
        self.env.update(env)

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(AGENTCTL), *args], input=input, capture_output=True, text=True, env=self.env,
                              cwd=self.cwd, timeout=120)

    def ok(self, *args: str, input: str | None = None) -> str:
        r = self.run(*args, input=input)
        assert r.returncode == 0, (args, r.stderr)
        assert "Traceback" not in r.stderr
        return r.stdout.strip()

    def denied(self, *args: str) -> str:
        r = self.run(*args)
        assert r.returncode == 1, (args, r.returncode, r.stderr)
        assert r.stdout == ""
        assert r.stderr.startswith("agentctl: denied: "), r.stderr
        return r.stderr


@pytest.fixture
def machines(tmp_path):
    assert AGENTCTL.exists(), f"the console script is not installed next to {sys.executable}"
    admin, agent, tool = (Machine(n, tmp_path) for n in ("admin", "agent", "tool"))
    admin.ok("keygen", "user:alice")
    agent.ok("keygen", "agent:deployer")
    admin.ok("import", "agent:deployer", agent.ok("pubkey", "agent:deployer"))
    tool.home.mkdir(mode=0o700)  # the tool trusts someone else's user: it defines roles (SPEC)
    (tool.home / "config.toml").write_text('authority = "roles"\n\n[roles.deploy-lead]\nscopes = ["deploy.*:**"]\nrevoke = true\n')
    tool.ok("import", "user:alice", admin.ok("pubkey", "user:alice"), "--role", "deploy-lead")
    (tmp_path / "payload.json").write_text('{"image": "web:1.4.2"}\n')
    return admin, agent, tool, tmp_path


def delegate(admin: Machine, to: str, out: Path) -> None:
    admin.ok("delegate", "--from", "user:alice", "--to", to, "--scope", "deploy.staging:api/*", "--ttl", "10m",
             "-o", str(out))


def sign(machine: Machine, as_: str, grant: Path, out: Path) -> None:
    machine.ok("sign", "--as", as_, "--action", "deploy.staging", "--resource", "api/web", "--grant", str(grant),
               "--data", "payload.json", "-o", str(out))


CHECK = ("--action", "deploy.staging", "--resource", "api/web", "--data", "payload.json")


def test_admin_agent_tool_server_ci_revocation(machines):
    admin, agent, tool, root = machines
    grant, action = root / "grant.txt", root / "action.txt"
    delegate(admin, "agent:deployer", grant)
    sign(agent, "agent:deployer", grant, action)

    # the tool server knows alice only, and verifies
    out = tool.ok("verify", str(action), *CHECK)
    assert out.startswith("ok: agent:deployer may deploy.staging on api/web on behalf of user:alice")
    assert not (tool.home / "principals" / "agent:deployer").exists()
    err = tool.denied("verify", str(action), "--action", "deploy.production", "--resource", "api/web",
                      "--data", "payload.json")
    assert err.startswith("agentctl: denied: scope_denied: ")
    other = root / "other.json"
    other.write_text("{}")
    assert tool.denied("verify", str(action), "--data", str(other)).startswith("agentctl: denied: payload_mismatch: ")

    # a CI runner: empty home, no keyring, only the exported secret
    secret = agent.ok("keygen", "agent:ci", "--export-secret", "--no-store")
    assert secret.startswith("AGENTCTL-SECRET-KEY-1")
    admin.ok("import", "agent:ci", agent.ok("pubkey", "agent:ci"))
    ci_grant, ci_action = root / "ci-grant.txt", root / "ci-action.txt"
    delegate(admin, "agent:ci", ci_grant)
    ci = Machine("ci", root, AGENTCTL_SECRET_KEY=secret, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    sign(ci, "agent:ci", ci_grant, ci_action)
    assert tool.ok("verify", str(ci_action), *CHECK).startswith("ok: agent:ci may deploy.staging")
    assert not (ci.home / "keys").exists()

    # alice revokes the agent; the list travels to the tool server
    admin.ok("revoke", "agent:deployer", "--reason", "decommissioned")
    revs = root / "revocations.txt"
    admin.ok("revocations", "export", "--sign-as", "user:alice", "-o", str(revs))
    sign(ci, "agent:ci", ci_grant, ci_action)  # a fresh action by an unrevoked agent
    next_action = root / "next.txt"
    # the agent's own home does not know it was revoked: it still signs
    sign(agent, "agent:deployer", grant, next_action)
    err = tool.denied("verify", str(next_action), *CHECK, "--revocations", str(revs))
    assert err.startswith("agentctl: denied: revoked: principal agent:deployer is revoked")
    assert tool.ok("verify", str(next_action), *CHECK)  # --revocations alone leaves no trace
    tool.ok("revocations", "import", str(revs))
    err = tool.denied("verify", str(next_action), *CHECK)
    assert err.startswith("agentctl: denied: revoked: ")
    assert tool.ok("verify", str(ci_action), *CHECK)  # the other agent is unaffected
    r = tool.run("--json", "verify", str(next_action), *CHECK)
    assert r.returncode == 1
    import json

    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["reason"] == "revoked" and doc["type"] == "action"


def test_rotation_across_machines(machines):
    admin, agent, tool, root = machines
    tool.ok("import", "agent:deployer", agent.ok("pubkey", "agent:deployer"))
    old_grant, old_action = root / "old-grant.txt", root / "old-action.txt"
    delegate(admin, "agent:deployer", old_grant)
    sign(agent, "agent:deployer", old_grant, old_action)

    rotation = root / "rotation.txt"
    agent.ok("rotate", "agent:deployer", "-o", str(rotation))
    for m in (admin, tool):
        m.ok("import", "agent:deployer", "--rotation", str(rotation))
        m.ok("import", "agent:deployer", "--rotation", str(rotation))  # again: already applied, fine
    assert admin.ok("pubkey", "agent:deployer") == agent.ok("pubkey", "agent:deployer")
    assert tool.ok("pubkey", "agent:deployer") == agent.ok("pubkey", "agent:deployer")

    # the old grant names the old key: the agent cannot sign under it any more
    r = agent.run("sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(old_grant))
    assert r.returncode == 2 and "rotated" in r.stderr
    # an action signed before the rotation still verifies under the old grant
    assert tool.ok("verify", str(old_action), *CHECK)

    new_grant, new_action = root / "new-grant.txt", root / "new-action.txt"
    delegate(admin, "agent:deployer", new_grant)
    sign(agent, "agent:deployer", new_grant, new_action)
    assert tool.ok("verify", str(new_action), *CHECK).startswith("ok: agent:deployer may deploy.staging")

    # a rotation statement for someone else, or a tampered one, is refused
    r = tool.run("import", "user:alice", "--rotation", str(rotation))
    assert r.returncode == 1
    r = tool.run("import", "agent:deployer", "--rotation", str(old_action))
    assert r.returncode == 1 and "denied: malformed" in r.stderr


def test_docs_shell_gate(machines):
    """The copy-paste block of docs/verifying.md, run as written."""
    admin, agent, tool, root = machines
    grant, action = root / "grant.txt", root / "action.txt"
    delegate(admin, "agent:deployer", grant)
    sign(agent, "agent:deployer", grant, action)
    script = re.search(r"```sh\n(# verify-gate.*?)```", DOCS.read_text("utf-8"), re.S).group(1)
    env = dict(tool.env, PATH=f"{AGENTCTL.parent}{os.pathsep}{tool.env.get('PATH', '')}",
               TOKEN=action.read_text().strip())
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, cwd=root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: agent:deployer may deploy.staging on api/web") and r.stdout.endswith("\ndeploying\n")
    (root / "payload.json").write_text('{"image": "evil:latest"}\n')
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, cwd=root, timeout=120)
    assert r.stdout == "refused\n"
    assert r.stderr.startswith("agentctl: denied: payload_mismatch: ")
