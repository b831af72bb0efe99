"""Retention: archives of the log that verify offline, and pruning the bodies others already hold.

An *archive* (``audit archive -o FILE``) is JSON Lines: a header, then the leaves (canonical JSON) of
events ``first``..``last`` in order. The header holds the signed checkpoint of ``last`` events and the
compact range of the ``first - 1`` events before (the roots of at most 64 perfect subtrees; empty
when the archive starts at event 1), so anyone with the host's audit key recomputes the checkpoint's
root from the file alone (:func:`check_archive`). Writing one is recorded (``audit_archive``).

*Pruning* (``audit prune --before WHEN``) drops the bodies of the oldest events, always a prefix of
the log, and only those an archive recorded in this log or the central store (a checkpoint there,
signed by this host and matching this log) already holds. Each dropped event's leaf hash is kept
(``pruned``), so the tree, every proof and every checkpoint still recompute; the schema's trigger
lets a body go only once its true leaf hash is kept, and ``audit verify`` checks that the last
``audit_prune`` event accounts for every pruned event. Pruning is recorded (``audit_prune``).
"""

from __future__ import annotations

import base64
import hashlib
import json

from ..errors import DeniedError, UsageError
from ..events import Event
from . import store, tree
from .note import NoteError, parse_checkpoint, verify_note

__all__ = ["FORMAT", "archive_text", "check_archive", "archived_through", "central_through", "prune"]

FORMAT = "agentctl-audit-archive/1"
_MARKS = "audit_field(body, 'event') IN ('checkpoint', 'audit_archive', 'audit_prune')"  # the partial index entries_marks


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def archive_text(log) -> tuple[str, dict]:
    """The archive of every kept event the newest stored checkpoint covers: (text, header)."""
    latest = log.latest_checkpoint()
    first = store.pruned_through(log.conn) + 1
    if latest is None or latest[0] < first:
        raise UsageError("there is nothing to archive: no checkpoint covers a kept event", hint="take one: agentctl audit checkpoint")
    size, root, note = latest
    prefix = tree.CompactRange.from_nodes(first - 1, log._get_node)
    header = {"format": FORMAT, "origin": log.origin, "first": first, "last": size, "root": _b64(root),
              "prefix": _b64(prefix.to_bytes()), "checkpoint": note}
    lines = [json.dumps(header, sort_keys=True, separators=(",", ":"))]
    lines += [leaf for leaf in _leaves(log, first, size)]
    return "\n".join(lines) + "\n", header


def _leaves(log, first: int, last: int):
    from . import codec

    unpack = codec.of(log.conn).unpack
    for (body,) in log.conn.execute("SELECT body FROM entries WHERE seq >= ? AND seq <= ? ORDER BY seq", (first, last)):
        yield unpack(body).decode("utf-8")


