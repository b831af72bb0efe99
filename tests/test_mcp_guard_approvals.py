"""Approvals and expiry with the library guard on a real SDK server, in-process (a FixedClock, no real
time): the guard's approval rules are for its own audience, approval_required names the binding, an
approval runs its call once, and the signer attaches only an approval that matches exactly."""

from __future__ import annotations

import hashlib
import os

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp.client.client import Client  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from agentctl import FixedClock, MemoryRecorder, StaticTrust, delegate_with, signer_from_seed  # noqa: E402
from agentctl.approvals import ApprovalRules, approve_with, request_with  # noqa: E402
from agentctl.encoding import canonical_json  # noqa: E402
from agentctl.mcp import ACTION, DENIED, CallSigner, Guard  # noqa: E402
from agentctl.presentation import digest  # noqa: E402

T0 = 1_800_000_000


class W:
    pass


@pytest.fixture
def w():
    w = W()
    w.clock = FixedClock(T0)
    w.alice = signer_from_seed("user:alice", os.urandom(32))
    w.bot = signer_from_seed("agent:bot", os.urandom(32))
    w.carol = signer_from_seed("user:carol", os.urandom(32))
    w.grant, _ = delegate_with(w.alice, to="agent:bot", to_public=w.bot.public, scopes=["mcp.call:files/*"], ttl=3600,
                               clock=w.clock)
    trust = StaticTrust({"user:alice": w.alice.public, "user:carol": w.carol.public})
    # the rules' audience is replaced by the guard's (mcp:files): approvals name the guard
    rules = ApprovalRules("config-audience", require=("mcp.call:files/deploy",), approvers=("user:carol",))
    w.rec = MemoryRecorder()
    w.guard = Guard(trust, server="files", recorder=w.rec, clock=w.clock, approvals=rules)
    w.ran = []
    w.srv = MCPServer("x", middleware=[w.guard])

    @w.srv.tool()
    def deploy(env: str) -> str:
        w.ran.append(env)
        return f"deployed {env}"

    @w.srv.tool()
    def echo(text: str) -> str:
        w.ran.append(text)
        return text

    return w


def call(w, signer, name, arguments):
    async def go():
        async with Client(w.srv) as client:
            try:
                return (await signer.call_tool(client, name, arguments)).content[0].text
            except MCPError as e:
                return e

    return anyio.run(go)


def approval(w, arguments, *, ttl=600, audience="mcp:files"):
    req = request_with(w.bot, action=ACTION, resource="files/deploy", audience=audience, grant=w.grant,
                       data=canonical_json(arguments), clock=w.clock)
    return approve_with(w.carol, req, ttl=ttl, clock=w.clock)


def refused(r, reason):
    assert isinstance(r, MCPError) and r.code == DENIED, r
    assert r.data["reason"] == reason, r.data
    return r


def test_approval_required_names_what_to_approve(w):
    signer = CallSigner(w.bot, server="files", grant=w.grant, clock=w.clock)
    e = refused(call(w, signer, "deploy", {"env": "prod"}), "approval_required")
    assert e.data["agent"] == "agent:bot" and e.data["action"] == "mcp.call" and e.data["resource"] == "files/deploy"
    assert e.data["payload_sha256"] == hashlib.sha256(canonical_json({"env": "prod"})).hexdigest()
    assert e.data["grant"] == digest(w.grant.rsplit("~", 1)[-1])
    # what the error names is exactly what an approval must bind: one made from it is accepted
    assert call(w, CallSigner(w.bot, server="files", grant=w.grant, clock=w.clock, approvals=[approval(w, {"env": "prod"})]),
                "deploy", {"env": "prod"}) == "deployed prod"
    # a tool the rules do not name needs none
    assert call(w, signer, "echo", {"text": "hi"}) == "hi"
    assert w.ran == ["prod", "hi"]


def test_an_approval_runs_its_call_once(w):
    signer = CallSigner(w.bot, server="files", grant=w.grant, clock=w.clock, approvals=[approval(w, {"env": "prod"})])
    assert call(w, signer, "deploy", {"env": "prod"}) == "deployed prod"
    e = refused(call(w, signer, "deploy", {"env": "prod"}), "replayed")  # a fresh action token, the same approval
    assert "approval" in e.data["detail"]
    assert w.ran == ["prod"]


def test_the_signer_attaches_only_an_exact_unexpired_match(w, tmp_path):
    (tmp_path / "other-args.jwt").write_text(approval(w, {"env": "staging"}))
    (tmp_path / "short.jwt").write_text(approval(w, {"env": "prod"}, ttl=30))
    (tmp_path / "junk.jwt").write_text("not a token")
    signer = CallSigner(w.bot, server="files", grant=w.grant, clock=w.clock, approvals=tmp_path)
    w.clock.advance(60)  # the only approval for these arguments has expired: none is attached
    refused(call(w, signer, "deploy", {"env": "prod"}), "approval_required")
    (tmp_path / "fresh.jwt").write_text(approval(w, {"env": "prod"}))  # found at the next call
    assert call(w, signer, "deploy", {"env": "prod"}) == "deployed prod"
    assert w.ran == ["prod"]


def test_an_approval_for_another_audience_is_invalid(w):
    # attached by hand: the signer would not know it is wrong, the guard does
    signer = CallSigner(w.bot, server="files", grant=w.grant, clock=w.clock,
                        approvals=[approval(w, {"env": "prod"}, audience="config-audience")])
    e = refused(call(w, signer, "deploy", {"env": "prod"}), "approval_invalid")
    assert e.data["detail"].startswith("audience")
    assert w.ran == []


def test_an_expired_grant(w):
    signer = CallSigner(w.bot, server="files", grant=w.grant, clock=w.clock)
    assert call(w, signer, "echo", {"text": "before"}) == "before"
    w.clock.advance(3590)  # signed just before the grant's exp, presented well after it
    meta = signer.meta("echo", {"text": "late"})
    w.clock.advance(200)

    async def go():
        async with Client(w.srv) as client:
            try:
                return await client.call_tool("echo", {"text": "late"}, meta=meta)
            except MCPError as e:
                return e

    refused(anyio.run(go), "expired")
    assert w.ran == ["before"]
    last = w.rec.events[-1]  # recorded with the tool's name and the arguments' digest
    assert (last.outcome, last.reason, last.metadata["tool"]) == ("deny", "expired", "echo")
    assert last.metadata["arguments_sha256"] == hashlib.sha256(canonical_json({"text": "late"})).hexdigest()
    # and the signer refuses to sign for an expired grant at all
    from agentctl.errors import VerificationError

    with pytest.raises(VerificationError) as e:
        signer.presentation("echo", {"text": "after"})
    assert e.value.reason == "expired"
