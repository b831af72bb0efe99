"""The MCP guard and signer in-process, with the real SDK (an MCPServer and a low-level Server), from
the attacker's side: every refusal never runs the tool and comes back as JSON-RPC error -31001."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402
from mcp.client.client import Client  # noqa: E402
from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from agentctl import FixedClock, MemoryRecorder, MemorySeenStore, StaticTrust, delegate_with, sign_action_with, signer_from_seed  # noqa: E402
from agentctl.encoding import canonical_json  # noqa: E402
from agentctl.mcp import DENIED, META_KEY, CallSigner, Guard, current_action  # noqa: E402

T0 = 1_800_000_000


@pytest.fixture
def world():
    clock = FixedClock(T0)
    alice = signer_from_seed("user:alice", os.urandom(32))
    bot = signer_from_seed("agent:bot", os.urandom(32))
    grant, _ = delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["mcp.call:files/*"], clock=clock)
    rec = MemoryRecorder()
    guard = Guard(StaticTrust({"user:alice": alice.public}), server="files", recorder=rec, clock=clock)
    ran: list = []
    srv = MCPServer("not-the-guards-name", middleware=[guard])

    @srv.tool()
    def echo(text: str) -> str:
        call = current_action()
        ran.append((text, call.agent, call.on_behalf_of, call.chain, call.tool))
        return f"{text}!"

    @srv.tool(name="a.b-c_d")
    def odd() -> str:
        ran.append("odd")
        return "ok"

    class W:
        pass

    w = W()
    w.clock, w.alice, w.bot, w.grant, w.rec, w.guard, w.ran, w.srv = clock, alice, bot, grant, rec, guard, ran, srv
    w.signer = CallSigner(bot, server="files", grant=grant, clock=clock)
    return w


def call(w, name, arguments, meta):
    async def go():
        async with Client(w.srv) as client:
            try:
                return await client.call_tool(name, arguments, meta=meta)
            except MCPError as e:  # raised out of the client's task group it would come wrapped
                return e

    r = anyio.run(go)
    if isinstance(r, MCPError):
        raise r
    return r


def denied(w, name, arguments, meta) -> MCPError:
    with pytest.raises(MCPError) as e:
        call(w, name, arguments, meta)
    assert e.value.code == DENIED
    assert e.value.message == f"agentctl: denied: {e.value.data['reason']}: {e.value.data['detail']}"
    assert w.ran == []  # the tool never ran
    return e.value


def test_an_allowed_call_runs_and_the_tool_knows_who_calls(world):
    r = call(world, "echo", {"text": "hi"}, world.signer.meta("echo", {"text": "hi"}))
    assert r.content[0].text == "hi!"
    assert world.ran == [("hi", "agent:bot", "user:alice", ("user:alice", "agent:bot"), "echo")]
    ev = world.rec.events[-1]
    assert (ev.outcome, ev.action, ev.resource) == ("allow", "mcp.call", "files/echo")
    assert ev.metadata["tool"] == "echo"
    assert ev.metadata["arguments_sha256"] == __import__("hashlib").sha256(canonical_json({"text": "hi"})).hexdigest()
    assert current_action() is None  # only inside the call


def test_a_tool_name_with_dots_and_dashes_is_in_the_set(world):
    call(world, "a.b-c_d", None, world.signer.meta("a.b-c_d", None))
    assert world.ran == ["odd"]


def test_an_unsigned_call_is_denied_and_recorded(world):
    e = denied(world, "echo", {"text": "hi"}, None)
    assert e.data["reason"] == "malformed" and "presentation" in e.data["detail"]
    ev = world.rec.events[-1]
    assert (ev.outcome, ev.reason, ev.metadata["tool"]) == ("deny", "malformed", "echo")


def test_tampered_arguments(world):
    e = denied(world, "echo", {"text": "rm -rf /"}, world.signer.meta("echo", {"text": "hi"}))
    assert e.data["reason"] == "payload_mismatch"


def test_a_token_for_another_tool(world):
    e = denied(world, "echo", {"text": "hi"}, world.signer.meta("a.b-c_d", {"text": "hi"}))
    assert e.data["reason"] == "scope_denied"


def test_a_token_for_another_server(world):
    other = CallSigner(world.bot, server="mail", clock=world.clock,
                       grant=delegate_with(world.alice, to="agent:bot", to_public=world.bot.public, scopes=["mcp.call:**"], clock=world.clock)[0])
    e = denied(world, "echo", {"text": "hi"}, other.meta("echo", {"text": "hi"}))
    assert e.data["reason"] in ("scope_denied", "audience_mismatch")


def test_a_token_for_another_audience_or_none(world):
    s = CallSigner(world.bot, server="files", grant=world.grant, audience="mcp:elsewhere", clock=world.clock)
    assert denied(world, "echo", {"text": "hi"}, s.meta("echo", {"text": "hi"})).data["reason"] == "audience_mismatch"
    bare = sign_action_with(world.bot, action="mcp.call", resource="files/echo", grant=world.grant,
                            data=canonical_json({"text": "hi"}), clock=world.clock)
    assert denied(world, "echo", {"text": "hi"}, {META_KEY: bare}).data["reason"] == "audience_mismatch"


def test_a_replayed_call(world):
    meta = world.signer.meta("echo", {"text": "hi"})
    call(world, "echo", {"text": "hi"}, meta)
    world.ran.clear()
    assert denied(world, "echo", {"text": "hi"}, meta).data["reason"] == "replayed"


def test_an_action_from_before_an_in_memory_guard_started_is_refused(world):
    before = FixedClock(T0 - 61)
    grant, _ = delegate_with(world.alice, to="agent:bot", to_public=world.bot.public, scopes=["mcp.call:files/*"], clock=before)
    early = CallSigner(world.bot, server="files", grant=grant, clock=before)
    meta = early.meta("echo", {"text": "hi"})  # valid for 60 s: still within its time
    e = denied(world, "echo", {"text": "hi"}, meta)
    assert e.data["reason"] == "replayed" and "before this guard started" in e.data["detail"]
    # a guard with a shared seen-store has no such floor
    g = Guard(StaticTrust({"user:alice": world.alice.public}), server="files", recorder=MemoryRecorder(),
              clock=world.clock, seen=__import__("agentctl").HomeSeenStore.__new__(__import__("agentctl").HomeSeenStore))
    assert not hasattr(g.verifier.seen, "floor")


def test_a_tool_name_outside_the_set(world):
    bad = "echo tool"
    e = denied(world, bad, {}, {META_KEY: "x.y.z"})
    assert e.data["reason"] == "malformed" and "tool name" in e.data["detail"]


def test_the_signer_refuses_what_the_guard_would(world):
    from agentctl import VerificationError

    for name, args in (("bad/name", {}), ("echo", {"n": 2**60}), ("echo", {"x": float("nan")}), ("echo", {"s": "\ud800"}), ("echo", [1])):
        with pytest.raises(VerificationError) as e:
            world.signer.meta(name, args)
        assert e.value.reason == "malformed"
    for args in ({"n": 2**60}, {"x": float("inf")}, {"s": "\udc00"}):
        with pytest.raises(VerificationError) as e:
            world.guard.check("echo", args, world.signer.meta("echo", {}))
        assert e.value.reason == "malformed"
    assert [ev.reason for ev in world.rec.events[-3:]] == ["malformed"] * 3


def test_a_presentation_never_reaches_a_low_level_server(world):
    import mcp_types as types
    from mcp.server.lowlevel import Server

    seen: list = []

    async def list_tools(ctx, params):
        return types.ListToolsResult(tools=[types.Tool(name="echo", input_schema={"type": "object"})])

    async def call_tool(ctx, params):
        seen.append((dict(params.meta or {}), dict(ctx.meta or {}), dict(ctx.params or {}), current_action().agent))
        return types.CallToolResult(content=[types.TextContent(type="text", text="done")])

    srv = Server("low", on_list_tools=list_tools, on_call_tool=call_tool)
    world.guard.install(srv)
    world.srv = srv
    r = call(world, "echo", {"a": 1}, world.signer.meta("echo", {"a": 1}, {"progressToken": 7}))
    assert r.content[0].text == "done"
    (pmeta, cmeta, raw, agent), = seen
    assert META_KEY not in pmeta and META_KEY not in cmeta and META_KEY not in raw.get("_meta", {})
    assert 7 in (pmeta.get("progressToken"), pmeta.get("progress_token")) and agent == "agent:bot"
    seen.clear()
    with pytest.raises(MCPError) as e:
        call(world, "echo", {"a": 1}, None)
    assert e.value.code == DENIED and seen == []


def test_a_guard_needs_a_recorder_and_a_good_name():
    from agentctl import UsageError

    with pytest.raises(UsageError):
        Guard(StaticTrust({}), server="files")
    with pytest.raises(UsageError):
        Guard(StaticTrust({}), server="a/b", recorder=MemoryRecorder())
    with pytest.raises(UsageError):
        CallSigner(None, server="", grant=None)


def test_seen_store_given_is_used(world):
    store = MemorySeenStore()
    g = Guard(StaticTrust({"user:alice": world.alice.public}), server="files", recorder=MemoryRecorder(), clock=world.clock, seen=store)
    g.check("echo", {}, world.signer.meta("echo", {}))
    assert len(store) == 1
