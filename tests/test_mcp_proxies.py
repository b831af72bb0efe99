"""The two stdio proxies as subprocesses (the installed console script), with a real SDK server and a
real ClientSession: client -> agentctl mcp sign -> agentctl mcp guard -> server. And the guard's line
classification from the attacker's side, byte by byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess
pytest.importorskip("mcp")

AGENTCTL = str(Path(sys.executable).parent / "agentctl")

SERVER = r'''
import os, sys
from mcp.server.mcpserver import MCPServer
srv = MCPServer("stock")
log = os.environ["CALLS"]
@srv.tool()
def echo(text: str) -> str:
    with open(log, "a") as f:
        f.write(text + "\n")
    return text + "!"
srv.run()
'''


@pytest.fixture
def world(tmp_path, home):
    env = os.environ.copy()
    env["AGENTCTL_HOME"] = str(home)
    env["CALLS"] = str(tmp_path / "calls")
    for args in (("keygen", "user:alice"), ("keygen", "agent:bot"),
                 ("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "mcp.call:files/*", "-o", str(tmp_path / "bot.grant"))):
        r = subprocess.run([AGENTCTL, *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    (tmp_path / "server.py").write_text(SERVER)
    return tmp_path, env


def guard_cmd(tmp_path, *extra):
    return [AGENTCTL, "mcp", "guard", "--name", "files", *extra, "--", sys.executable, str(tmp_path / "server.py")]


def calls(tmp_path) -> list[str]:
    p = tmp_path / "calls"
    return p.read_text().splitlines() if p.exists() else []


def test_a_stock_client_and_server_through_both_proxies(world):
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.shared.exceptions import MCPError

    tmp_path, env = world
    sign = ["mcp", "sign", "--as", "agent:bot", "--grant", str(tmp_path / "bot.grant"), "--server", "files", "--"]

    async def go(args):
        params = StdioServerParameters(command=AGENTCTL, args=args, env=env)
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                tools = await s.list_tools()
                try:
                    return [t.name for t in tools.tools], await s.call_tool("echo", {"text": "hi"})
                except MCPError as e:
                    return [t.name for t in tools.tools], e

    names, result = anyio.run(go, [*sign, *guard_cmd(tmp_path)])
    assert names == ["echo"] and result.content[0].text == "hi!"
    assert calls(tmp_path) == ["hi"]
    # the same client straight to the guard: unsigned, refused, the tool never ran
    names, err = anyio.run(go, guard_cmd(tmp_path)[1:])
    assert names == ["echo"] and err.code == -31001 and err.data["reason"] == "malformed"
    assert calls(tmp_path) == ["hi"]


class Raw:
    """The guard proxy driven line by line."""

    def __init__(self, tmp_path, env, *extra):
        self.p = subprocess.Popen(guard_cmd(tmp_path, *extra), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
                   "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        assert self.recv()["id"] == 0
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, msg) -> None:
        self.p.stdin.write(msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n")
        self.p.stdin.flush()

    def recv(self) -> dict:
        line = self.p.stdout.readline()
        assert line, self.p.stderr.read().decode()
        return json.loads(line)

    def close(self) -> int:
        self.p.stdin.close()
        return self.p.wait(timeout=30)


def _call(id_, meta=None, name="echo", arguments=None):
    params = {"name": name, "arguments": {"text": "x"} if arguments is None else arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}


def test_the_guard_refuses_what_it_cannot_classify(world):
    tmp_path, env = world
    g = Raw(tmp_path, env)
    lines = [
        (json.dumps([_call(1)]).encode() + b"\n", -32600),                       # a batch holding a tools/call
        (json.dumps(_call(2)).encode() + b" {}\n", -32600),                        # two values on a line
        (b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","name":"evil"}}\n', -32600),
        (b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","Name":"evil"}}\n', -32600),
        (b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"a":{"k":1,"K":2}}}}\n', -32600),
        (b'{"jsonrpc":"2.0","id":6,"method":"ping"}\xff\n', -32600),               # invalid UTF-8
        (json.dumps({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "file:///etc/passwd"}}).encode() + b"\n", -32601),
        (json.dumps(_call(8)).encode() + b"\n", -31001),                          # unsigned
        (json.dumps(_call(9, name="../echo")).encode() + b"\n", -31001),          # outside the tool-name set
        (b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"n":12345678901234567890}}}\n', -31001),
    ]
    for line, code in lines:
        g.send(line)
        reply = g.recv()
        assert reply["error"]["code"] == code, (line, reply)
    g.send({"jsonrpc": "2.0", "id": 11, "method": "ping"})
    assert g.recv() == {"jsonrpc": "2.0", "id": 11, "result": {}}
    assert g.close() == 0
    assert calls(tmp_path) == []  # nothing ever reached the tool
    r = subprocess.run([AGENTCTL, "--json", "audit", "--limit", "50"], env=env, capture_output=True, text=True, timeout=60)
    refusals = [e for e in json.loads(r.stdout)["events"] if e["outcome"] == "deny"] if r.returncode == 0 else None
    assert refusals is None or len(refusals) >= len(lines)


def test_the_guard_re_serializes_a_verified_call_without_the_presentation(world, tmp_path):
    tmp_path, env = world
    # a server that prints what it receives (as a JSON-RPC notification back) and exits
    spy = tmp_path / "spy.py"
    spy.write_text("import sys\nfor line in sys.stdin:\n    sys.stdout.write(line); sys.stdout.flush()\n")
    from agentctl import Context, sign_action
    from agentctl.encoding import canonical_json

    ctx = Context.for_home(env["AGENTCTL_HOME"])
    grant = (tmp_path / "bot.grant").read_text().strip()
    args = {"text": "hi", "z": [1, 2.5]}
    token = sign_action(ctx, as_="agent:bot", action="mcp.call", resource="files/echo", grant=grant,
                        data=canonical_json(args), audience="mcp:files")
    p = subprocess.Popen([AGENTCTL, "mcp", "guard", "--name", "files", "--", sys.executable, str(spy)], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    msg = {"jsonrpc": "2.0", "id": "a", "method": "tools/call",
           "params": {"arguments": args, "name": "echo", "_meta": {"dev.agentctl/presentation": token, "progressToken": 3}}}
    out, err = p.communicate(json.dumps(msg, indent=None).encode() + b"\n" + json.dumps(msg).encode() + b"\n", timeout=60)
    lines = out.splitlines()  # the guard's own reply may come before the server's echo
    first, = [ln for ln in lines if b'"method"' in ln]
    second, = [ln for ln in lines if b'"error"' in ln]
    assert json.loads(first) == {"jsonrpc": "2.0", "id": "a", "method": "tools/call",
                                 "params": {"arguments": args, "name": "echo", "_meta": {"progressToken": 3}}}
    assert first == canonical_json(json.loads(first))  # written by the guard, canonical
    assert json.loads(second)["error"]["data"]["reason"] == "replayed"
    assert p.returncode == 0


def test_passed_methods_notifications_and_responses(world):
    tmp_path, env = world
    spy = tmp_path / "spy.py"
    spy.write_text("import sys\nfor line in sys.stdin:\n    sys.stdout.write(line); sys.stdout.flush()\n")
    p = subprocess.Popen([AGENTCTL, "mcp", "guard", "--name", "files", "--pass", "resources/read", "--", sys.executable, str(spy)],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = [b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x"}}\n',
             b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}\n',
             b'{"jsonrpc":"2.0","id":"s1","result":{}}\n',
             b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n']
    out, _ = p.communicate(b"".join(lines), timeout=60)
    assert out == b"".join(lines)  # passed byte for byte


def test_exit_status_and_signals(world):
    tmp_path, env = world
    r = subprocess.run([AGENTCTL, "mcp", "guard", "--name", "files", "--", sys.executable, "-c", "import sys; sys.exit(7)"],
                       env=env, capture_output=True, timeout=60)
    assert r.returncode == 7 and r.stdout == b""
    r = subprocess.run([AGENTCTL, "mcp", "guard", "--name", "files", "--", sys.executable, "-c",
                        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], env=env, capture_output=True, timeout=60)
    assert r.returncode == 128 + signal.SIGKILL
    r = subprocess.run([AGENTCTL, "mcp", "guard", "--name", "files", "--", str(tmp_path / "no-such-command")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == "" and "agentctl: error:" in r.stderr
    r = subprocess.run([AGENTCTL, "--json", "mcp", "sign", "--as", "agent:bot", "--server", "a/b", "--", "true"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    # SIGTERM to the proxy reaches COMMAND, whose status the proxy ends with
    child = ("import signal, sys\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
             "print('ready', flush=True)\nsys.stdin.read()\n")
    for cmd in (["mcp", "guard", "--name", "files"], ["mcp", "sign", "--as", "agent:bot", "--server", "files"]):
        p = subprocess.Popen([AGENTCTL, *cmd, "--", sys.executable, "-c", child], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 42


def test_a_client_that_disconnects_ends_the_proxy_and_the_server(world):
    tmp_path, env = world
    spy = tmp_path / "spy.py"
    spy.write_text("import sys\nfor line in sys.stdin:\n    pass\nprint('bye', flush=True)\nsys.exit(5)\n")
    p = subprocess.Popen([AGENTCTL, "mcp", "guard", "--name", "files", "--", sys.executable, str(spy)], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.close()  # the server sees its input end, says so, and its status is the proxy's
    assert p.stdout.read() == b"bye\n"
    assert p.wait(timeout=60) == 5


def test_a_server_that_ignores_the_end_of_its_input_is_stopped(world):
    tmp_path, env = world
    stubborn = "import signal, sys\nprint('ready', flush=True)\nsys.stdin.read()\nsignal.pause()\n"
    p = subprocess.Popen([AGENTCTL, "mcp", "guard", "--name", "files", "--", sys.executable, "-c", stubborn], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    p.stdin.close()
    assert p.wait(timeout=60) == 128 + signal.SIGTERM
    assert b"did not exit after its input closed" in p.stderr.read()


def test_a_server_that_crashes_ends_the_proxy(world):
    tmp_path, env = world
    g = Raw(tmp_path, env)
    g.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert g.recv()["id"] == 1
    os.kill(_child_pid(g.p.pid), signal.SIGKILL)
    assert g.p.wait(timeout=60) == 128 + signal.SIGKILL


def _child_pid(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.exists():
        pytest.skip("no /proc children list here")
    return int(children.read_text().split()[0])
