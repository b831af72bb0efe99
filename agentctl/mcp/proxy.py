"""The stdio proxies' plumbing (SPEC, "MCP"): run COMMAND, pass the client's lines through a filter to
it, its output back unchanged, forward signals, and end with COMMAND's status.

One thread reads the client, one copies the server's output (showing each line first to the filter's
``from_server``, if it has one); both write whole lines to the client under one lock. The proxy ends when either side closes: the client's end of input closes COMMAND's
input (COMMAND is stopped if it does not exit within a grace period); COMMAND's exit ends the proxy.
An audit append that fails (``OperationalError`` from the filter) stops COMMAND and ends with 3.

The proxies keep their audit log open for their whole life (:class:`HeldRecorder`): each decision is
still durable (committed, fsync) before the call is forwarded, and the log is closed once, when the
proxy ends (``close=``), whichever side closed first or a signal ended COMMAND.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any, BinaryIO, Callable

from ..errors import Error, OperationalError, UsageError

__all__ = ["run_proxy", "FORWARDED_SIGNALS", "HeldRecorder"]

FORWARDED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2") if hasattr(signal, n))
_MAX_LINE = 64 * 1024 * 1024
GRACE = 5.0  # seconds COMMAND has to exit after its input closed, before it is stopped

Filter = Callable[[bytes], "tuple[bytes | None, bytes | None]"]


class HeldRecorder:
    """A recorder (a ``HomeRecorder(ctx, hold=True)``) held open for the life of a proxy: one record
    at a time, whichever thread records (the client's reader, the server's copier); after
    :meth:`close` it refuses to record (the proxy is ending, nothing more is forwarded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.enabled = getattr(inner, "enabled", True)
        self.closed = False
        self._lock = threading.Lock()

    def record(self, *events: Any) -> None:
        with self._lock:
            if self.closed:
                raise OperationalError("the proxy is ending: nothing more is decided")
            self.inner.record(*events)

    def close(self) -> None:
        """Close the log (once; waits for a record under way)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()


def run_proxy(command: list[str], filt: Filter, *, stdin: BinaryIO, stdout: BinaryIO,
              notify: Callable[[str], None], grace: float = GRACE, close: Callable[[], None] | None = None) -> int:
    """Run ``command`` between ``stdin``/``stdout`` (the client) and return the exit status SPEC gives.
    ``close`` (the held audit log's) runs once when the proxy ends, also when starting COMMAND fails."""
    try:
        return _run(command, filt, stdin=stdin, stdout=stdout, notify=notify, grace=grace, close=close)
    finally:
        if close is not None:
            close()


def _run(command: list[str], filt: Filter, *, stdin: BinaryIO, stdout: BinaryIO, notify: Callable[[str], None],
         grace: float, close: Callable[[], None] | None) -> int:
    if not command:
        raise UsageError("no command to run: give it after --", hint="agentctl mcp guard --name files -- python server.py")
    try:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    except FileNotFoundError:
        raise UsageError(f"command not found: {command[0]}") from None
    except OSError as e:
        raise OperationalError(f"cannot run {command[0]}: {e.strerror or e}") from None
    out_lock = threading.Lock()
    failed: list[Error] = []
    client_gone = threading.Event()  # either side has closed
    ending = threading.Event()  # the proxy is ending: a refusal of the closed log is no failure

    def to_client(data: bytes) -> bool:
        with out_lock:
            try:
                stdout.write(data)
                stdout.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                client_gone.set()
                _close_input(child)
                return False

    lines = _lines(stdin)

    def client_loop() -> None:
        try:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    forward, reply = filt(line if line.endswith(b"\n") else line + b"\n")
                except Error as e:  # the audit log failed: stop here, no decision goes unrecorded
                    if not ending.is_set():
                        failed.append(e)
                        _stop(child, grace=0)
                    return
                if reply is not None and not to_client(reply):
                    return
                if forward is not None:
                    try:
                        child.stdin.write(forward)  # type: ignore[union-attr]
                        child.stdin.flush()  # type: ignore[union-attr]
                    except (BrokenPipeError, OSError, ValueError):
                        return  # the server is gone; its exit ends the proxy
        except (OSError, ValueError):
            pass
        finally:
            client_gone.set()
            _close_input(child)

    observe = getattr(filt, "from_server", None)  # the guard settles held approvals on the answers

    def server_loop() -> None:
        assert child.stdout is not None
        while True:
            line = child.stdout.readline(_MAX_LINE)
            if not line:
                return
            if observe is not None:
                observe(line)
            if not to_client(line):
                # the client is gone: drain, so the server never blocks on a full pipe
                while child.stdout.read(65536):
                    pass
                return

    previous = {}

    def forward_signal(signum, _frame) -> None:
        try:
            child.send_signal(signum)
        except (ProcessLookupError, OSError):
            pass

    if threading.current_thread() is threading.main_thread():
        for s in FORWARDED_SIGNALS:
            try:
                previous[s] = signal.signal(s, forward_signal)
            except (OSError, ValueError):
                pass
    reader = threading.Thread(target=client_loop, name="mcp-client", daemon=True)
    copier = threading.Thread(target=server_loop, name="mcp-server", daemon=True)

    def wait_child() -> None:
        child.wait()
        client_gone.set()

    waiter = threading.Thread(target=wait_child, name="mcp-wait", daemon=True)
    try:
        reader.start()
        copier.start()
        waiter.start()
        client_gone.wait()  # set by the reader at the client's end, and by the waiter at COMMAND's
        if child.poll() is None and not failed:
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                notify(f"{command[0]} did not exit after its input closed: stopping it")
                _stop(child, grace)
        status = child.wait()
        copier.join()
        ending.set()
        if close is not None:
            close()  # under the recorder's lock: a decision under way is recorded first, none after
    finally:
        for s, h in previous.items():
            try:
                signal.signal(s, h)
            except (OSError, ValueError):
                pass
    if failed:
        raise failed[0] if failed[0].exit_code == 3 else OperationalError(failed[0].message)
    return 128 - status if status < 0 else status


def _lines(stdin: BinaryIO):
    """The client's lines, read from its file descriptor with ``os.read``: a thread blocked in a
    buffered reader at interpreter exit aborts the process, one blocked in ``os.read`` does not."""
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):
        yield from iter(lambda: stdin.readline(_MAX_LINE), b"")
        return
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            if buf:
                yield buf
            return
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > _MAX_LINE:  # a line this long is never a message: pass it on cut, to be refused
                    yield buf[:_MAX_LINE]
                    buf = b""
                break
            yield buf[: i + 1]
            buf = buf[i + 1 :]


def _close_input(child: subprocess.Popen) -> None:
    try:
        if child.stdin is not None:
            child.stdin.close()
    except (OSError, ValueError):
        pass


def _stop(child: subprocess.Popen, grace: float) -> None:
    _close_input(child)
    if child.poll() is not None:
        return
    try:
        child.terminate()
        child.wait(grace or 2.0)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    except OSError:
        pass
