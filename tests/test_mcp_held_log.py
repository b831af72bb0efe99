"""The MCP proxies and a home guard hold their audit log open for their life: one connection records
every decision, each decision is committed before the server sees the call, and the log is closed
cleanly when the proxy ends (the client leaves, COMMAND exits, a signal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

AGENTCTL = str(Path(sys.executable).parent / "agentctl")

# A server that answers each tools/call with the audit log's size when the call reached it.
SPY = r'''
import json, sys
from pathlib import Path
from agentctl.audit.log import AuditLog
path = Path(sys.argv[1])
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("method") != "tools/call":
        continue
    log = AuditLog.open_existing(path)
    try:
        size = log.size
    finally:
        log.close()
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": [], "size": size}}), flush=True)
'''


def _call(id_, meta=None):
    params = {"name": "echo", "arguments": {"text": f"call {id_}"}}
    if meta is not None:
        params["_meta"] = meta
    return (json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params}) + "\n").encode()


def _size(home: Path) -> int:
    from agentctl.audit.log import AuditLog

    if not (home / "audit.db").exists():
        return 0
    log = AuditLog.open_existing(home / "audit.db")
    try:
        return log.size
    finally:
        log.close()


def _log_fds(pid: int, home: Path) -> list[str]:
    """The file descriptors of ``pid`` open on the audit database itself."""
    fds = Path(f"/proc/{pid}/fd")
    if not fds.is_dir():
        pytest.skip("no /proc fd list here")
    db = str((home / "audit.db").resolve())
    out = []
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == db:
                out.append(fd.name)
        except OSError:
            continue
    return out


def _children(pid: int) -> list[int]:
    p = Path(f"/proc/{pid}/task/{pid}/children")
    if not p.exists():
        pytest.skip("no /proc children list here")
    return [int(x) for x in p.read_text().split()]


@pytest.fixture
def world(tmp_path, home):
    env = os.environ.copy()
    env["AGENTCTL_HOME"] = str(home)
    for args in (("keygen", "user:alice"), ("keygen", "agent:bot"),
                 ("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "mcp.call:files/*", "-o", str(tmp_path / "bot.grant"))):
        r = subprocess.run([AGENTCTL, *args], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    (tmp_path / "spy.py").write_text(SPY)
    return tmp_path, home, env


@pytest.mark.subprocess
def test_both_proxies_hold_one_log_connection_and_record_before_forwarding(world):
    tmp_path, home, env = world
    spy = [sys.executable, str(tmp_path / "spy.py"), str(home / "audit.db")]
    p = subprocess.Popen([AGENTCTL, "mcp", "sign", "--as", "agent:bot", "--grant", str(tmp_path / "bot.grant"), "--server", "files",
                          "--", AGENTCTL, "mcp", "guard", "--name", "files", "--", *spy],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    held = None
    for i in range(1, 5):
        before = _size(home)
        p.stdin.write(_call(i))
        p.stdin.flush()
        answer = json.loads(p.stdout.readline() or p.stderr.read())
        assert answer["id"] == i
        # the sign event and the guard's decision were both committed when the server got the call
        assert answer["result"]["size"] >= before + 2
        guard_pid, = _children(p.pid)
        fds = (tuple(_log_fds(p.pid, home)), tuple(_log_fds(guard_pid, home)))
        # between calls each proxy still holds its one connection, the same one every time
        assert len(fds[0]) == 1 and len(fds[1]) == 1
        assert held is None or fds == held
        held = fds
    assert _size(home) >= 8
    p.stdin.close()
    assert p.wait(timeout=60) == 0
    # both closed their connection: the last one to close folded the WAL back and removed it
    assert not (home / "audit.db-wal").exists()


@pytest.mark.subprocess
def test_a_signal_ends_the_guard_and_closes_its_log(world):
    from agentctl import Context, sign_action
    from agentctl.encoding import canonical_json

    tmp_path, home, env = world
    ctx = Context.for_home(home)
    grant = (tmp_path / "bot.grant").read_text().strip()
    token = sign_action(ctx, as_="agent:bot", action="mcp.call", resource="files/echo", grant=grant,
                        data=canonical_json({"text": "call 1"}), audience="mcp:files")
    p = subprocess.Popen([AGENTCTL, "mcp", "guard", "--name", "files", "--", sys.executable, str(tmp_path / "spy.py"), str(home / "audit.db")],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(_call(1, {"dev.agentctl/presentation": token}))
    p.stdin.flush()
    assert "result" in json.loads(p.stdout.readline())
    assert len(_log_fds(p.pid, home)) == 1
    spy_pid, = _children(p.pid)
    p.send_signal(signal.SIGTERM)  # forwarded: the server dies of it, the proxy ends with 128 + 15
    assert p.wait(timeout=60) == 128 + signal.SIGTERM
    assert not (home / "audit.db-wal").exists()
    assert not Path(f"/proc/{spy_pid}").exists()  # reaped, no zombie


def test_the_guard_proxy_opens_its_log_once_for_every_decision(world):
    """In process: run_proxy with the guard's filter on a real server process, counting log opens."""
    from agentctl import Context, sign_action
    from agentctl.encoding import canonical_json
    from agentctl.mcp import Guard
    from agentctl.mcp.proxy import HeldRecorder, run_proxy
    from agentctl.mcp.wire import GuardFilter
    from agentctl.recording import HomeRecorder
    from agentctl.seen import HomeSeenStore
    from agentctl.store import Store
    from agentctl.verify import StoreTrust

    tmp_path, home, env = world

    class Counting(HomeRecorder):
        opens = 0

        def _open(self):
            if self.log is None:
                Counting.opens += 1
            return super()._open()

    ctx = Context.for_home(home)
    grant = (tmp_path / "bot.grant").read_text().strip()
    lines = []
    for i in range(1, 4):
        token = sign_action(ctx, as_="agent:bot", action="mcp.call", resource="files/echo", grant=grant,
                            data=canonical_json({"text": f"call {i}"}), audience="mcp:files")
        lines.append(_call(i, {"dev.agentctl/presentation": token}))
    lines += [_call(9), b"[1, 2]\n"]  # refused: unsigned, and a batch
    start = _size(home)
    inner = Counting(ctx, hold=True)
    rec = HeldRecorder(inner)
    guard = Guard(StoreTrust(Store(ctx.home)), server="files", recorder=rec, seen=HomeSeenStore(ctx.home), clock=ctx.clock)
    r, w = os.pipe()
    os.write(w, b"".join(lines))
    os.close(w)
    out = tmp_path / "out"
    with open(r, "rb") as stdin, open(out, "wb") as stdout:
        status = run_proxy([sys.executable, str(tmp_path / "spy.py"), str(home / "audit.db")], GuardFilter(guard, rec),
                           stdin=stdin, stdout=stdout, notify=lambda _: None, close=rec.close)
    assert status == 0
    answers = [json.loads(line) for line in out.read_bytes().splitlines()]
    results = {a["id"]: a["result"]["size"] for a in answers if "result" in a}
    assert sorted(results) == [1, 2, 3]
    assert all(results[i] >= start + i for i in results)  # decision i was committed before the server saw call i
    assert [a["error"]["code"] for a in answers if "error" in a] == [-31001, -32600]
    assert _size(home) >= start + 5  # three allowed, two refused: every decision recorded
    assert Counting.opens == 1  # one connection for the proxy's life
    assert inner.log is None and rec.closed  # closed when the proxy ended
    with pytest.raises(Exception, match="proxy is ending"):
        rec.record()


def test_a_home_guard_holds_its_log_until_closed(world):
    from agentctl import Context, sign_action
    from agentctl.encoding import canonical_json
    from agentctl.home import Home
    from agentctl.mcp import Guard

    tmp_path, home, env = world
    ctx = Context.for_home(home)
    grant = (tmp_path / "bot.grant").read_text().strip()
    g = Guard.for_home(Home.resolve(str(home), env), server="files")
    logs = []
    for i in range(2):
        args = {"text": f"call {i}"}
        token = sign_action(ctx, as_="agent:bot", action="mcp.call", resource="files/echo", grant=grant,
                            data=canonical_json(args), audience="mcp:files")
        assert g.check("echo", args, {"dev.agentctl/presentation": token}).tool == "echo"
        logs.append(g.recorder.log)
    assert logs[0] is not None and logs[0] is logs[1]  # the same connection for both decisions
    g.close()
    assert g.recorder.log is None
