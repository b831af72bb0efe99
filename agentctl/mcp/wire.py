"""The stdio proxies' view of the wire: one JSON-RPC message per line (SPEC, "MCP").

:func:`parse_line` classifies a line: exactly one JSON object whose member names are distinct even up
to ASCII case, at every depth; anything else (a batch array, two values, invalid UTF-8 or JSON) is
refused. :class:`GuardFilter` decides what the guard proxy forwards to the server and what it answers
itself; :class:`SignFilter` adds a presentation to each ``tools/call`` for the sign proxy. Both work
on bytes, with no SDK and no I/O of their own.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from ..encoding import EncodingError, canonical_json
from ..errors import Error, VerificationError
from ..events import Event
from .mapping import META_KEY, arguments_payload, denial_error, is_interim

__all__ = ["parse_line", "LineError", "GuardFilter", "SignFilter", "PASSED", "INVALID_REQUEST", "METHOD_NOT_FOUND"]

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
#: The methods that pass the guard unverified (SPEC); ``notifications/*`` pass too.
PASSED = ("initialize", "ping", "tools/list", "resources/list", "resources/templates/list", "prompts/list",
          "logging/setLevel", "completion/complete")
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz").decode("latin-1")
_ASCII_LOWER = {i: ord(c) for i, c in enumerate(_LOWER) if i < 128 and chr(i) != c}


class LineError(ValueError):
    """A line that is not exactly one JSON object with distinct member names."""


def _distinct(pairs: list) -> dict:
    seen: set = set()
    for k, _ in pairs:
        folded = k.translate(_ASCII_LOWER)
        if folded in seen:
            raise LineError(f"member name {k[:40]!r} appears twice (equal up to ASCII case)")
        seen.add(folded)
    return dict(pairs)


_DECODER = json.JSONDecoder(object_pairs_hook=_distinct)


def parse_line(line: bytes) -> dict:
    """The one JSON object on ``line``, or :class:`LineError`."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError("the line is not UTF-8") from None
    try:
        doc = _DECODER.decode(text)
    except LineError:
        raise
    except (ValueError, RecursionError) as e:
        raise LineError(f"the line is not one JSON value: {str(e)[:80]}") from None
    if isinstance(doc, list):
        raise LineError("a JSON-RPC batch is not accepted: one message per line")
    if not isinstance(doc, dict):
        raise LineError("the line is not a JSON object")
    return doc


def _request_id(line: bytes) -> Any:
    """The id of a refused line when it is plainly a request, else None (JSON-RPC's null id)."""
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("method"), str) and type(doc.get("id")) in (str, int):
        return doc["id"]
    return None


def error_line(id_: Any, error: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "error": error}, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


