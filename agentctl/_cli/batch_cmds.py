"""``agentctl verify --batch``: one presentation or JSON request a line on stdin, one verdict a line on
stdout, in order; a bad line is its own verdict and the batch goes on."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections import deque
from typing import Any

from ..errors import UsageError, VerificationError
from .action_cmds import _list_refused, _VerifyRun
from .common import State, guarded
from .output import Output
from .params import flag_check


#: Verdicts recorded (one audit transaction) and then printed together; lines checked at once, at most.
CHUNK = 1000
WORKERS = 2
_WINDOW = 256

#: The longest --batch line read (a presentation of 64 KiB with an inline payload fits many times over).
MAX_BATCH_LINE = 8 * 1024 * 1024


def _bounded_lines(stream, limit: int = MAX_BATCH_LINE):
    """The lines of ``stream``, each read up to ``limit`` bytes: a longer line is yielded as None and
    the rest of it is skipped in chunks, so an endless line (``/dev/zero``) costs bounded memory."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):  # skip the rest of an overlong line
            line = stream.readline(1024 * 1024)
        yield None


_BATCH_KEYS = frozenset({"token", "action", "resource", "data", "data_b64", "context"})
#: Keys a line may not hold: the verifier's flags hold for every line, and a line may not change them.
_VERIFIER_KEYS = ("audience", "expect", "policy", "once")


def _batch_line(raw: bytes, lineno: int, action, resource, context_flag: bool = False):
    """One line of --batch: (token, action, resource, payload, context). A line that is not UTF-8, not
    JSON, or that tries to set what the verifier's flags hold (a ``context`` too, when --context is
    given), is ``malformed`` (its own verdict)."""
    from ..encoding import EncodingError, b64u_decode, loads_strict

    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise VerificationError("malformed", f"line {lineno}: not UTF-8") from None
    if not line.startswith("{"):
        return line, action, resource, None, None
    try:
        req = loads_strict(line)
        if not isinstance(req, dict):
            raise TypeError
    except (EncodingError, TypeError, ValueError, UnicodeError):
        raise VerificationError("malformed", f"line {lineno}: not JSON (a token or a {{\"token\": …}} object)") from None
    held = [k for k in _VERIFIER_KEYS if k in req]
    if held:
        raise VerificationError("malformed", f"line {lineno}: a line cannot set {', '.join(held)}: the verifier's flags hold for every line")
    context = None
    if "context" in req:
        if context_flag:
            raise VerificationError("malformed", f"line {lineno}: a line cannot set context when --context is given")
        try:
            from ..policy.input import check_context

            context = check_context(req["context"])
        except UsageError as e:
            raise VerificationError("malformed", f"line {lineno}: {e.message}") from None
    try:
        if set(req) - _BATCH_KEYS or ("data" in req and "data_b64" in req):
            raise KeyError  # a misspelt key would drop a check: refuse it
        token = req["token"]
        # a line may add or change a check, never drop one: null means "as the flag says"
        a = req["action"] if req.get("action") is not None else action
        r = req["resource"] if req.get("resource") is not None else resource
        payload = None
        if "data" in req:
            payload = req["data"].encode("utf-8")
        elif "data_b64" in req:
            payload = b64u_decode(req["data_b64"])
        if not all(isinstance(x, (str, type(None))) for x in (token, a, r)) or not isinstance(token, str):
            raise TypeError
    except (EncodingError, KeyError, TypeError, AttributeError, UnicodeError):
        raise VerificationError("malformed", f"line {lineno}: not a token nor a {{\"token\": …}} object") from None
    return token, a, r, payload, context


