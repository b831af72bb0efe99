"""The tool-boundary guard: verifies every ``tools/call`` before the tool runs (SPEC, "MCP").

:class:`Guard` holds a :class:`~agentctl.verify.Verifier` with ``once`` always on and decides one call
(:meth:`Guard.check`, no SDK needed: the stdio proxy uses it too). Installed on an SDK server
(``server.middleware.append(guard)``, or ``guard.install(server)``; a low-level ``Server`` and an
``MCPServer`` alike) it is a ``ServerMiddleware``, the SDK's own interception point: a denied call
raises the SDK's ``MCPError`` (JSON-RPC error -31001) and never reaches the tool; an allowed one reaches
it without the presentation, and :func:`current_action` tells the tool who is calling.

Every decision goes to the recorder with the tool's name and the arguments' SHA-256.

An approval a call carries is held from its verification (step 12 writes its seen-store record, so a
second call carrying it, in this process or in another guard sharing the store, is ``replayed``) and
is used up when the server's final result passes back. A server error, or an ``input_required``
interim result (MCP's multi-round-trip pattern: the client retries with a fresh action token), gives
it back (:meth:`Guard.release`). A call that never answers keeps it: the tool may have acted.

On an event loop, the writes of a decision (the audit append, the seen-store record) are blocking
I/O: unless the recorder and the seen-store are in memory, the guard decides in a worker thread
(``anyio.to_thread``), one decision at a time, and the tool runs only after its decision is recorded.
A guard made by :meth:`Guard.for_home` holds the home's audit log open for its life (each decision
still durable before the tool runs) and closes it at :meth:`Guard.close`, or when the guard is
collected or the interpreter exits.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from ..clock import Clock, system_clock
from ..errors import Error, VerificationError
from ..events import Event
from ..recording import MemoryRecorder, NoRecorder
from ..seen import MemorySeenStore
from ..verify.results import VerifiedAction, denial_doc, verdict_event
from .mapping import (ACTION, META_KEY, approval_binding, arguments_payload, check_server, check_tool, default_audience, denial_error,
                      digest, is_interim, resource_of, verified_iat)

__all__ = ["Guard", "GuardedCall", "current_action", "is_interim"]


@dataclass(frozen=True)
class GuardedCall:
    """A call the guard allowed: the server and tool, the arguments' digest and the verification."""

    server: str
    tool: str
    arguments_sha256: str
    verified: VerifiedAction

    @property
    def agent(self) -> str:
        return self.verified.agent

    @property
    def on_behalf_of(self) -> str:
        return self.verified.on_behalf_of

    @property
    def chain(self) -> tuple[str, ...]:
        return tuple(self.verified.chain)

    @property
    def approval(self) -> Any:
        """The approval the call carries (held until the server's final result), or None."""
        return self.verified.approval


_CURRENT: contextvars.ContextVar[GuardedCall | None] = contextvars.ContextVar("agentctl_mcp_call", default=None)
_NOTE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("agentctl_mcp_note", default=None)
_PRESENTED: contextvars.ContextVar[str | None] = contextvars.ContextVar("agentctl_mcp_presented", default=None)


def current_action() -> GuardedCall | None:
    """The call the running tool serves, as the guard verified it (agent, on whose behalf, chain);
    None outside a guarded call."""
    return _CURRENT.get()


