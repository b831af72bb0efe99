"""The fast sweep of an audit log's tree: every event read, inflated and hashed, every stored node
compared with the recomputed one, on two cores where the log is large and the platform allows.

It answers only "the tree holds" (with the log's size and pruned prefix) or "look closer" (None):
:mod:`agentctl.audit.tamper` then walks the log event by event and names what is at fault, so every
finding and its wording come from one place. It runs only where counting rows proves the sequence:
the schema is agentctl's own (``seq`` the INTEGER PRIMARY KEY of ``entries`` and ``pruned``: unique
integers), ``pruned`` holds exactly events 1..P and ``entries`` exactly P+1..size.

The work splits by ranges of 2**_RANGE_LEVEL events (perfect subtrees). On Linux, with at least two
usable cores, no other thread running and a log of at least :data:`_FORK_AT` events, the log is swept
in segments: the parent reads one share of a segment's bodies, forks a child that inflates and hashes
them (SQLite is never used in the child: it works on the bodies it inherited), sweeps the other
share itself meanwhile, and reads the child's subtree hashes from a pipe. Anything unexpected from
the child (it died, said less) only sends the log to the exact walk: never to a verdict.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import zlib

from . import codec, store
from .schema import schema_problems

__all__ = ["sweep"]

_RANGE_LEVEL = 11  # ranges of 2,048 events: fine enough to balance two processes
_SEGMENT = 1 << 18  # events a fork: the parent reads the next segment's share while the child hashes
_FIRST_SEGMENT = 1 << 15  # smaller: its child's share is read before anything overlaps it
_FORK_AT = 1 << 16  # smaller logs are swept in one process (a fork costs ~2 ms)
_CHILD_SHARE = 0.56  # the child only hashes; the parent also reads its share and the child's


def sweep(log, versions: tuple[int, ...], progress=None) -> tuple[int, int] | None:
    """``(size, pruned_through)`` when every event is present once, in order, and every stored
    node (of a complete subtree) equals the one recomputed from the leaves; None when the log needs the
    exact walk (something is off, or it is not the shape counting can vouch for). ``progress(done,
    total)``, when given, is told the events swept so far."""
    try:
        return _sweep(log, versions, progress)
    except (sqlite3.Error, ValueError, TypeError, KeyError, IndexError, AttributeError, zlib.error, OSError):
        return None


def _sweep(log, versions, progress=None) -> tuple[int, int] | None:
    conn = log.conn
    if versions != tuple(range(1, len(versions) + 1)) or schema_problems(conn, versions):
        return None
    pcount, pmin, pmax = conn.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM pruned").fetchone()
    emin = conn.execute("SELECT MIN(seq) FROM entries").fetchone()[0]
    emax = conn.execute("SELECT MAX(seq) FROM entries").fetchone()[0]
    pruned = pmax or 0
    if emin is None or pcount != pruned or (pcount and pmin != 1) or emin != pruned + 1:
        return None
    state = _State(conn, emax, pruned, progress)
    try:
        return (emax, pruned) if state.run() else None
    finally:
        for pid, r in state.children:  # forked and not collected: the parent failed meanwhile
            os.close(r)  # the child's next write fails: it exits
            os.waitpid(pid, 0)


class _State:
    def __init__(self, conn, size: int, pruned: int, progress=None) -> None:
        self.conn, self.size, self.pruned, self.progress = conn, size, pruned, progress
        self.zds = codec.of(conn).load()
        self.levels = [lv for lv in range(1, _RANGE_LEVEL + 1) if store.stored(lv)]
        self.parts: dict[int, list[bytes]] = {lv: [] for lv in self.levels}  # every stored node below the ranges' tops
        self.tops: list[bytes] = []  # the full ranges' tops
        self.children: list[tuple[int, int]] = []

    def run(self) -> bool:
        conn, size, pruned, zds = self.conn, self.size, self.pruned, self.zds
        width = 1 << _RANGE_LEVEL
        fork = size >= _FORK_AT and _can_fork()
        pending = None  # the previous segment: its child hashes while the next segment's share is read
        start, seg = 1, _FIRST_SEGMENT
        while start <= size:
            ranges = [(a, min(a + width, size + 1)) for a in range(start, min(start + seg, size + 1), width)]
            before = start - 1  # the events of the segments before this one
            start, seg = start + seg, _SEGMENT
            full = sum(1 for a, b in ranges if b - a == width)
            k = min(full, round(len(ranges) * _CHILD_SHARE)) if fork and len(ranges) > 1 else 0
            theirs = [_inputs(conn, a, b, pruned) for a, b in ranges[:k]]
            if pending is not None and not self.finish(*pending):
                return False
            if self.progress is not None and pending is not None:
                self.progress(before, size)
            child = _spawn(theirs, zds, self.levels) if k else None
            if child is not None:
                self.children.append(child)
            del theirs
            pending = (child, k, [_hash_range(*_inputs(conn, a, b, pruned), zds) for a, b in ranges[k:]])
        if pending is not None and not self.finish(*pending):
            return False
        if self.progress is not None:
            self.progress(size, size)
        if not all(_same(conn, lv, b"".join(self.parts[lv])) for lv in self.levels):
            return False
        ups, _ = _up(self.tops, _RANGE_LEVEL)
        return all(_same(conn, lv, joined) for lv, joined in ups)

    def finish(self, child, k: int, mine: list) -> bool:
        """Add a segment's ranges, the child's first, to the nodes to compare."""
        if child is not None:
            self.children.remove(child)
            got = _collect(child, k, self.levels)
            if got is None:
                return False
            mine = got + mine
        for ups, top, n in mine:
            for lv, joined in ups:
                self.parts[lv].append(joined)
            if n == 1 << _RANGE_LEVEL:
                self.tops.append(top)
        return True


def _inputs(conn, a: int, b: int, pruned: int) -> tuple[list, list]:
    """The kept leaf hashes and the bodies of events a..b-1 (checked to be all there)."""
    hashes = []
    if a <= pruned:
        hashes = [bytes(h) for (h,) in conn.execute("SELECT leaf_hash FROM pruned WHERE seq >= ? AND seq < ? ORDER BY seq",
                                                    (a, min(b, pruned + 1)))]
    rows = conn.execute("SELECT body FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq", (max(a, pruned + 1), b)).fetchall() \
        if b > pruned + 1 else []
    if len(hashes) + len(rows) != b - a:
        raise ValueError("events are missing")
    return hashes, rows


def _hash_range(hashes: list, rows: list, zds: dict) -> tuple[list, bytes | None, int]:
    """A range's stored-level nodes (joined per level), its top and its number of events."""
    sha, dobj, wbits = hashlib.sha256, zlib.decompressobj, codec.WBITS
    # the tightest loop: inflate and hash (the same expression as the exact walk's)
    hashes += [sha(b"\x00" + dobj(wbits, zds[b[0]]).decompress(b[1:])).digest() for (b,) in rows]
    ups, top = _up(hashes, 0)
    return ups, top, len(hashes)