def archive_event(header: dict, text: str, principal: str | None) -> Event:
    """The event recording that an archive was written (its digest names the file)."""
    return Event("audit_archive", "ok", principal=principal, metadata={
        "first": header["first"], "last": header["last"], "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()})


def check_archive(text: str, host_keys: dict[str, list[bytes]], log=None) -> dict:
    """Check an archive alone: its header, its checkpoint's signature by one of ``host_keys``, and the
    root recomputed from its prefix and leaves; with ``log``, also that it is of this log and that
    the log still has that root. Raises :class:`UsageError` for a file that is no archive and
    :class:`DeniedError` for one that does not verify; returns a summary."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UsageError(f"not an agentctl audit archive (its first line is no {FORMAT} header)")
    try:
        first, last, note = header["first"], header["last"], header["checkpoint"]
        prefix = tree.CompactRange.from_bytes(base64.b64decode(header["prefix"], validate=True))
        if not (isinstance(first, int) and isinstance(last, int) and isinstance(note, str)):
            raise ValueError("bad field types")
    except (KeyError, ValueError, TypeError) as e:
        raise UsageError(f"the archive's header is damaged: {e}") from None
    body = None
    for name, keys in host_keys.items():
        for public in keys:
            try:
                body = verify_note(note, name, public)
                break
            except NoteError:
                continue
        if body is not None:
            break
    if body is None:
        raise DeniedError("the archive's checkpoint is not signed by this host's audit key", hint="is the archive of another home?")
    origin, size, root = parse_checkpoint(body)
    if size != last or prefix.size != first - 1 or len(lines) - 1 != last - first + 1:
        raise DeniedError(f"the archive claims events {first}..{last} under a checkpoint of {size} events "
                          f"and holds {len(lines) - 1}: it was cut or altered")
    cr = prefix
    for i, leaf in enumerate(lines[1:], first):
        raw = leaf.encode("utf-8")
        if f'"seq":{i},' not in leaf:
            raise DeniedError(f"the archive's line for event {i} holds another event")
        cr.append(tree.leaf_hash(raw))
    if cr.root() != root:
        raise DeniedError(f"the archive's events do not match its checkpoint (size {size}): it was altered")
    if log is not None:
        if origin != log.origin:
            raise DeniedError(f"the archive is of another log ({origin}; this one is {log.origin})")
        if size > log.size or tree.root_at(size, log._get_node) != root:
            raise DeniedError(f"this log does not match the archive's checkpoint (size {size})",
                              hint="agentctl audit verify says what changed")
    return {"ok": True, "origin": origin, "first": first, "last": last, "events": last - first + 1, "checkpoint_size": size}


def archived_through(log) -> int:
    """The last event an archive recorded in this log holds (0 when none)."""
    from . import codec

    best = 0
    for (body,) in log.conn.execute(f"SELECT body FROM entries WHERE {_MARKS} AND audit_field(body, 'event') = 'audit_archive'"):
        last = (json.loads(codec.of(log.conn).unpack(body)).get("metadata") or {}).get("last")
        if isinstance(last, int):
            best = max(best, last)
    return best


def central_through(url: str, log, name: str, public: bytes, vkey: str) -> int:
    """How many events of this log the central store holds under a checkpoint it keeps that this
    host signed and this log still matches (0 when none): only those may be pruned."""
    from . import pgschema
    from .pg import connect, require_psycopg

    require_psycopg()
    S = pgschema.SCHEMA
    conn = connect(url)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT c.size, c.root, c.note, (SELECT COUNT(*) FROM {S}.events e WHERE e.log_id = l.id AND e.seq <= c.size) "
                    f"FROM {S}.checkpoints c JOIN {S}.logs l ON l.id = c.log_id WHERE l.origin = %s AND l.key = %s "
                    "ORDER BY c.size DESC LIMIT 1", (log.origin, vkey))
        row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return 0
    size, root, note, count = row[0], bytes(row[1]), row[2], row[3]
    try:
        ok = parse_checkpoint(verify_note(note, name, public)) == (log.origin, size, root)
    except NoteError:
        ok = False
    if not ok or count != size or size > log.size or tree.root_at(size, log._get_node) != root:
        raise DeniedError(f"the central store's checkpoint of this log (size {size}) does not match it: nothing was pruned",
                          hint="agentctl audit verify and agentctl audit ship --to URL say more")
    return size


def prune(log, before_us: int, held: int, basis: str, clock, principal: str | None) -> tuple[int, int]:
    """Drop the bodies of the events before ``before_us`` (a prefix), keeping their leaf hashes and
    recording the prune, all in one transaction. Returns the range dropped, (first, last); (0, 0)
    when nothing is older. Refuses (nothing changed) when the range goes beyond ``held``."""
    with log._locked():
        first = store.pruned_through(log.conn) + 1
        row = log.conn.execute("SELECT MIN(seq) FROM entries WHERE audit_time(body) >= ?", (before_us,)).fetchone()
        last = (row[0] - 1) if row[0] is not None else log.size
        if last < first:
            return 0, 0
        if last > held:
            raise DeniedError(f"events {max(first, held + 1)}..{last} are older than that but neither archived nor in the central store: "
                              "nothing was pruned",
                              hint="write an archive first (agentctl audit archive -o FILE) or ship them (agentctl audit ship --to URL)")
        log.conn.execute("INSERT INTO pruned (seq, leaf_hash) SELECT seq, audit_leaf_hash(body) FROM entries "
                         "WHERE seq >= ? AND seq <= ? ORDER BY seq", (first, last))
        log.conn.execute("DELETE FROM entries WHERE seq >= ? AND seq <= ?", (first, last))
        log._insert([Event("audit_prune", "ok", principal=principal,
                           metadata={"first": first, "last": last, "basis": basis, "held_through": held})], clock)
    return first, last
