"""Durations (``90s``, ``30m``, ``1h``, ``2d``) and times (RFC 3339 or a duration back from now)."""

from __future__ import annotations

import re

from .clock import parse_rfc3339
from .errors import UsageError
from .values import time_in_range

__all__ = ["parse_duration", "format_duration", "parse_when"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")


def parse_duration(text: str, *, what: str = "duration") -> int:
    """Seconds in a duration such as ``90s``, ``30m``, ``1h`` or ``2d``; refuses zero and junk."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise UsageError(f"bad {what} {text!r}: use a number and a unit, like 90s, 30m, 1h or 2d")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise UsageError(f"bad {what} {text!r}: it must be longer than zero")
    if seconds > 3650 * 86400:
        raise UsageError(f"bad {what} {text!r}: at most 3650d")
    return seconds


def format_duration(seconds: float) -> str:
    s = int(seconds)
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 120:
        return f"{sign}{s}s"
    if s < 7200:
        return f"{sign}{s // 60}m{s % 60:02d}s" if s % 60 else f"{sign}{s // 60}m"
    if s < 172800:
        return f"{sign}{s // 3600}h{(s % 3600) // 60:02d}m" if s % 3600 else f"{sign}{s // 3600}h"
    return f"{sign}{s // 86400}d{(s % 86400) // 3600}h" if s % 86400 else f"{sign}{s // 86400}d"


_WHEN_HINT = "use an RFC 3339 time (2026-11-29T14:00:00Z) or a duration back from now (1h)"


def parse_when(text: str, now: float) -> float:
    """An RFC 3339 time, or a duration back from ``now``; either within 1970 to the year 9999."""
    t = text.strip() if isinstance(text, str) else ""
    if _DURATION.fullmatch(t):
        when = now - parse_duration(t)
        if not time_in_range(when):
            raise UsageError(f"bad time {text!r}: it reaches back before 1970-01-01T00:00:00Z")
        return when
    try:
        return parse_rfc3339(t)
    except ValueError as e:
        if len(t) >= 20 and t[:4].isdigit() and t[4:5] == "-":  # meant as RFC 3339: say what is wrong
            raise UsageError(f"bad time: {e}", hint=_WHEN_HINT) from None
    raise UsageError(f"bad time {text!r}: {_WHEN_HINT}")
