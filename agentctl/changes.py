"""A change and its audit event succeed or fail together (SPEC, "Audit log").

An operation that changes state takes ``recorder``: the :class:`~agentctl.recording.Recorder` its
audit event goes to (None records nothing). It builds the event itself and records it under the home
lock once the change is written; when recording fails, :func:`undoing` runs the operation's undo and
lets the error go on, so nothing stays changed. It may also take ``then``: a callback run after the
event is recorded, still under the lock (the CLI prints there what must not be lost: a secret, a
rotation statement). When ``then`` raises, the change is undone too, and that is recorded (the event
again, outcome ``error``, ``metadata.undone``).

An operation that can refuse (an import of something that does not verify) records the refusal
itself: :func:`recording_denials`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, ParamSpec, TypeVar

from .errors import DeniedError, Error, VerificationError
from .events import Event

if TYPE_CHECKING:
    from .recording import Recorder

__all__ = ["Then", "undoing", "record", "recording_denials"]

Then = Callable[..., None] | None
P = ParamSpec("P")
R = TypeVar("R")


def record(recorder: Recorder | None, event: Event) -> None:
    """Record ``event`` when there is a recorder."""
    if recorder is not None:
        recorder.record(event)


def undoing(undo: Callable[[], None], then: Then, *result: object, recorder: Recorder | None = None, event: Event | None = None) -> None:
    """Record ``event`` (when there is a recorder), then run ``then(*result)``. When either raises,
    run ``undo`` and let the error go on; when ``then`` raised after the event was recorded, record
    that the change was undone (a failure to record that only loses the note: the change is undone
    either way, and the error that undid it is the one that goes on)."""
    recorded = False
    if recorder is not None and event is not None:
        try:
            recorder.record(event)
        except BaseException:
            undo()
            raise
        recorded = True
    if then is None:
        return
    try:
        then(*result)
    except BaseException as e:
        if recorded:
            assert event is not None and recorder is not None
            detail = e.message if isinstance(e, Error) else type(e).__name__
            try:
                recorder.record(Event(event.event, "error", principal=event.principal, metadata={"undone": True, "detail": detail}))
            except Error:
                pass
        undo()
        raise


def recording_denials(deny: Callable[..., Event | None]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an operation taking ``recorder=`` (by keyword): when it refuses (a
    :class:`~agentctl.errors.VerificationError` or :class:`~agentctl.errors.DeniedError`), record
    ``deny(error, *args)`` first (None: a refusal it does not record), then let the refusal go on."""

    def wrap(op: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(op)
        def run(*args: P.args, **kw: P.kwargs) -> R:
            try:
                return op(*args, **kw)
            except (VerificationError, DeniedError) as e:
                recorder: Any = kw.get("recorder")
                event = deny(e, *args)
                if event is not None:
                    record(recorder, event)
                raise

        return run

    return wrap