class _Annotated:
    """Passes events on to ``inner`` with the call's tool name and argument digest added."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.enabled = inner is not None and getattr(inner, "enabled", True) is not False

    def record(self, *events) -> None:
        note = _NOTE.get()
        if note:
            for ev in events:  # each made for this decision just now (verdict_event): its own dict
                ev.metadata.update(note)
        self.inner.record(*events)


class _SinceStart:
    """An in-memory seen-store forgets everything when the process ends, so it refuses any action
    issued before it was made (minus the leeway): an action from before could have been used."""

    def __init__(self, inner: MemorySeenStore, floor: float) -> None:
        self.inner = inner
        self.floor = floor

    def remember(self, issuer: str, jti: str, exp: float, now: float) -> None:
        iat = verified_iat(_PRESENTED.get())
        if iat is None or iat < self.floor:
            raise VerificationError("replayed", f"action {jti} was issued before this guard started (its seen-store is in memory); sign a new one")
        self.inner.remember(issuer, jti, exp, now)

    def forget(self, issuer: str, jti: str) -> None:
        self.inner.forget(issuer, jti)


class Guard:
    """Verifies tool calls for the MCP server called ``server`` (SPEC: the name given here, never the
    server's own ``serverInfo.name``).

    ``trust``, ``recorder``, ``clock``, ``leeway``, ``revocations`` and any further keyword are the
    :class:`~agentctl.verify.Verifier`'s; ``once`` is always on. ``seen`` defaults to a fresh
    :class:`~agentctl.seen.MemorySeenStore`, which refuses actions issued before it was made; guards
    that share an audience must share a seen-store (``HomeSeenStore``). ``offload`` decides whether
    the SDK guard decides in a worker thread: by default (None) unless the recorder and the seen-store
    are in memory (``MemoryRecorder``, ``NO_AUDIT``, ``MemorySeenStore``)."""

    def __init__(self, trust: Any, *, server: str, audience: str | None = None, recorder: Any = None,
                 clock: Clock = system_clock, leeway: int | None = None, seen: Any = None, offload: bool | None = None,
                 **verify_options: Any) -> None:
        from ..verify import Verifier

        self.server = check_server(server)
        self.audience = default_audience(self.server, audience)
        if recorder is None:
            from ..errors import UsageError

            raise UsageError("a Guard needs a recorder: pass recorder=(an object with record(*events)) or recorder=NO_AUDIT")
        if leeway is not None:
            verify_options["leeway"] = leeway
        rules = verify_options.get("approvals")
        if rules is not None and rules.audience != self.audience:  # SPEC: the guard's audience is its own
            verify_options["approvals"] = dataclasses.replace(rules, audience=self.audience)
        self.verifier = Verifier(trust, recorder=_Annotated(recorder), clock=clock, once=True, seen=seen if seen is not None else MemorySeenStore(), **verify_options)
        if isinstance(self.verifier.seen, MemorySeenStore):
            self.verifier.seen = _SinceStart(self.verifier.seen, clock() - self.verifier.leeway)
        self.recorder = recorder
        self.offload = not _in_memory(recorder, seen) if offload is None else bool(offload)
        self._writes = threading.Lock()  # one decision at a time off the loop: a recorder need not be thread-safe
        self._own: Any = None  # the audit log this guard opened (for_home), and what closes it
        self._closer: Any = None

    @classmethod
    def for_home(cls, home: Any, *, server: str, audience: str | None = None, recorder: Any = None,
                 seen: Any = "home", policy_files: Any = (), policy_query: str | None = None,
                 **verify_options: Any) -> "Guard":
        """A guard with a home's principals, revocations, leeway, ``[approvals]`` rules (for the
        guard's audience), policies (``[policy]`` of config.toml, then each of ``policy_files``) and
        (``seen="home"``, the default) seen-store, which survives restarts; ``seen="memory"`` keeps it
        in this process."""
        from ..seen import HomeSeenStore
        from ..store import Store
        from ..verify import StoreTrust
        from ..verify.policy_step import home_policy_sets

        verify_options.setdefault("approvals", home.config.approvals)
        verify_options["policies"] = [*home_policy_sets(home, policy_files, policy_query), *verify_options.get("policies", ())]

        own = None
        if recorder is None:  # the home's log, held open for the guard's life
            from ..context import Context
            from ..recording import HomeRecorder

            recorder = own = HomeRecorder(Context.for_home(home.path), hold=True)
        store = HomeSeenStore(home) if seen == "home" else MemorySeenStore() if seen == "memory" else seen
        verify_options.setdefault("leeway", home.config.leeway)
        try:
            guard = cls(StoreTrust(Store(home)), server=server, audience=audience, recorder=recorder, seen=store, **verify_options)
        except BaseException:
            if own is not None:
                own.close()
            raise
        if own is not None:
            guard._own = own
            guard._closer = weakref.finalize(guard, _close_locked, guard._writes, own)
        return guard

    def close(self) -> None:
        """Close the audit log this guard opened (:meth:`for_home`), after the decision under way; a
        later decision opens it again. A recorder passed in is the caller's to close."""
        if self._own is not None:
            self._closer()
            self._closer = weakref.finalize(self, _close_locked, self._writes, self._own)  # for a log a later decision opens

    # --- one decision ---------------------------------------------------------------------------
    def check(self, name: object, arguments: object, meta: object) -> GuardedCall:
        """Decide one ``tools/call``: its tool ``name``, its ``arguments`` and its ``_meta``. Returns
        the allowed call or raises :class:`VerificationError` (recorded either way)."""
        note: dict = {"mcp_server": self.server, "tool": name if isinstance(name, str) and len(name) <= 128 else None}
        token = _NOTE.set(note)
        try:
            resource = None
            try:
                tool = check_tool(name)
                resource = resource_of(self.server, tool)
                payload = arguments_payload(arguments)
                note["arguments_sha256"] = sha = digest(payload)
                presentation = meta.get(META_KEY) if isinstance(meta, dict) else None
                if presentation is None:
                    raise VerificationError("malformed", f"the call carries no presentation in params._meta[{META_KEY!r}]")
                if not isinstance(presentation, str):
                    raise VerificationError("malformed", f"params._meta[{META_KEY!r}] is not a string")
            except VerificationError as e:  # refused before the pipeline: recorded as it records
                doc = denial_doc(e, "action", action=ACTION, resource=resource)
                e.verdict = doc  # type: ignore[attr-defined]
                if self.verifier._recording:
                    self.verifier.recorder.record(verdict_event(doc))
                raise
            presented = _PRESENTED.set(presentation)
            try:
                v = self.verifier.verify_action(presentation, action=ACTION, resource=resource, data=payload,
                                                audience=self.audience, once=True)
            except VerificationError as e:
                if e.reason == "approval_required":
                    e.mcp_data = approval_binding(presentation, resource, sha)  # type: ignore[attr-defined]
                raise
            finally:
                _PRESENTED.reset(presented)
            return GuardedCall(self.server, tool, sha, v)
        finally:
            _NOTE.reset(token)

    def release(self, call: GuardedCall, why: str = "error") -> bool:
        """Give back the approval ``call`` holds, for a use that did not happen (``why``: the server
        answered with an ``error`` or an ``input_required`` interim result): a later call with a fresh
        action token may carry it. Recorded first (``mcp.release``), so the audit log tells why one
        approval appears in two allowed calls. False when there is none to give back, or the recorder
        or the seen-store fails (then it stays used: the safe side)."""
        approval = call.approval
        forget = getattr(self.verifier.seen, "forget", None)
        if approval is None or forget is None:
            return False
        try:
            if self.verifier._recording:
                self.recorder.record(Event(
                    "mcp.release", "ok", principal=call.agent, on_behalf_of=call.on_behalf_of, action=ACTION,
                    resource=resource_of(self.server, call.tool), jtis=(call.verified.action.jti,),
                    metadata={"mcp_server": self.server, "tool": call.tool, "arguments_sha256": call.arguments_sha256,
                              "approval": {"by": approval.iss, "jti": approval.jti}, "answer": why}))
            forget(approval.iss, approval.jti)
        except Error:
            return False
        return True

    def _check_locked(self, name: object, arguments: object, meta: object) -> GuardedCall:
        with self._writes:
            return self.check(name, arguments, meta)

    def _release_locked(self, call: GuardedCall, why: str) -> bool:
        with self._writes:
            return self.release(call, why)

    # --- the SDK's interception point -----------------------------------------------------------
    def install(self, server: Any) -> "Guard":
        """Add this guard to an SDK server's middleware (a low-level ``Server`` or an ``MCPServer``)."""
        _sdk()
        chain = getattr(server, "middleware", None)
        if not isinstance(chain, list):
            from ..errors import UsageError

            raise UsageError(f"cannot guard a {type(server).__name__}: it has no middleware list (an mcp 2.x Server or MCPServer has)")
        if self not in chain:
            chain.append(self)
        return self

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        errors = _SDK or _sdk()
        if ctx.request_id is None:  # a tools/call notification is nothing the tool may act on
            return None
        params = dict(ctx.params or {})
        meta = params.get("_meta")
        try:
            if self.offload:
                import anyio.to_thread

                call = await anyio.to_thread.run_sync(self._check_locked, params.get("name"), params.get("arguments"), meta)
            else:
                call = self.check(params.get("name"), params.get("arguments"), meta)
        except VerificationError as e:
            err = denial_error(e)
            raise errors.MCPError(err["code"], err["message"], err["data"]) from None
        except Error as e:  # the audit log or the seen-store failed: no decision, no call
            raise errors.MCPError(-32603, f"agentctl: error: {e.message}") from None
        rest = {k: v for k, v in meta.items() if k != META_KEY} if isinstance(meta, dict) else None
        params.pop("_meta", None)
        if rest:
            params["_meta"] = rest
        params["arguments"] = params.get("arguments") or {}
        ctx_meta = {k: v for k, v in (ctx.meta or {}).items() if k != META_KEY} or None
        token = _CURRENT.set(call)
        try:
            result = await call_next(dataclasses.replace(ctx, params=params, meta=ctx_meta))
        except Exception:  # the server answers with an error: the approval was not used
            if call.approval is not None:
                await self._give_back(call)
            raise
        finally:
            _CURRENT.reset(token)
        if call.approval is not None:
            if is_interim(result):  # input_required: the client retries
                await self._give_back(call, "input_required")
            elif _is_error_data(result):  # a later middleware answered with an error
                await self._give_back(call, "error")
        return result

    async def _give_back(self, call: GuardedCall, why: str = "error") -> None:
        if self.offload:
            import anyio.to_thread

            await anyio.to_thread.run_sync(self._release_locked, call, why)
        else:
            self.release(call, why)


def _close_locked(lock: threading.Lock, recorder: Any) -> None:
    with lock:
        recorder.close()


def _is_error_data(result: object) -> bool:
    from mcp_types import ErrorData

    return isinstance(result, ErrorData)


def _in_memory(recorder: Any, seen: Any) -> bool:
    """Whether a decision's writes stay in memory (nothing that blocks an event loop)."""
    quiet = isinstance(recorder, (MemoryRecorder, NoRecorder)) or getattr(recorder, "enabled", True) is False
    return quiet and (seen is None or isinstance(seen, MemorySeenStore))


_SDK: Any = None


def _sdk():
    """The SDK's error type, imported only when a guard meets the SDK."""
    global _SDK
    try:
        from mcp.shared import exceptions
    except ImportError:
        from ..errors import OperationalError

        raise OperationalError("the MCP SDK is not installed: the guard on an SDK server needs the mcp extra",
                               hint="in a checkout: pip install -e '.[mcp]'") from None
    _SDK = exceptions
    return exceptions
