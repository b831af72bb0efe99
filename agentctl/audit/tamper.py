"""The tamper verifier: recompute an audit log's tree and check everything that vouches for it.

:func:`verify` reads the whole log and reports the first problem it finds as a :class:`VerifyReport`
naming the events at fault where the evidence can say which. It only reads: the log is opened with
:meth:`AuditLog.open_existing`, which never creates a file or writes a schema.
"""

from __future__ import annotations

import hashlib
import json
import operator
import sqlite3
import zlib
from dataclasses import dataclass
from typing import Callable

from ..errors import OperationalError
from . import codec, store, tree
from .log import AuditLog
from .naming import _find_damaged, _find_gap, _name_edited, _span, _Tampered
from .note import NoteError, parse_checkpoint, parse_kept_checkpoint, verify_note
from .schema import TABLES, TRIGGERS, schema_problems
from .sweep import sweep

__all__ = ["VerifyReport", "verify"]

#: verify reads and hashes the log in chunks of 2**_CHUNK_LEVEL events: the subtrees of a chunk are
#: computed in memory and compared with the stored nodes a level at a time.
_CHUNK_LEVEL = 14


@dataclass
class VerifyReport:
    """What ``verify`` found. When something is wrong, ``first_bad_seq``..``last_bad_seq`` are the
    events it narrows the problem to (equal when it names one event; None when no event is at fault,
    or the evidence cannot say which: a rewrite that recomputed every hash shows only at a checkpoint)."""

    ok: bool
    size: int
    checkpoints: int
    problem: str | None = None
    first_bad_seq: int | None = None
    external: dict | None = None
    last_bad_seq: int | None = None
    pruned: int = 0  # events 1..pruned were pruned: their leaf hashes were checked, their bodies are elsewhere

    def __post_init__(self) -> None:
        if self.last_bad_seq is None:
            self.last_bad_seq = self.first_bad_seq

    def doc(self) -> dict:
        return {"ok": self.ok, "size": self.size, "checkpoints_checked": self.checkpoints, "problem": self.problem,
                "first_bad_seq": self.first_bad_seq, "last_bad_seq": self.last_bad_seq, "external_checkpoint": self.external,
                "pruned_through": self.pruned}


