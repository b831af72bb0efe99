"""``agentctl verify --batch``: one presentation or JSON request a line on stdin, one verdict a line on
stdout, in order; a bad line is its own verdict and the batch goes on."""

from __future__ import annotations

import json
import sys
import threading

from ..errors import UsageError, VerificationError
from .action_cmds import _list_refused, _VerifyRun
from .common import State, guarded
from .output import Output
from .params import flag_check


#: Verdicts recorded (one audit transaction) and then printed together.
CHUNK = 1000
#: Threads checking lines: one. Measured (bench/verify.py --batch-profile): a line holds the GIL for
#: ~120 µs of Python against ~45 µs of signature, so a second checking thread lost CPU and wall time.
WORKERS = 1
#: Record a chunk's events on a thread while the next chunk is checked (its fsync, and SQLite's own
#: work, overlap the next lines' signatures); its verdicts are still printed only after that fsync.
COMMIT_BEHIND = True

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
        from ..verify import VerifiedGrant

        all_ok, count = True, 0
        buffer = run.buffer
        events = buffer.events  # the verifier records each line's event here (run.buffer is its recorder)
        pending: list[str] = []
        encode = _encoder()
        verify = run.verifier.verify
        expect_, audience_, at_, context_ = run.expect, run.audience, run.at, run.context
        has_context = context is not None
        committer = _Committer(buffer.recorder, out.stdout.write, COMMIT_BEHIND)
        show, end = out.progress("checked", stdout_terminal=False, unit="lines")  # verdicts into a file or pipe

        stdin = getattr(sys.stdin, "buffer", None)  # bytes: a line that is not UTF-8 is that line's verdict
        lines = _bounded_lines(stdin) if stdin is not None else (x.encode("utf-8", "surrogateescape") for x in sys.stdin)
        try:
            for lineno, raw in enumerate(lines, 1):
                if raw is not None and not raw.strip():
                    continue
                count += 1
                a, r = action, resource
                try:
                    if raw is None:  # read no further than the limit: the rest of the line is skipped unread
                        raise VerificationError("malformed", f"line {lineno}: longer than {MAX_BATCH_LINE // (1024 * 1024)} MiB")
                    token, a, r, payload, line_context = _batch_line(raw, lineno, action, resource, has_context)
                except VerificationError as e:  # a line the verifier never saw: recorded here
                    doc = denial_doc(e, None, action=a, resource=r)
                    if buffer.enabled:
                        events.append(verdict_event(doc))
                    all_ok = False
                else:
                    try:
                        result = verify(token, expect=expect_, action=a, resource=r, data=payload, audience=audience_,
                                        at=at_, context=context_ if line_context is None else line_context)
                        doc = result.verdict(a, r) if type(result) is VerifiedGrant else result.verdict()
                    except VerificationError as e:
                        doc = e.verdict  # type: ignore[attr-defined]
                        all_ok = False
                    except UsageError as e:  # a line's own action or resource is bad: that line is malformed
                        doc = denial_doc(VerificationError("malformed", e.message), None, action=a, resource=r)
                        if buffer.enabled:
                            events.append(verdict_event(doc, token))
                        all_ok = False
                doc["line"] = lineno
                pending.append(encode(doc))
                if len(pending) >= CHUNK:  # record the chunk (one transaction, its fsync), then print it
                    committer.submit(events, pending)
                    events = buffer.events = []
                    pending = []
                    show(count)
            committer.submit(events, pending)
            buffer.events = []
        finally:
            try:
                committer.wait()  # a chunk's verdicts are printed only once its events are durable
            finally:
                end()
        out.stdout.flush()
        if count == 0:
            out.note("no tokens on stdin")
            return 1
        if not all_ok:
            out.note("denied: at least one line did not verify (see its verdict)")
        return 0 if all_ok else 1

    return guarded(out, body)


def _encoder():
    """A verdict as one compact JSON line (what ``json.dumps(doc, separators=(",", ":")) + "\\n"``
    gives), without building an encoder for every line."""
    encode = json.JSONEncoder(separators=(",", ":")).encode
    return lambda doc: encode(doc) + "\n"


class _Committer:
    """Records a chunk's events, then prints the chunk's verdicts. With ``behind``, the recording (its
    SQLite work and fsync) runs on a thread while the next chunk is checked; the verdicts are printed
    by the caller's thread once that commit has returned, so a verdict is never shown before the fsync
    covering its event. At most one chunk is in flight; a failed append raises at the next
    :meth:`submit` or :meth:`wait`, and no verdict of that chunk or a later one is printed."""

    def __init__(self, recorder, write, behind: bool) -> None:
        self.recorder = recorder
        self.write = write
        self.behind = behind
        self.thread: threading.Thread | None = None
        self.text = ""
        self.error: BaseException | None = None

    def submit(self, events: list, pending: list[str]) -> None:
        self.wait()
        text = "".join(pending)
        if not events:
            self.write(text)
        elif not self.behind:
            self.recorder.record(*events)
            self.write(text)
        else:
            self.text = text
            self.thread = threading.Thread(target=self._record, args=(events,), name="agentctl-batch-audit")
            self.thread.start()

    def _record(self, events: list) -> None:
        try:
            self.recorder.record(*events)
        except BaseException as e:  # handed to the caller's thread
            self.error = e

    def wait(self) -> None:
        """The chunk in flight: durable, then printed (or its failure raised)."""
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        error, self.error = self.error, None
        if error is not None:
            raise error
        self.write(self.text)
        self.text = ""
