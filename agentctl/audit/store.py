"""Reading the stored log (schema version 3): leaves, leaf hashes and tree nodes, and queries.

An event's leaf is its deflated body in ``entries`` (:mod:`agentctl.audit.codec`), or, once
``audit prune`` dropped it, only its leaf hash in ``pruned``. Of the tree, the perfect subtrees at
every fourth level are stored (``nodes``); a node at another level is hashed from the at most 8
nodes (or leaves) of the stored level below it. So a proof still takes O(log n) lookups.
"""

from __future__ import annotations

import hashlib
import sqlite3

from ..errors import StoreError, UsageError
from . import codec
from .schema import STORED_LEVEL_STEP

__all__ = ["size", "pruned_through", "leaf_hash", "get_node", "leaf", "require_leaf", "query", "export"]

_STEP = STORED_LEVEL_STEP


def size(conn: sqlite3.Connection) -> int:
    """The number of events ever appended (kept or pruned)."""
    return conn.execute("SELECT MAX(COALESCE((SELECT MAX(seq) FROM entries), 0), COALESCE((SELECT MAX(seq) FROM pruned), 0))").fetchone()[0]


def pruned_through(conn: sqlite3.Connection) -> int:
    """The last pruned event (0 when none was): pruning always drops a prefix of the log."""
    return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM pruned").fetchone()[0]


def stored(level: int) -> bool:
    return level > 0 and level % _STEP == 0


def _leaf_hashes(conn, first: int, count: int, where: str) -> list[bytes]:
    """The leaf hashes of events ``first`` .. ``first + count - 1`` (kept or pruned)."""
    out = {}
    for seq, body in conn.execute("SELECT seq, body FROM entries WHERE seq >= ? AND seq < ?", (first, first + count)):
        try:
            out[seq] = codec.of(conn).leaf_hash(body)
        except ValueError as e:
            raise StoreError(f"the audit log {where} holds a damaged event {seq}: {e}") from None
    if len(out) < count:
        for seq, h in conn.execute("SELECT seq, leaf_hash FROM pruned WHERE seq >= ? AND seq < ?", (first, first + count)):
            out.setdefault(seq, bytes(h))
    if len(out) < count:
        missing = next(s for s in range(first, first + count) if s not in out)
        raise StoreError(f"the audit log {where} lacks event {missing} (and its leaf hash)")
    return [out[s] for s in range(first, first + count)]


def leaf_hash(conn, seq: int, where: str = "") -> bytes:
    return _leaf_hashes(conn, seq, 1, where)[0]


def _fold_perfect(hashes: list[bytes]) -> bytes:
    sha = hashlib.sha256
    while len(hashes) > 1:
        hashes = [sha(b"\x01" + a + b).digest() for a, b in zip(hashes[0::2], hashes[1::2])]
    return hashes[0]


def get_node(conn, level: int, index: int, where: str = "") -> bytes:
    """The root of the perfect subtree ``(level, index)``: stored, or hashed from the stored level below."""
    if level == 0:
        return leaf_hash(conn, index + 1, where)
    if stored(level):
        row = conn.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)).fetchone()
        if row is None:
            raise StoreError(f"the audit log {where} lacks the tree node at level {level}, index {index}")
        return bytes(row[0])
    base = level - level % _STEP
    span = 1 << (level - base)
    first = index * span
    if base == 0:
        return _fold_perfect(_leaf_hashes(conn, first + 1, span, where))
    hashes = [bytes(h) for (h,) in conn.execute(
        "SELECT hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx", (base, first, first + span))]
    if len(hashes) != span:
        raise StoreError(f"the audit log {where} lacks tree nodes at level {base} under level {level}, index {index}")
    return _fold_perfect(hashes)


def leaf(conn, seq: int) -> tuple[str, bytes] | None:
    """(leaf text, leaf hash) of a kept event; None when there is no such event or it was pruned."""
    if not 0 < seq < 2**63:
        return None
    row = conn.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        return None
    data = codec.of(conn).unpack(row[0])
    return data.decode("utf-8"), hashlib.sha256(b"\x00" + data).digest()


def require_leaf(conn, seq: int) -> tuple[str, bytes]:
    """:func:`leaf`, or a :class:`UsageError` saying there is no such event, or that it was pruned."""
    row = leaf(conn, seq)
    if row is None:
        if 0 < seq <= pruned_through(conn):
            raise UsageError(f"audit event {seq} was pruned: its body is held by the archive or central store it was pruned after",
                             hint="prove it from there; the tree still holds its leaf hash")
        raise UsageError(f"no audit event {seq} (the log has {size(conn)})")
    return row


def _time(t: float) -> int:
    from ..clock import rfc3339

    return codec.parse_time_us(rfc3339(t, micro=True)) or 0  # exactly as the leaf records a time


def query(conn, *, agent=None, action=None, outcome=None, since=None, until=None, limit=None) -> list[bytes]:
    """The leaves of kept events matching every filter given, newest first (by time, then seq).

    One index does the work: the first of principal, action, outcome that is given (each is indexed
    together with time), else time; the other filters are kept off their own indexes (unary ``+``)
    so SQLite, which has no statistics here, cannot pick a worse one."""
    where, args = [], []
    driver = "principal" if agent is not None else "action" if action is not None else "outcome" if outcome is not None else None
    for column, value in (("principal", agent), ("action", action), ("outcome", outcome)):
        if value is not None:  # the index holds a hash of the name: the name itself is compared too
            where.append(f"{'' if column == driver else '+'}audit_key(body, '{column}') = ? AND +audit_field(body, '{column}') = ?")
            args += [codec.key(value), value]
    if since is not None:
        where.append("audit_time(body) >= ?")
        args.append(_time(since))
    if until is not None:
        where.append("audit_time(body) <= ?")
        args.append(_time(until))
    sql = "SELECT body FROM entries" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY audit_time(body) DESC, seq DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(min(limit, 2**63 - 1))  # SQLite integers are 64-bit; any larger limit means all
    unpack = codec.of(conn).unpack
    return [unpack(r[0]) for r in conn.execute(sql, args)]


def export(conn, since=None):
    """The leaves (text) of kept events in log order; with ``since``, those at or after it by time."""
    if since is None:
        rows = conn.execute("SELECT body FROM entries ORDER BY seq")
    else:
        rows = conn.execute("SELECT body FROM entries WHERE audit_time(body) >= ? ORDER BY audit_time(body), seq", (_time(since),))
    unpack = codec.of(conn).unpack
    for (body,) in rows:
        yield unpack(body).decode("utf-8")
