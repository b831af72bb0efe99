"""TOML for the files agentctl writes itself, read without importing :mod:`tomllib` (nor the
:mod:`datetime` and :mod:`string` it loads): a cold ``agentctl verify`` reads config.toml and two
principal files, and tomllib costs it more than reading them.

:func:`loads` reads a strict subset: blank and comment lines; ``[a.b]`` and ``[[a]]`` headers of bare
keys, each path defined once; ``key = value`` with a bare key, once per table; values that are basic
strings without escapes, decimal integers without ``_``, ``true``/``false``, offset date-times, and
one-line arrays of those. Anything else, well-formed or not, is handed to :func:`tomllib.loads`, whose
value or :class:`tomllib.TOMLDecodeError` is the answer: this reader never gives a value tomllib would
not (tests/test_toml_subset.py compares the two on every file the tests write, and on generated ones).

Offset date-times come back as :class:`Instant` only when the caller asks (``instants=True``, for the
store's ``created``/``retired`` fields, which want POSIX seconds); otherwise a date-time sends the text
to tomllib, which gives a :class:`datetime.datetime`. ``TOMLDecodeError`` is this module's attribute
too (loaded with tomllib when first asked for), so callers catch it without importing tomllib first.
"""

from __future__ import annotations

import re

__all__ = ["loads", "Instant"]


class Instant:
    """An offset date-time as read: POSIX seconds (``ts``, exactly ``datetime.timestamp()`` of the
    value tomllib gives), its ``offset`` in minutes east of UTC and its ``text``."""

    __slots__ = ("ts", "offset", "text", "_fields")

    def __init__(self, ts: float, offset: int, text: str, fields: tuple[int, int, int, int, int, int, int]) -> None:
        self.ts, self.offset, self.text, self._fields = ts, offset, text, fields

    def timestamp(self) -> float:
        return self.ts

    def to_datetime(self):  # noqa: ANN201 - the value tomllib gives for the same text (tests compare them)
        from datetime import datetime, timedelta, timezone

        tz = timezone.utc if self.offset == 0 else timezone(timedelta(minutes=self.offset))
        y, mo, d, h, mi, s, us = self._fields
        return datetime(y, mo, d, h, mi, s, us, tzinfo=tz)

    def __repr__(self) -> str:
        return f"Instant({self.text!r})"


class _Unsupported(Exception):
    """Outside the subset: tomllib decides."""


def __getattr__(name: str) -> type[ValueError]:
    if name == "TOMLDecodeError":
        import tomllib

        return tomllib.TOMLDecodeError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loads(text: str, *, instants: bool = False) -> dict:
    """The document ``text`` holds, as :func:`tomllib.loads` reads it (see the module's docstring)."""
    try:
        return _read(text, instants)
    except (_Unsupported, RecursionError):
        import tomllib

        return tomllib.loads(text)


_DATETIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))")
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_WS = " \t"


def _bare(key: str) -> bool:
    return bool(key) and key.isascii() and key.replace("-", "a").replace("_", "a").isalnum()


def _plain(s: str) -> bool:
    """No control character but tab (TOML's rule for comments and strings), no DEL."""
    if s.isprintable():  # the common case (isprintable is False for tab, DEL and every control character)
        return True
    return all(c == "\t" or (c >= " " and c != "\x7f") for c in s)


def _rest(line: str, i: int) -> None:
    """What follows a value or header: whitespace and an optional comment, nothing else."""
    tail = line[i:].lstrip(_WS)
    if tail and (tail[0] != "#" or not _plain(tail)):
        raise _Unsupported