def _up(cur: list, level: int) -> tuple[list, bytes | None]:
    """Hash ``cur`` (nodes at ``level``) up: the complete nodes of every stored level above, joined."""
    sha = hashlib.sha256
    ups = []
    while len(cur) > 1:
        cur = [sha(b"\x01" + a + b).digest() for a, b in zip(cur[0::2], cur[1::2])]
        level += 1
        if store.stored(level):
            ups.append((level, b"".join(cur)))
    return ups, (cur[0] if len(cur) == 1 else None)


def _same(conn, level: int, joined: bytes) -> bool:
    """The stored nodes of ``level`` from index 0 are exactly these (32 bytes each)."""
    n = len(joined) // 32
    stored = [h for (h,) in conn.execute("SELECT hash FROM nodes WHERE level = ? AND idx < ? ORDER BY idx", (level, n))]
    return (len(stored) == n and all(type(h) is bytes and len(h) == 32 for h in stored)
            and b"".join(stored) == joined)


# --- two processes -----------------------------------------------------------------------------------


def _can_fork() -> bool:
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False  # elsewhere a fork is unsafe (macOS) or missing (Windows), and a spawn costs more than it saves
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False  # never fork a process with other threads running
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) > 1


def _spawn(inputs: list, zds: dict, levels: list) -> tuple[int, int]:
    """Fork a child that hashes ``inputs`` (full ranges) and writes their nodes and tops to a pipe."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # the child: no SQLite, no stdio, no exit handlers
        code = 1
        try:
            os.close(r)
            out = []
            for hashes, rows in inputs:
                ups, top, _ = _hash_range(hashes, rows, zds)
                out += [j for _, j in ups]
                if _RANGE_LEVEL not in levels:
                    out.append(top)
            data = memoryview(b"\x01" + b"".join(out))
            while data:
                data = data[os.write(w, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(child: tuple[int, int], k: int, levels: list) -> list | None:
    """The child's ranges as :func:`_hash_range` gives them, or None if it did not deliver them all."""
    pid, r = child
    chunks = []
    try:
        while True:
            b = os.read(r, 1 << 20)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    sizes = [32 << (_RANGE_LEVEL - lv) for lv in levels]
    per = sum(sizes) + (0 if _RANGE_LEVEL in levels else 32)
    if data[:1] != b"\x01" or len(data) != 1 + k * per:
        return None
    got, pos = [], 1
    for _ in range(k):
        ups = []
        for lv, n in zip(levels, sizes):
            ups.append((lv, data[pos:pos + n]))
            pos += n
        if _RANGE_LEVEL in levels:
            top = ups[-1][1]
        else:
            top, pos = data[pos:pos + 32], pos + 32
        got.append((ups, top, 1 << _RANGE_LEVEL))
    return got
