"""Approvals on the command line: three homes (the agent's, the approver's, the tool server's) that
share nothing but files, and the attacks a person at a terminal or a racing approver can try."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers_tokens import parts, tamper

AUD = "deploy-gate"
RELEASE = '{"version": "1.2.3", "notes": "fix \\u001b[31mred\\u001b[0m"}\n'


class Flow:
    def __init__(self, cli, tmp_path: Path) -> None:
        self.cli, self.dir = cli, tmp_path
        self.agent, self.approver, self.server = (str(tmp_path / n) for n in ("agent-home", "approver-home", "server-home"))
        (tmp_path / "release.json").write_text(RELEASE)
        self.release = str(tmp_path / "release.json")
        self.ok(self.agent, "keygen", "user:alice")
        self.ok(self.agent, "keygen", "agent:deployer")
        self.ok(self.approver, "keygen", "user:carol")
        dids = {n: self.ok(h, "pubkey", n).strip() for h, n in ((self.agent, "user:alice"), (self.agent, "agent:deployer"),
                                                              (self.approver, "user:carol"))}
        roles = 'authority = "roles"\n[roles.engineer]\nscopes = ["deploy.*:**"]\n'
        for home in (self.approver, self.server):
            Path(home).mkdir(mode=0o700, exist_ok=True)
            self.ok(home, "import", "user:alice", dids["user:alice"], "--role", "engineer")
            self.ok(home, "import", "agent:deployer", dids["agent:deployer"])
        self.ok(self.server, "import", "user:carol", dids["user:carol"], "--role", "approver")
        self.config(self.approver, roles)
        self.config(self.server, f'authority = "roles"\naudience = "{AUD}"\n[roles.engineer]\nscopes = ["deploy.*:**"]\n'
                    '[approvals]\nrequire = ["deploy.production:**"]\napprovers = ["role:approver"]\n')
        self.grant = self.file("grant.jwt")
        self.ok(self.agent, "delegate", "--from", "user:alice", "--to", "agent:deployer", "--scope", "deploy.*:**",
                "--ttl", "2h", "-o", self.grant)

    def config(self, home: str, text: str) -> None:
        p = Path(home) / "config.toml"
        p.write_text(text)
        os.chmod(p, 0o600)

    def file(self, name: str) -> str:
        return str(self.dir / name)

    def run(self, home: str, *args: str, input: str = ""):
        return self.cli("--home", home, *args, input=input)

    def ok(self, home: str, *args: str, input: str = "") -> str:
        r = self.run(home, *args, input=input)
        assert r.code == 0, (args, r.stderr)
        return r.stdout

    def request(self, name="request.jwt", *extra: str) -> str:
        out = self.file(name)
        self.ok(self.agent, "approval", "request", "--as", "agent:deployer", "--action", "deploy.production",
                "--resource", "api/web", "--audience", AUD, "--grant", self.grant, "--data", self.release, "--embed",
                "-o", out, *extra)
        return out

    def approve(self, request: str, name="approval.jwt", *extra: str) -> str:
        out = self.file(name)
        self.ok(self.approver, "approval", "approve", request, "--as", "user:carol", "-o", out, *extra)
        return out

    def sign(self, approval: str | None, name="action.jwt") -> str:
        out = self.file(name)
        extra = ("--approval", approval) if approval else ()
        self.ok(self.agent, "sign", "--as", "agent:deployer", "--action", "deploy.production", "--resource", "api/web",
                "--grant", self.grant, "--data", self.release, "--audience", AUD, "-o", out, *extra)
        return out

    def verify(self, action: str, *extra: str):
        return self.run(self.server, "--json", "verify", action, "--audience", AUD, "--data", self.release, *extra)


@pytest.fixture
def flow(cli, tmp_path):
    return Flow(cli, tmp_path)


def test_three_homes_refused_then_approved_then_allowed_once(flow):
    refused = flow.verify(flow.sign(None, "bare.jwt"))
    assert refused.code == 1 and refused.json()["reason"] == "approval_required"
    request = flow.request()
    shown = flow.run(flow.approver, "approval", "show", request)
    assert shown.code == 0 and "verified" in shown.stdout and "agent:deployer" in shown.stdout
    approval = flow.approve(request, "approval.jwt", "--note", "checked")
    action = flow.sign(approval)
    allowed = flow.verify(action)
    assert allowed.code == 0, allowed.stdout
    assert allowed.json()["approval"]["by"] == "user:carol"
    again = flow.verify(action)  # no --once: an approval is single use all the same
    assert again.code == 1 and again.json()["reason"] == "replayed"
    audit = json.loads(flow.ok(flow.server, "--json", "audit", "--limit", "5"))
    events = audit if isinstance(audit, list) else audit.get("events", audit)
    text = json.dumps(events)
    assert "user:carol" in text and parts(Path(approval).read_text().strip())[1]["req"] in text
    agent_audit = json.dumps(json.loads(flow.ok(flow.agent, "--json", "audit")))
    assert "approval.request" in agent_audit
    approver_audit = json.dumps(json.loads(flow.ok(flow.approver, "--json", "audit")))
    assert "approval.approve" in approver_audit


def test_show_escapes_what_the_agent_wrote(flow):
    request = flow.request("r.jwt", "--reason", "urgent\x1b]0;pwned\x07 \u202eevil")
    out = flow.ok(flow.approver, "approval", "show", request)
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]0;pwned\\x07" in out and "\\u202e" in out
    assert "the agent's words" in out
    doc = json.loads(flow.ok(flow.approver, "--json", "approval", "show", request))
    assert doc["verified"] is True and doc["payload"]["shown"]["kind"] == "json"
    assert doc["grant_seconds_left"] > 0 and doc["chain"] == ["user:alice", "agent:deployer"]


def test_long_payload_is_cut_at_a_screenful(flow):
    big = json.dumps({f"k{i}": i for i in range(200)})
    Path(flow.release).write_text(big)
    request = flow.request()
    out = flow.ok(flow.approver, "approval", "show", request)
    assert "cut at a screenful" in out and f"{len(big)} bytes" in out
    assert out.count("    | ") <= 41


def test_tampered_request_is_shown_unverified_and_not_approved(flow):
    request = flow.request()
    text = Path(request).read_text().strip()
    Path(request).write_text(tamper(text, resource="api/db") + "\n")
    shown = flow.run(flow.approver, "approval", "show", request)
    assert shown.code == 1 and "NOT VERIFIED: bad_signature" in shown.stdout
    r = flow.run(flow.approver, "approval", "approve", request, "--as", "user:carol", "-o", flow.file("a.jwt"))
    assert r.code == 1 and not Path(flow.file("a.jwt")).exists()


def test_blind_approval_needs_blind(flow):
    out = flow.file("noembed.jwt")
    flow.ok(flow.agent, "approval", "request", "--as", "agent:deployer", "--action", "deploy.production", "--resource",
            "api/web", "--audience", AUD, "--grant", flow.grant, "--data", flow.release, "-o", out)
    r = flow.run(flow.approver, "approval", "approve", out, "--as", "user:carol")
    assert r.code == 2 and "--blind" in r.stderr
    assert flow.run(flow.approver, "approval", "approve", out, "--as", "user:carol", "--data", flow.release,
                    "-o", flow.file("seen.jwt")).code == 0


def test_blind_flag_allows_an_unseen_payload(flow):
    out = flow.file("noembed.jwt")
    flow.ok(flow.agent, "approval", "request", "--as", "agent:deployer", "--action", "deploy.production", "--resource",
            "api/web", "--audience", AUD, "--grant", flow.grant, "--data", flow.release, "-o", out)
    assert flow.run(flow.approver, "approval", "approve", out, "--as", "user:carol", "--blind").code == 0


def test_decided_once_per_home(flow):
    request = flow.request()
    flow.approve(request)
    again = flow.run(flow.approver, "approval", "approve", request, "--as", "user:carol")
    assert again.code == 1 and "already approved" in again.stderr
    denied = flow.request("r2.jwt")
    flow.ok(flow.approver, "approval", "deny", denied, "--as", "user:carol", "--reason", "freeze")
    later = flow.run(flow.approver, "approval", "approve", denied, "--as", "user:carol")
    assert later.code == 1 and "already denied" in later.stderr


def test_racing_approvers_one_wins(flow, tmp_path):
    from agentctl.approval_queue import approve_request, view_request
    from agentctl.context import Context
    from agentctl.errors import DeniedError

    request = Path(flow.request()).read_text().strip()
    flow.ok(flow.approver, "keygen", "user:dave")
    results: list = []

    def go(name):
        ctx = Context.for_home(flow.approver)
        try:
            approve_request(ctx, view_request(ctx, request), as_=name)
            results.append("won")
        except DeniedError as e:
            results.append(e.message)

    threads = [threading.Thread(target=go, args=(n,)) for n in ("user:carol", "user:dave")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("won") == 1, results
    assert any("already approved" in r for r in results if r != "won")


def test_queue_lists_pending_oldest_first_and_drops_decided(flow):
    first = flow.request("one.jwt")
    flow.request("two.jwt")
    listed = json.loads(flow.ok(flow.agent, "--json", "approval", "list"))["requests"]
    assert len(listed) == 2
    first_id = parts(Path(first).read_text().strip())[1]["jti"]
    flow.ok(flow.agent, "approval", "deny", first_id, "--as", "user:alice", "--reason", "not now")
    left = json.loads(flow.ok(flow.agent, "--json", "approval", "list"))["requests"]
    assert [d["id"] for d in left] != [first_id] and len(left) == 1


def test_revoked_approval_is_refused(flow):
    approval = flow.approve(flow.request())
    action = flow.sign(approval)
    flow.ok(flow.server, "revoke", "--jti", parts(Path(approval).read_text().strip())[1]["jti"])
    r = flow.verify(action)
    assert r.code == 1 and r.json()["reason"] == "approval_invalid" and "revocation" in r.json()["detail"]


def test_grant_asked_about_a_required_action(flow):
    r = flow.run(flow.server, "--json", "verify", flow.grant, "--action", "deploy.production", "--resource", "api/web")
    assert r.code == 1 and r.json()["reason"] == "approval_required"


def test_approvals_without_audience_is_a_usage_error(flow):
    flow.config(flow.server, '[approvals]\nrequire = ["deploy.production:**"]\n')
    r = flow.run(flow.server, "verify", flow.grant)
    assert r.code == 2 and "audience" in r.stderr


def test_unknown_approvals_key_is_a_usage_error(flow):
    flow.config(flow.server, 'audience = "x"\n[approvals]\nrequire = []\nfour_eyes_please = true\n')
    r = flow.run(flow.server, "verify", flow.grant)
    assert r.code == 2 and "four_eyes_please" in r.stderr


def test_approver_not_on_the_approving_homes_list(flow):
    flow.config(flow.approver, 'authority = "roles"\naudience = "x"\n[roles.engineer]\nscopes = ["deploy.*:**"]\n'
                '[approvals]\napprovers = ["user:zed"]\n')
    r = flow.run(flow.approver, "approval", "approve", flow.request(), "--as", "user:carol")
    assert r.code == 2 and "approvers" in r.stderr


@pytest.mark.subprocess
def test_installed_console_script_runs_the_approval_commands(flow):
    request = flow.request()
    script = Path(sys.executable).parent / "agentctl"
    env = {**os.environ, "AGENTCTL_HOME": flow.approver}
    r = subprocess.run([str(script), "approval", "approve", request, "--as", "user:carol", "-o", flow.file("a.jwt")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    action = flow.sign(flow.file("a.jwt"))
    r = subprocess.run([str(script), "verify", action, "--audience", AUD, "--data", flow.release],
                       capture_output=True, text=True, env={**os.environ, "AGENTCTL_HOME": flow.server}, timeout=120)
    assert r.returncode == 0, r.stderr
