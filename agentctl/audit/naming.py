"""Naming what was tampered with: the events at fault, where the rows can say which (for
:mod:`agentctl.audit.tamper`)."""

from __future__ import annotations

import hashlib
import json

from . import codec

class _Tampered(Exception):
    """Raised inside verify at the first problem; carries the report."""

    def __init__(self, problem: str, first: int | None = None, last: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.first, self.last = problem, first, last


def _name_edited(log, first: int, last: int) -> None:
    """Under a subtree that does not match: raise at the first kept event whose tag is not its leaf
    hash's (edited), or whose leaf is another event's record (moved with its tag)."""
    sha, unpack = hashlib.sha256, codec.of(log.conn).unpack
    rows = []
    for seq, body, tag in log.conn.execute("SELECT seq, body, tag FROM entries WHERE seq >= ? AND seq <= ? ORDER BY seq", (first, last)):
        try:
            leaf = unpack(body)
        except ValueError:
            raise _Tampered(f"event {seq} is damaged: its stored body cannot be read", seq) from None
        if sha(b"\x00" + leaf).digest()[:4] != bytes(tag):
            raise _Tampered(f"event {seq} was edited: its content does not match its leaf hash", seq)
        rows.append((seq, leaf, None))
    _find_moved(rows)


def _find_damaged(log, rows: list) -> None:
    for seq, body in rows:
        try:
            codec.of(log.conn).unpack(body)
        except ValueError:
            raise _Tampered(f"event {seq} is damaged: its stored body cannot be read", seq) from None
    raise _Tampered("an event's stored body cannot be read")


def _find_gap(rows: list, expected: int) -> None:
    for i, row in enumerate(rows):
        seq, gap = row[0], expected + i
        if seq == gap:
            continue
        if seq < gap:  # only when seq is no longer the table's INTEGER PRIMARY KEY
            raise _Tampered(f"event {seq} appears again after event {gap - 1}", seq)
        raise _Tampered(f"event {gap} is missing: the log skips from {gap - 1} to {seq}" if seq == gap + 1 else
                        f"events {gap}..{seq - 1} are missing: the log skips from {gap - 1} to {seq}", gap, seq - 1)


def _span(first: int, last: int, verb: str = "") -> str:
    """"event 9" or "events 9..12", with ``verb`` ("was", "do") agreeing."""
    if first == last:
        return f"event {first}" + (f" {verb}" if verb else "")
    plural = {"was": "were", "does": "do"}.get(verb, verb)
    return f"events {first}..{last}" + (f" {plural}" if plural else "")


def _find_moved(rows: list) -> None:
    """Raise at the first row whose leaf is another event's record: its own ``seq`` is not the row's.
    (The last "seq" key of canonical JSON is the top-level one: only "time" and "version", strings,
    follow it, and quotes inside strings are escaped.)"""
    for seq, leaf, _ in rows:
        if not leaf.startswith(b'"seq":%d,' % seq, leaf.rfind(b'"seq":')):
            inner = _inner_seq(leaf)
            raise _Tampered(f"event {seq} holds the record of event {inner}: rows were reordered or replaced" if inner is not None else
                            f"event {seq} holds no sequence number of its own: it was replaced", seq)


def _inner_seq(leaf: bytes) -> int | None:
    try:
        value = json.loads(leaf).get("seq")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
