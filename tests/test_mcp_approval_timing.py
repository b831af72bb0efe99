"""When an approval an MCP call carries is used up (SPEC, "MCP": only when the guard forwards the
server's final result for that tool and argument digest), with the library guard on a real SDK server
in-process and with the stdio guard's filter: held while the call runs (a second call carrying it is
``replayed``, so of two concurrent calls only one runs), used up by the final result, given back by a
server error or an ``input_required`` interim result. And the SDK guard decides off the event loop
when its writes block."""

from __future__ import annotations

import dataclasses
import json
import os
import threading

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
from agentctl.mcp.wire import GuardFilter  # noqa: E402
from agentctl.seen import MemorySeenStore  # noqa: E402

T0 = 1_800_000_000
WAIT = 20  # seconds a test waits for another thread before it fails (never reached when the code is right)


class W:
    pass


def world(recorder=None, **guard_kw):
    w = W()
    w.clock = FixedClock(T0)
    w.alice = signer_from_seed("user:alice", os.urandom(32))
    w.bot = signer_from_seed("agent:bot", os.urandom(32))
    w.carol = signer_from_seed("user:carol", os.urandom(32))
    w.grant, _ = delegate_with(w.alice, to="agent:bot", to_public=w.bot.public, scopes=["mcp.call:files/*"], ttl=3600,
                               clock=w.clock)
    rules = ApprovalRules("mcp:files", require=("mcp.call:files/deploy",), approvers=("user:carol",))
    w.rec = recorder if recorder is not None else MemoryRecorder()
    w.seen = MemorySeenStore()
    w.guard = Guard(StaticTrust({"user:alice": w.alice.public, "user:carol": w.carol.public}), server="files",
                    recorder=w.rec, clock=w.clock, approvals=rules, seen=w.seen, **guard_kw)
    req = request_with(w.bot, action=ACTION, resource="files/deploy", audience="mcp:files", grant=w.grant,
                       data=canonical_json({"env": "prod"}), clock=w.clock)
    w.approval = approve_with(w.carol, req, ttl=600, clock=w.clock)
    w.signer = CallSigner(w.bot, server="files", grant=w.grant, clock=w.clock, approvals=[w.approval])
    w.ran, w.mode = [], ["ok"]
    w.srv = MCPServer("x", middleware=[w.guard])

    @w.srv.tool()
    async def deploy(env: str) -> str:
        w.ran.append(env)
        mode = w.mode.pop(0) if len(w.mode) > 1 else w.mode[0]
        if mode == "fail":
            raise MCPError(-32000, "busy, try again")
        if mode == "block":
            w.started.set()
            await w.go.wait()
        return f"deployed {env}"

    return w


async def deploy(w, client):
    try:
        return (await w.signer.call_tool(client, "deploy", {"env": "prod"})).content[0].text
    except MCPError as e:
        return e


def reason(r):
    assert isinstance(r, MCPError) and r.code == DENIED, r
    return r.data["reason"]


def test_two_concurrent_calls_with_one_approval_one_runs_and_the_final_result_uses_it_up():
    w = world()
    w.mode = ["block", "ok"]

    async def go():
        w.started, w.go = anyio.Event(), anyio.Event()
        out = {}
        async with Client(w.srv) as client:
            async with anyio.create_task_group() as tg:
                async def first():
                    out["first"] = await deploy(w, client)

                tg.start_soon(first)
                await w.started.wait()  # the first call runs: its approval is held
                out["second"] = await deploy(w, client)  # a fresh action token, the same approval
                w.go.set()
            out["third"] = await deploy(w, client)  # after the final result: used up
        return out

    out = anyio.run(go)
    assert out["first"] == "deployed prod"
    assert reason(out["second"]) == "replayed" and "approval" in out["second"].data["detail"]
    assert reason(out["third"]) == "replayed"
    assert w.ran == ["prod"]  # only one call ever ran


def test_a_server_error_gives_the_approval_back_to_a_fresh_token():
    w = world()
    w.mode = ["fail", "ok"]

    async def go():
        async with Client(w.srv) as client:
            return [await deploy(w, client) for _ in range(3)]

    first, second, third = anyio.run(go)
    assert isinstance(first, MCPError) and first.code == -32000  # the server's error, passed on
    assert second == "deployed prod"  # the same approval, a new action token: it was not used
    assert reason(third) == "replayed"
    assert w.ran == ["prod", "prod"]
    # the action tokens were each used once, whatever the server answered
    allowed = [e for e in w.rec.events if e.outcome == "allow"]
    assert len(allowed) == 2 and len({e.jtis for e in allowed}) == 2


@dataclasses.dataclass(frozen=True)
class Ctx:  # what the SDK hands a server middleware, as far as the guard reads it
    method: str
    params: dict
    request_id: int = 1
    meta: dict | None = None


def test_an_input_required_answer_gives_the_approval_back_for_the_retry():
    w = world()
    answers = [{"resultType": "input_required", "requestState": "s1"}, {"content": [], "resultType": "complete"}]
    calls = []

    async def server(ctx):
        calls.append(ctx.params)
        return answers.pop(0)

    def ctx():
        return Ctx("tools/call", {"name": "deploy", "arguments": {"env": "prod"}, "_meta": w.signer.meta("deploy", {"env": "prod"})})

    async def go():
        interim = await w.guard(ctx(), server)
        retried = await w.guard(ctx(), server)  # MCP's multi-round-trip retry: a fresh action token
        try:
            await w.guard(ctx(), server)
        except MCPError as e:
            return interim, retried, e

    interim, retried, e = anyio.run(go)
    assert interim["resultType"] == "input_required" and retried["resultType"] == "complete"
    assert reason(e) == "replayed" and len(calls) == 2