def _read(text: str, instants: bool) -> dict:
    if "\r" in text.replace("\r\n", "\n") or "\ufeff" in text[:1]:
        raise _Unsupported
    root: dict = {}
    defined: dict[tuple, str] = {}  # header path -> "table" / "implicit" / "array"
    table = root
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        s = line.lstrip(_WS)
        if not s or s[0] == "#":
            if not _plain(s):
                raise _Unsupported
            continue
        if s[0] == "[":
            array = s.startswith("[[")
            close = s.find("]]" if array else "]")
            if close < 0:
                raise _Unsupported
            path = tuple(p.strip(_WS) for p in s[2 if array else 1 : close].split("."))
            if not all(_bare(p) for p in path) or path in defined and not (array and defined[path] == "array"):
                raise _Unsupported
            _rest(s, close + (2 if array else 1))
            container = root
            for n in range(1, len(path)):
                sub = path[:n]
                if sub not in defined:
                    if sub[-1] in container:
                        raise _Unsupported
                    container[sub[-1]] = {}
                    defined[sub] = "implicit"
                elif defined[sub] == "array":
                    raise _Unsupported
                container = container[sub[-1]]
            if array:
                if path not in defined:
                    if path[-1] in container:
                        raise _Unsupported
                    container[path[-1]] = []
                    defined[path] = "array"
                table = {}
                container[path[-1]].append(table)
            else:
                if path[-1] in container:
                    raise _Unsupported
                table = container[path[-1]] = {}
                defined[path] = "table"
            continue
        eq = s.find("=")
        if eq < 0:
            raise _Unsupported
        key = s[:eq].rstrip(_WS)
        if not _bare(key) or key in table:
            raise _Unsupported
        i = eq + 1
        while i < len(s) and s[i] in _WS:
            i += 1
        if i < len(s) and s[i] == "[":
            items: list = []
            i += 1
            while True:
                while i < len(s) and s[i] in _WS:
                    i += 1
                if i < len(s) and s[i] == "]":
                    i += 1
                    break
                value, i = _scalar(s, i, instants)
                items.append(value)
                while i < len(s) and s[i] in _WS:
                    i += 1
                if i < len(s) and s[i] == ",":
                    i += 1
                elif i < len(s) and s[i] == "]":
                    i += 1
                    break
                else:
                    raise _Unsupported
            table[key] = items
        else:
            table[key], i = _scalar(s, i, instants)
        _rest(s, i)
    return root


def _scalar(s: str, i: int, instants: bool) -> tuple[object, int]:
    """The value starting at ``s[i]`` and the index after it."""
    c = s[i : i + 1]
    if c == '"':
        end = s.find('"', i + 1)
        body = s[i + 1 : end]
        if end < 0 or end == i + 1 and s[end + 1 : end + 2] == '"' or "\\" in body or not _plain(body):
            raise _Unsupported  # no closing quote, a multi-line string, an escape, a control character
        return body, end + 1
    if s.startswith("true", i) or s.startswith("false", i):
        word = "true" if c == "t" else "false"
        end = i + len(word)
        if s[end : end + 1] not in ("", " ", "\t", ",", "]", "#"):
            raise _Unsupported
        return word == "true", end
    m = _DATETIME.match(s, i)
    if m is not None:
        if not instants:
            raise _Unsupported
        return _instant(m), m.end()
    end = i + (c == "-")
    start = end
    while end < len(s) and "0" <= s[end] <= "9":
        end += 1
    digits = s[start:end]
    if not digits or digits[0] == "0" and len(digits) > 1 or s[end : end + 1] not in ("", " ", "\t", ",", "]", "#"):
        raise _Unsupported  # a float, a date, a hex/octal/binary or "_" integer, a leading zero, a bare word
    return int(s[i:end]), end


def _instant(m: re.Match) -> Instant:
    year, month, day, hour, minute, second = (int(m.group(n)) for n in range(1, 7))
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (1 <= year and 1 <= month <= 12 and 1 <= day <= _DAYS[month - 1] + (month == 2 and leap)
            and hour <= 23 and minute <= 59 and second <= 59):
        raise _Unsupported
    frac = m.group(7)
    micro = int(frac[:6].ljust(6, "0")) if frac else 0  # tomllib keeps six digits and drops the rest
    offset = 0
    if m.group(8):
        oh, om = int(m.group(9)), int(m.group(10))
        if oh > 23 or om > 59:
            raise _Unsupported
        offset = (oh * 60 + om) * (1 if m.group(8) == "+" else -1)
    # days since 1970-01-01 of the civil date (proleptic Gregorian, as datetime counts)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset * 60
    return Instant((seconds * 10**6 + micro) / 10**6, offset, m.group(0), (year, month, day, hour, minute, second, micro))  # as timedelta.total_seconds()