def verify(log: AuditLog, host_keys: dict[str, list[bytes]], external: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check the whole log, in this order, and report the first problem:

    1. its tables are all there;
    2. every event, in ``seq`` order: no gap, its leaf hash, and every stored tree node equal to
       the one recomputed from the leaves (where they differ, a row holding another event's record
       is named);
    3. the tree frontier (no event cut from the end or added around ``append``) and no tree node
       past the last event;
    4. every stored checkpoint: its signature by a host key, its origin, size and root, and the
       root at its size; every ``checkpoint`` event's checkpoint is still stored;
    5. a checkpoint kept elsewhere (``external``): its origin, its signature, and this log's root
       at its size;
    6. the schema, by definition: every table, column, index and trigger is the one the log's
       recorded migrations make (SQL compared, not names), so a column redefined to hide events or
       a trigger replaced by one that does nothing is found; a missing trigger is named as such.

    ``progress(done, total)``, when given, is told how many events have been read and hashed so far
    (for a progress line: the checks after the tree are quick).

    Returns a report; raises :class:`UsageError` when ``external`` is not a checkpoint at all and
    :class:`OperationalError` when SQLite cannot read the database."""
    ext = parse_kept_checkpoint(external) if external is not None else None
    state = {"size": 0, "checked": 0, "pruned": 0}
    try:
        _verify(log, host_keys, ext, state, progress)
    except _Tampered as t:
        return VerifyReport(False, state["size"], state["checked"], t.problem, t.first,
                            _ext_doc(ext), t.last, state["pruned"])
    except sqlite3.DatabaseError as e:
        raise OperationalError(f"cannot read the audit log {log.path}: {e}") from None
    return VerifyReport(True, state["size"], state["checked"], external=_ext_doc(ext), pruned=state["pruned"])

def _verify(log, host_keys, ext, state: dict, progress=None) -> None:
    names = {r[0]: r[1] for r in log.conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    missing = [t for t in TABLES if names.get(t) != "table"]
    if missing:
        raise _Tampered(f"the audit log's {', '.join(missing)} table{'s were' if len(missing) > 1 else ' was'} removed")

    swept = sweep(log, log.versions(), progress)  # the fast sweep; the exact walk when it finds anything amiss, to name it
    if swept is not None:
        size, state["pruned"] = swept
    else:
        size = _verify_tree(log, state, progress)
    state["size"] = size
    _verify_pruned(log, state["pruned"])
    _verify_frontier(log, size)
    _verify_no_extra_nodes(log, size)

    # Every node is now known to be the hash of its events: roots at any size come from them.
    memo: dict = {}

    def node(level: int, index: int) -> bytes:
        key = (level, index)
        if key not in memo:
            memo[key] = log._get_node(level, index)
        return memo[key]

    good = 0  # the largest size whose root a stored checkpoint confirmed
    stored = log.checkpoints()
    for cp_size, cp_root, note in stored:
        try:
            origin, n, root = parse_checkpoint(_verify_note(log, note, host_keys))
        except NoteError as e:
            raise _Tampered(f"the checkpoint stored at size {cp_size} does not verify with the host audit key: {e}") from None
        if n != cp_size or root != cp_root or origin != log.origin:
            raise _Tampered(f"the checkpoint stored at size {cp_size} does not match its signed note (size {n}, origin {origin})")
        if cp_size > size:
            raise _Tampered(f"the log is truncated: a checkpoint covers {cp_size} events, the log holds {size}", size + 1, cp_size)
        if tree.root_at(cp_size, node) != cp_root:
            raise _Tampered(f"{_span(good + 1, cp_size, 'does')} not match the checkpoint signed at size {cp_size}: history was rewritten"
                            + (f" (the checkpoint at size {good} still matches)" if good else ""))
        good = cp_size
        state["checked"] += 1

    sizes = {s for s, _, _ in stored}
    for seq, body in log.conn.execute(f"SELECT seq, body FROM entries WHERE {_MARKS} AND audit_field(body, 'event') = 'checkpoint' ORDER BY seq"):
        doc = json.loads(codec.of(log.conn).unpack(body))
        if doc.get("event") != "checkpoint":
            continue
        recorded = (doc.get("metadata") or {}).get("size")
        if isinstance(recorded, int) and recorded not in sizes:
            raise _Tampered(f"event {seq} records a checkpoint of {recorded} events that is no longer stored: checkpoints were removed")

    if ext is not None:
        ext_size, ext_root, ext_origin, ext_text = ext
        if ext_origin != log.origin:
            raise _Tampered(f"the kept checkpoint is of another log ({ext_origin}; this one is {log.origin})")
        try:
            _verify_note(log, ext_text, host_keys)
        except NoteError as e:
            raise _Tampered(f"the kept checkpoint does not verify with this host's audit key ({e}): "
                            "the audit key was replaced, or the checkpoint is forged") from None
        if ext_size > size:
            raise _Tampered(f"the log is truncated: the kept checkpoint covers {ext_size} events, the log holds {size}", size + 1, ext_size)
        lower = max((s for s in sizes if s <= ext_size), default=0)
        if tree.root_at(ext_size, node) != ext_root:
            raise _Tampered(f"the log is not an extension of the kept checkpoint (size {ext_size}): "
                            f"history at or before event {ext_size} was rewritten"
                            + (f" (after event {lower}, where a stored checkpoint still matches)" if lower else ""))

    gone = [t for t in TRIGGERS if names.get(t) != "trigger"]
    if gone:
        raise _Tampered(f"the append-only triggers were removed ({', '.join(gone)}): the log was opened for editing")
    versions = log.versions()
    if versions != tuple(range(1, len(versions) + 1)):
        raise _Tampered(f"the schema was altered: the recorded migrations are {list(versions)}, not 1..{len(versions)}")
    changed = schema_problems(log.conn, versions)
    if changed:
        raise _Tampered(f"the schema was altered: {'; '.join(changed)} (compared with the definitions agentctl makes): "
                        "queries of the log cannot be trusted")


_MARKS = "audit_field(body, 'event') IN ('checkpoint', 'audit_archive', 'audit_prune')"  # the partial index entries_marks


def _chunks(log, chunk: int, state: dict):
    """The log's leaf hashes in aligned chunks of ``chunk``, with the kept events' (seq, leaf): the
    pruned prefix's kept hashes first, then every kept event's body inflated and hashed. Gaps and
    repeats raise :class:`_Tampered`."""
    sha, dobj, wbits = hashlib.sha256, zlib.decompressobj, codec.WBITS
    zds = codec.of(log.conn).load()  # every dictionary the log's bodies name (by their first byte)
    pruned = log.conn.execute("SELECT seq, leaf_hash FROM pruned ORDER BY seq")
    kept = log.conn.execute("SELECT seq, body FROM entries ORDER BY seq")
    expected = 1
    while True:
        hashes: list[bytes] = []
        if pruned is not None:
            prows = pruned.fetchmany(chunk)
            if prows:
                if prows[0][0] != expected or prows[-1][0] != expected + len(prows) - 1:
                    _find_gap(prows, expected)
                hashes = [bytes(h) for _, h in prows]
                expected += len(prows)
                state["pruned"] = expected - 1
            if len(prows) < chunk:
                pruned = None
        if len(hashes) < chunk and pruned is None:
            krows = kept.fetchmany(chunk - len(hashes))
            if krows:
                if krows[0][0] != expected or krows[-1][0] != expected + len(krows) - 1:
                    _find_gap(krows, expected)
                try:  # the tightest loop: inflate and hash (tags and seqs are read only to name a mismatch)
                    hashes += [sha(b"\x00" + dobj(wbits, zds[b[0]]).decompress(b[1:])).digest() for _, b in krows]
                except (zlib.error, KeyError, IndexError):
                    _find_damaged(log, krows)
                expected += len(krows)
        if not hashes:
            return
        yield hashes


def _verify_tree(log, state: dict, progress=None) -> int:
    """Read every event in order, in chunks: no gap, and every stored node equal to the one
    recomputed from the leaves (pruned events by their kept leaf hashes). Returns the number of events."""
    chunk = 1 << _CHUNK_LEVEL
    base = 0
    tops: list[bytes] = []  # roots of the full chunks, level _CHUNK_LEVEL
    total = log.size if progress is not None else 0
    for hashes in _chunks(log, chunk, state):
        try:
            top = _verify_levels(log, hashes, base, 0)
        except _Tampered:
            _name_edited(log, base + 1, base + len(hashes))  # name the event exactly where the rows can
            raise
        if len(hashes) == chunk:
            assert top is not None  # a full chunk is one perfect subtree
            tops.append(top)
        base += len(hashes)
        if progress is not None:
            progress(base, max(total, base))
    if tops:
        _verify_levels(log, tops, 0, _CHUNK_LEVEL)
    return base


def _verify_levels(log, hashes: list[bytes], base: int, level0: int) -> bytes | None:
    """Hash ``hashes`` (the nodes at ``level0`` from index ``base``) up level by level, comparing
    every stored perfect subtree (every fourth level) with the recomputed one. Returns the top hash
    when they form one subtree."""
    sha = hashlib.sha256
    level, cur = level0, hashes
    while len(cur) > 1:
        cur = [sha(b"\x01" + a + b).digest() for a, b in zip(cur[0::2], cur[1::2])]
        level += 1
        if not store.stored(level):
            continue
        start = base >> (level - level0)
        stored = list(map(_first, log.conn.execute(
            "SELECT hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx", (level, start, start + len(cur)))))
        if stored != cur:
            have = dict(log.conn.execute(
                "SELECT idx, hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ?", (level, start, start + len(cur))))
            idx = next(start + i for i, h in enumerate(cur) if have.get(start + i) != h)
            first, last = (idx << level) + 1, (idx + 1) << level
            if idx not in have:
                raise _Tampered(f"the tree node over events {first}..{last} (level {level}, index {idx}) is missing", first, last)
            raise _Tampered(f"events {first}..{last} do not match the tree stored over them (level {level}, index {idx}): "
                            "one of them was edited or replaced (or a pruned one's kept leaf hash), or the tree was altered", first, last)
    return cur[0] if len(cur) == 1 else None


def _verify_pruned(log, through: int) -> None:
    """Bodies are dropped only by ``audit prune``, which records what it dropped in an event."""
    if not through:
        return
    row = log.conn.execute(f"SELECT seq, body FROM entries WHERE {_MARKS} AND audit_field(body, 'event') = 'audit_prune' "
                           "ORDER BY seq DESC LIMIT 1").fetchone()
    recorded = (json.loads(codec.of(log.conn).unpack(row[1])).get("metadata") or {}).get("last") if row else None
    if recorded != through:
        raise _Tampered(f"{_span(1, through, 'was')} dropped, but no audit prune recorded dropping them"
                        + (f" (the last prune recorded dropping events through {recorded})" if recorded is not None else "")
                        + ": events were deleted outside agentctl", 1, through)


def _verify_no_extra_nodes(log, size: int) -> None:
    """A node past the end of the log means the log once held more events."""
    for cond in ("level < 1", "level > 63", "level % 4 != 0"):
        row = log.conn.execute(f"SELECT level, idx FROM nodes WHERE {cond} LIMIT 1").fetchone()
        if row is not None:
            raise _Tampered(f"the tree holds a node at level {row[0]}, which no log has: the tree was altered")
    implied = size
    for level in range(1, 64):
        top = log.conn.execute("SELECT MAX(idx) FROM nodes WHERE level = ?", (level,)).fetchone()[0]
        if top is not None:
            implied = max(implied, (top + 1) << level)
    if implied > size:
        raise _Tampered(f"the log ends at event {size}, but its tree covers at least {implied} events: "
                        f"{_span(size + 1, implied, 'was')} cut", size + 1, implied)

def _verify_frontier(log, size: int) -> None:
    raw = log.meta("frontier")
    if raw is None:
        if size:
            raise _Tampered(f"the tree frontier of the {size} events is missing: the log was altered")
        return
    try:
        cr = tree.CompactRange.from_bytes(bytes.fromhex(raw))
    except ValueError as e:
        raise _Tampered(f"the tree frontier is damaged: {e}") from None
    if cr.size > size:
        raise _Tampered(f"the log ends at event {size}, but its tree frontier records {cr.size} events: "
                        f"{_span(size + 1, cr.size, 'was')} cut", size + 1, cr.size)
    if cr.size < size:
        raise _Tampered(f"{_span(cr.size + 1, size, 'was')} added outside agentctl: the tree frontier ends at event {cr.size}",
                        cr.size + 1, size)
    mine = tree.CompactRange.from_nodes(size, log._get_node)
    if cr != mine:  # name the subtree at fault: below the stored levels only the frontier pins the newest events
        first, k = 1, 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                last = first + (1 << level) - 1
                if cr.hashes[k] != mine.hashes[k]:
                    _name_edited(log, first, last)
                    raise _Tampered(f"{_span(first, last, 'does')} not match the tree frontier: "
                                    f"{'it was' if first == last else 'one of them was'} edited along with its leaf hash, "
                                    "or the frontier was altered", first, last)
                first, k = last + 1, k + 1
        raise _Tampered("the tree frontier does not match the tree: it was altered")

def _verify_note(log, note: str, host_keys: dict[str, list[bytes]]) -> str:
    last: Exception | None = None
    for name, keys in host_keys.items():
        for public in keys:
            try:
                return verify_note(note, name, public)
            except NoteError as e:
                last = e
    raise NoteError(str(last) if last else "no audit key is known to check it")


def _ext_doc(ext) -> dict | None:
    return {"size": ext[0], "origin": ext[2]} if ext is not None else None


_first = operator.itemgetter(0)
