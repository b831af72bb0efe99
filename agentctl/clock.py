"""The one clock seam: every time check in agentctl asks a :data:`Clock` for "now".

A clock is any zero-argument callable returning POSIX seconds as a float. Library functions take a
``clock`` argument defaulting to :func:`system_clock`; tests pass a :class:`FixedClock` instead of
sleeping.
"""

from __future__ import annotations

import math
import time
from typing import Callable

__all__ = ["Clock", "system_clock", "FixedClock", "rfc3339", "parse_rfc3339"]

Clock = Callable[[], float]


def system_clock() -> float:
    """The time now, in seconds since the epoch: the clock every operation uses unless given another."""
    return time.time()


class FixedClock:
    """A clock that stands still until moved: ``clock.advance(90)``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_second: list = [None, ""]  # the last whole second ``micro`` text was made for, and its text


def rfc3339(ts: float, *, micro: bool = False) -> str:
    """UTC RFC 3339 text for POSIX seconds, e.g. ``2026-11-29T14:30:00Z``."""
    if type(ts) in (float, int) and 0 <= ts < _MAX_TIME:  # the same text as datetime's, without importing it
        frac, whole = math.modf(ts)
        us = round(frac * 1e6)  # half to even, as datetime.fromtimestamp rounds
        if us >= 1_000_000:
            whole, us = whole + 1.0, us - 1_000_000
        sec = int(whole)
        if sec != _second[0]:
            t = time.gmtime(sec)
            _second[:] = (sec, f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
        return f"{_second[1]}.{us:06d}Z" if micro else f"{_second[1]}Z"
    from datetime import datetime, timezone

    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """POSIX seconds for an RFC 3339 time with an explicit offset (``Z`` or ``±HH:MM``), from
    1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z (what agentctl can store and show).

    Raises ``ValueError`` with a message that says what is wrong for anything else: no offset, a
    leap second (``:60``, which POSIX time cannot hold), a date that does not exist, a time out of range.
    """
    t = text.strip() if isinstance(text, str) else ""
    if len(t) < 20 or t[10] not in "Tt " or not t.isascii():
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    if t[-1] in "Zz":
        t = t[:-1] + "+00:00"
    if t[17:19] == "60" and t[13] == ":" and t[16] == ":":
        raise ValueError(f"{text!r} is a leap second, which POSIX time cannot hold; give :59 or the next second")
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(t)
    except ValueError as e:
        raise ValueError(f"not an RFC 3339 time: {text!r} ({e})") from None
    if dt.tzinfo is None:
        raise ValueError(f"RFC 3339 time without an offset: {text!r}")
    try:
        ts = dt.timestamp()
    except (OverflowError, ValueError):
        ts = -1.0
    if not 0 <= ts <= _MAX_TIME:
        raise ValueError(f"{text!r} is out of range: times run from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z")
    return ts


_MAX_TIME = 253402300799  # values.MAX_TIME (values imports errors; the clock stays dependency-free)
