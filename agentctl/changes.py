"""A change and its audit event succeed or fail together (SPEC, "Audit log").

An operation that changes state takes ``then``: a callback run under the home lock once the change is
written (the CLI records the audit event there, and prints what must not be lost). When ``then``
raises, :func:`undoing` runs the operation's undo and lets the error go on.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["Then", "undoing"]

Then = Callable[..., None] | None


def undoing(undo: Callable[[], None], then: Then, *result: object) -> None:
    """Run ``then(*result)``; when it raises, run ``undo`` and let the error go on."""
    if then is None:
        return
    try:
        then(*result)
    except BaseException:
        undo()
        raise