def test_an_error_returned_by_a_later_middleware_gives_the_approval_back():
    from mcp_types import ErrorData

    w = world()
    answers = [ErrorData(code=-32000, message="busy"), {"content": []}]

    async def server(ctx):
        return answers.pop(0)

    def ctx():
        return Ctx("tools/call", {"name": "deploy", "arguments": {"env": "prod"}, "_meta": w.signer.meta("deploy", {"env": "prod"})})

    async def go():
        first = await w.guard(ctx(), server)
        second = await w.guard(ctx(), server)  # the approval was given back: it may run
        try:
            await w.guard(ctx(), server)
        except MCPError as e:
            return first, second, e

    first, second, e = anyio.run(go)
    assert isinstance(first, ErrorData) and second == {"content": []} and reason(e) == "replayed"


def test_the_stdio_guard_settles_an_approval_on_the_servers_answer():
    w = world()
    filt = GuardFilter(w.guard, MemoryRecorder())

    def call(id_):
        msg = {"jsonrpc": "2.0", "id": id_, "method": "tools/call",
               "params": {"name": "deploy", "arguments": {"env": "prod"}, "_meta": w.signer.meta("deploy", {"env": "prod"})}}
        forward, reply = filt(json.dumps(msg).encode() + b"\n")
        return forward is not None, json.loads(reply)["error"]["data"]["reason"] if reply else None

    def answer(doc):
        filt.from_server(json.dumps({"jsonrpc": "2.0", **doc}).encode() + b"\n")

    assert call(1) == (True, None)
    assert call(2) == (False, "replayed")  # held while call 1 runs
    answer({"method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}})
    answer({"id": 7, "method": "sampling/createMessage", "params": {}})  # the server's own request, id aside
    answer({"id": "1", "result": {}})  # another id (a string): not call 1's answer
    assert call(3) == (False, "replayed")
    answer({"id": 1, "error": {"code": -32000, "message": "busy"}})  # the server failed: given back
    assert call(4) == (True, None)
    answer({"id": 4, "result": {"resultType": "input_required", "requestState": "s"}})  # interim: given back
    assert call(5) == (True, None)
    answer({"id": 5, "result": {"content": [], "isError": True}})  # a final result (the tool ran): used up
    assert filt.held == {}
    assert call(6) == (False, "replayed")
    # each give-back is in the audit log: why one approval appears in several allowed calls
    released = [e for e in w.rec.events if e.event == "mcp.release"]
    assert [e.metadata["answer"] for e in released] == ["error", "input_required"]
    assert released[0].metadata["approval"]["by"] == "user:carol" and released[0].resource == "files/deploy"
    assert released[0].metadata["arguments_sha256"] == __import__("hashlib").sha256(canonical_json({"env": "prod"})).hexdigest()


def test_a_held_approval_is_refused_by_another_guard_sharing_the_seen_store():
    w = world()
    other = GuardFilter(Guard(StaticTrust({"user:alice": w.alice.public, "user:carol": w.carol.public}), server="files",
                              recorder=MemoryRecorder(), clock=w.clock, seen=w.seen,
                              approvals=ApprovalRules("mcp:files", require=("mcp.call:files/deploy",), approvers=("user:carol",))),
                        MemoryRecorder())
    mine = GuardFilter(w.guard, MemoryRecorder())

    def call(filt, id_):
        msg = {"jsonrpc": "2.0", "id": id_, "method": "tools/call",
               "params": {"name": "deploy", "arguments": {"env": "prod"}, "_meta": w.signer.meta("deploy", {"env": "prod"})}}
        forward, reply = filt(json.dumps(msg).encode() + b"\n")
        return forward is not None, json.loads(reply)["error"]["data"]["reason"] if reply else None

    assert call(mine, 1) == (True, None)
    assert call(other, 1) == (False, "replayed")  # held by the first guard while its call runs
    mine.from_server(b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"busy"}}\n')
    assert call(other, 2) == (True, None)  # given back: the other guard's call may now use it


class SlowRecorder:
    """A recorder whose append blocks until the test lets it go (an audit log on a slow disk)."""

    def __init__(self) -> None:
        self.entered, self.release, self.events = threading.Event(), threading.Event(), []

    def record(self, *events) -> None:
        self.entered.set()
        assert self.release.wait(WAIT), "never released"
        self.events.extend(events)


def test_the_sdk_guard_keeps_the_event_loop_running_while_a_decision_is_recorded():
    rec = SlowRecorder()
    w = world(recorder=rec)
    assert w.guard.offload  # a recorder not known to be in memory: decided in a worker thread

    async def go():
        out = {}
        async with Client(w.srv) as client:
            async with anyio.create_task_group() as tg:
                async def call():
                    out["call"] = await deploy(w, client)

                tg.start_soon(call)
                # the append blocks in its thread; this task still runs on the loop meanwhile
                entered = await anyio.to_thread.run_sync(rec.entered.wait, WAIT)
                out["ran_before_recorded"] = list(w.ran)
                out["loop_ran"] = entered
                rec.release.set()
        return out

    out = anyio.run(go)
    assert out["loop_ran"] is True
    assert out["ran_before_recorded"] == []  # the tool waits for its decision to be recorded
    assert out["call"] == "deployed prod" and w.ran == ["prod"]
    assert [e.outcome for e in rec.events] == ["allow"] and rec.events[0].metadata["tool"] == "deploy"


def test_in_memory_writes_are_decided_on_the_loop():
    assert not world().guard.offload
    assert world(offload=True).guard.offload