def do_batch(state: State, out: Output, source, action, resource, audience, data, revocations, at, leeway, once, expect,
           policies=(), query=None, context=None) -> int:
    def body() -> int:
        from ..actions import check_action_name, check_resource
        from ..verify import denial_doc, verdict_event

        if source not in (None, "-"):
            raise UsageError("--batch reads stdin; give no token argument (or -)")
        if data is not None:
            raise UsageError("--data does not go with --batch; put \"data\" in each JSON line")
        if revocations == "-":
            raise UsageError("--batch and --revocations cannot both read stdin; give --revocations a file")
        if context == "-":
            raise UsageError("--batch and --context cannot both read stdin; give --context a file")
        if query is not None and not policies:
            raise UsageError("--query goes with --policy: it names the rule each --policy file is asked",
                             hint="set [policy] query in config.toml for the configured policy")
        if action is not None:  # the verifier's own flags: a usage error, not a verdict on every line
            flag_check(check_action_name, action, "action")
        if resource is not None:
            flag_check(check_resource, resource, "resource")
        try:
            run = _VerifyRun(state, out, audience, revocations, at, leeway, once, expect, batch=True, policies=policies,
                             query=query, context=context)
        except VerificationError as e:
            _list_refused(state, out, e, action, resource)
            return 1
        all_ok, count = True, 0
        buffer = run.buffer
        write = out.stdout.write
        pending: list[str] = []
        lines_in = _LineEvents(run)

        def flush() -> None:  # record a chunk of verdicts (one transaction, its fsync) before any of them is printed
            buffer.flush()
            write("".join(pending))
            pending.clear()

        def checked(lineno: int, token, a, r, payload, line_context):
            """One line's (doc, ok, events), on a worker thread."""
            with lines_in.line(lineno) as events:
                try:
                    return run.check(token, a, r, payload, line_context), True, events
                except VerificationError as e:
                    return e.verdict, False, events  # type: ignore[attr-defined]
                except UsageError as e:  # a line's own action or resource is bad: that line is malformed
                    doc = denial_doc(VerificationError("malformed", e.message), None, action=a, resource=r)
                    events.append(verdict_event(doc, token))
                    return doc, False, events

        def emit(lineno: int, doc: dict, ok: bool, events: list) -> None:
            nonlocal all_ok
            all_ok = all_ok and ok
            buffer.events.extend(events)
            doc["line"] = lineno
            pending.append(json.dumps(doc, separators=(",", ":")) + "\n")
            if len(pending) >= CHUNK:
                flush()

        stdin = getattr(sys.stdin, "buffer", None)  # bytes: a line that is not UTF-8 is that line's verdict
        lines = _bounded_lines(stdin) if stdin is not None else (x.encode("utf-8", "surrogateescape") for x in sys.stdin)
        # policy engines are not known to be safe on several threads: with policies, lines are checked one by one
        with _Workers(WORKERS if not run.verifier.policies else 1) as workers:
            for lineno, raw in enumerate(lines, 1):
                if raw is not None and not raw.strip():
                    lines_in.skip(lineno)
                    continue
                count += 1
                a, r = action, resource
                try:
                    if raw is None:  # read no further than the limit: the rest of the line is skipped unread
                        raise VerificationError("malformed", f"line {lineno}: longer than {MAX_BATCH_LINE // (1024 * 1024)} MiB")
                    token, a, r, payload, line_context = _batch_line(raw, lineno, action, resource, context is not None)
                except VerificationError as e:  # a line the verifier never saw: recorded here
                    lines_in.skip(lineno)
                    doc = denial_doc(e, None, action=a, resource=r)
                    workers.done(lineno, (doc, False, [verdict_event(doc)]))
                else:
                    workers.submit(lineno, checked, lineno, token, a, r, payload, line_context)
                for item in workers.ready():
                    emit(*item)
            for item in workers.drain():
                emit(*item)
        flush()
        out.stdout.flush()
        if count == 0:
            out.note("no tokens on stdin")
            return 1
        if not all_ok:
            out.note("denied: at least one line did not verify (see its verdict)")
        return 0 if all_ok else 1

    return guarded(out, body)


class _LineEvents:
    """The audit events of each line, kept apart while lines are checked on several threads (so the
    log gets them in input order), and the seen-store (``--once``, approvals) asked in input order: a
    line's ``remember`` waits until every earlier line is finished, so the second of two lines with
    one ``jti`` is the one refused as replayed, however the threads run."""

    def __init__(self, run) -> None:
        self._local = threading.local()
        self._cond = threading.Condition()
        self._finished: set[int] = set()
        self._low = 1  # every line below this one is finished
        verifier = run.verifier
        self.recorder = run.buffer
        verifier.recorder = self
        self.enabled = getattr(run.buffer, "enabled", True)
        if verifier.seen is not None:
            verifier.seen = _InOrder(verifier.seen, self)

    def record(self, *events) -> None:
        self._local.events.extend(events)

    @contextlib.contextmanager
    def line(self, lineno: int):
        """While line ``lineno`` is checked on this thread: its events go to the list yielded."""
        events: list = []
        self._local.events, self._local.lineno = events, lineno
        try:
            yield events
        finally:
            self._local.events = self._local.lineno = None
            self.skip(lineno)

    def skip(self, lineno: int) -> None:
        """Line ``lineno`` is finished (or was never checked)."""
        with self._cond:
            self._finished.add(lineno)
            while self._low in self._finished:
                self._finished.discard(self._low)
                self._low += 1
            self._cond.notify_all()

    def wait_turn(self) -> None:
        lineno = getattr(self._local, "lineno", None)
        if lineno is None:
            return
        with self._cond:
            self._cond.wait_for(lambda: self._low >= lineno)


class _InOrder:
    """A seen-store whose ``remember`` runs in input order (see :class:`_LineEvents`)."""

    def __init__(self, inner, lines: _LineEvents) -> None:
        self._inner = inner
        self._lines = lines

    def remember(self, issuer: str, jti: str, exp: float, now: float) -> None:
        self._lines.wait_turn()
        self._inner.remember(issuer, jti, exp, now)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class _Workers:
    """Lines checked on a small thread pool (PyNaCl releases the GIL while it checks a signature, so
    one line's signature is checked while the next lines parse), their results handed back in input
    order. The first line is checked alone, so what a batch's lines share (a grant) is checked once."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: Any = None  # a ThreadPoolExecutor, made at the second line
        self.queue: deque = deque()  # (lineno, future or result), in input order
        self.first = True

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, lineno: int, fn, *args) -> None:
        if self.first or self.workers < 2:  # the first line alone: the grant it shares with the rest is checked once
            self.first = False
            self.queue.append((lineno, fn(*args)))
            return
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="agentctl-batch")
        self.queue.append((lineno, self.pool.submit(fn, *args)))

    def done(self, lineno: int, result) -> None:
        self.queue.append((lineno, result))

    def ready(self):
        """The results at the head of the queue that are finished (all of them once the window is full)."""
        while self.queue:
            lineno, item = self.queue[0]
            if hasattr(item, "result") and not item.done() and len(self.queue) < _WINDOW:
                return
            self.queue.popleft()
            yield (lineno, *(item.result() if hasattr(item, "result") else item))

    def drain(self):
        while self.queue:
            lineno, item = self.queue.popleft()
            yield (lineno, *(item.result() if hasattr(item, "result") else item))
