"""The bounds every number agentctl accepts, stores or shows obeys (SPEC "Token format").

Integers are I-JSON integers (|n| <= 2^53 - 1, what every JSON implementation holds exactly) and times
are whole POSIX seconds from 0 to 253402300799 (9999-12-31T23:59:59Z, the last second RFC 3339, TOML
and Python's datetime can write). A value outside them is refused where it enters, so nothing already
accepted can later fail to encode, store or display. Token claims are ``malformed``; the CLI turns the
same checks on flags into usage errors.
"""

from __future__ import annotations

from typing import TypeGuard

from .errors import VerificationError

__all__ = ["MAX_INT", "MAX_TIME", "is_int", "is_time", "check_int", "check_time", "time_in_range"]

MAX_INT = 2**53 - 1
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def is_int(value: object, *, low: int = -MAX_INT, high: int = MAX_INT) -> TypeGuard[int]:
    """A JSON integer (not a bool) within I-JSON's range and ``low``..``high``."""
    return type(value) is int and max(low, -MAX_INT) <= value <= min(high, MAX_INT)


def is_time(value: object) -> TypeGuard[int]:
    """Whole seconds from 0 to :data:`MAX_TIME` (ints only; a JSON number with a fraction is not one)."""
    return type(value) is int and 0 <= value <= MAX_TIME


def check_int(value: object, what: str, *, low: int = -MAX_INT, high: int = MAX_INT) -> int:
    """``value`` when it is an integer in ``low``..``high`` (within I-JSON), else ``malformed`` naming ``what``."""
    if not is_int(value, low=low, high=high):
        lo, hi = max(low, -MAX_INT), min(high, MAX_INT)
        raise VerificationError("malformed", f"{what} must be a whole number from {lo} to {hi}")
    return value


def check_time(value: object, what: str) -> int:
    """``value`` when it is a time in whole seconds from 0 to :data:`MAX_TIME`, else ``malformed``."""
    if not is_time(value):
        raise VerificationError("malformed", f"{what} must be a whole number of seconds from 0 to {MAX_TIME} (the year 9999)")
    return value


def time_in_range(seconds: float) -> bool:
    """Whether POSIX ``seconds`` (a float from a flag or a clock) lies in 0..:data:`MAX_TIME`."""
    return 0 <= seconds <= MAX_TIME