class GuardFilter:
    """What the guard proxy does with each client line: ``(to_server, to_client)``, either None.

    ``guard`` is a :class:`~agentctl.mcp.guard.Guard` (its verifier records every decision);
    ``recorder`` records the refusals made before any verification. ``passed`` adds methods to
    :data:`PASSED`.

    An allowed call that carries an approval is held by its request id until the server answers it
    (:meth:`from_server`, which sees every line of the server before the client does): a final result
    uses the approval up; an error or an ``input_required`` interim result gives it back."""

    def __init__(self, guard: Any, recorder: Any, passed: tuple[str, ...] = ()) -> None:
        self.guard = guard
        self.recorder = recorder
        self.passed = frozenset(PASSED) | frozenset(passed)
        self.held: dict[tuple[bool, Any], Any] = {}  # (id is a string, id) -> the GuardedCall
        self._held_lock = threading.Lock()

    def __call__(self, line: bytes) -> tuple[bytes | None, bytes | None]:
        try:
            msg = parse_line(line)
        except LineError as e:
            id_ = _request_id(line)
            self._refuse("malformed", str(e), None)
            return None, error_line(id_, {"code": INVALID_REQUEST, "message": f"agentctl: invalid request: {e}"})
        method = msg.get("method")
        id_ = msg.get("id")
        is_request = "id" in msg
        if method is None:
            if is_request and ("result" in msg or "error" in msg):
                return line, None  # a response to the server's request
            self._refuse("malformed", "neither a request, a notification nor a response", None)
            return None, error_line(None, {"code": INVALID_REQUEST, "message": "agentctl: invalid request: not a JSON-RPC message"})
        if not isinstance(method, str):
            self._refuse("malformed", "the method is not a string", None)
            return None, error_line(id_ if type(id_) in (str, int) else None, {"code": INVALID_REQUEST, "message": "agentctl: invalid request: the method is not a string"})
        if method == "tools/call":
            if not is_request:
                self._refuse("malformed", "a tools/call notification", method)
                return None, None
            return self._call(msg)
        if method in self.passed or method.startswith("notifications/"):
            return line, None
        self._refuse("unsupported", f"method {method[:80]!r} is not passed by this guard", method)
        if not is_request:
            return None, None
        return None, error_line(id_, {"code": METHOD_NOT_FOUND, "message": f"agentctl: method not passed: {method[:80]}",
                                      "data": {"method": method[:200]}})

    def _call(self, msg: dict) -> tuple[bytes | None, bytes | None]:
        id_ = msg["id"]
        params = msg.get("params")
        if not isinstance(params, dict):
            params = {"name": None}
        meta = params.get("_meta")
        # Re-serialized from the values verified: the server parses only bytes the guard wrote.
        out = {k: v for k, v in params.items() if k not in ("_meta", "arguments")}
        out["arguments"] = params.get("arguments") or {}
        rest = {k: v for k, v in meta.items() if k != META_KEY} if isinstance(meta, dict) else {}
        if rest:
            out["_meta"] = rest
        try:
            data = canonical_json({"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": out})
        except (EncodingError, ValueError, TypeError, RecursionError):
            data = None
        if data is None and _args_ok(params.get("arguments")):  # another member is not I-JSON
            e = VerificationError("malformed", "the call's params are not I-JSON")
            self._refuse(e.reason, e.detail, "tools/call")
            return None, error_line(id_, denial_error(e))
        try:  # refuses (and records) bad arguments, so data is None no further
            call = self.guard._check_locked(params.get("name"), params.get("arguments"), meta)
        except VerificationError as e:
            return None, error_line(id_, denial_error(e))
        assert data is not None and call.tool == out.get("name")
        if call.approval is not None:
            with self._held_lock:  # a reused id leaves the earlier call's approval held: the safe side
                self.held[(type(id_) is str, id_)] = call
        return data + b"\n", None

    def from_server(self, line: bytes) -> None:
        """See one line from the server before it passes (unchanged) to the client: the answer to a
        held call settles its approval."""
        if not self.held:
            return
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(msg, dict) or "method" in msg or type(msg.get("id")) not in (str, int):
            return  # a notification (progress) or the server's own request: not an answer
        if "error" in msg:
            used = False
        elif "result" in msg:
            used = not is_interim(msg["result"])
        else:
            return
        with self._held_lock:
            call = self.held.pop((type(msg["id"]) is str, msg["id"]), None)
        if call is not None and not used:  # recorded under the guard's lock: the recorder serves two threads
            self.guard._release_locked(call, "error" if "error" in msg else "input_required")

    def _refuse(self, reason: str | None, detail: str, method: str | None) -> None:
        with self.guard._writes:
            self.recorder.record(Event("mcp.refuse", "deny", reason=reason,
                                       metadata={"mcp_server": self.guard.server, "method": method[:200] if method else None, "detail": detail}))


def _args_ok(arguments: object) -> bool:
    try:
        arguments_payload(arguments)
    except VerificationError:
        return False
    return True


class SignFilter:
    """What the sign proxy does with each client line: a ``tools/call`` gets a fresh presentation in
    ``params._meta``; every other line passes unchanged. A call the signer refuses (a bad tool name,
    arguments that are not I-JSON, a grant that does not cover it) is answered, not forwarded."""

    def __init__(self, signer: Any, notify: Callable[[str], None] | None = None) -> None:
        self.signer = signer
        self.notify = notify

    def __call__(self, line: bytes) -> tuple[bytes | None, bytes | None]:
        try:
            msg = parse_line(line)
        except LineError:
            return line, None  # not ours to judge: the guard refuses it
        if msg.get("method") != "tools/call" or "id" not in msg or not isinstance(msg.get("params"), dict):
            return line, None
        params = dict(msg["params"])
        meta = params.get("_meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        try:
            meta[META_KEY] = self.signer.presentation(params.get("name"), params.get("arguments"))
        except VerificationError as e:
            return None, error_line(msg["id"], denial_error(e))
        except Error as e:
            if e.exit_code == 3:
                raise
            if self.notify:
                self.notify(e.message)
            return None, error_line(msg["id"], {"code": -31001, "message": f"agentctl: error: {e.message}",
                                                "data": {"reason": None, "detail": e.message}})
        params["_meta"] = meta
        msg["params"] = params
        return json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass") + b"\n", None
