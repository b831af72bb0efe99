"""Checkpoints a log signs, and the proofs it hands out: inclusion of one event in a checkpoint,
consistency between two checkpoints (RFC 9162), each checked before it is returned (:mod:`.proof`)."""

from __future__ import annotations

import base64
import json
import sqlite3
from typing import TYPE_CHECKING

from ..clock import rfc3339
from ..errors import DeniedError, OperationalError, UsageError
from . import proof, store, tree

if TYPE_CHECKING:
    from ..events import Event
    from .log import AuditLog

__all__ = ["add_checkpoint", "prove", "consistency"]


def _matching(log: AuditLog, checkpoint: str, what: str) -> tuple[int, bytes, str]:
    """(size, root, text) of a checkpoint of this log whose root the log still has at its size."""
    from .note import parse_kept_checkpoint

    size, root, origin, text = parse_kept_checkpoint(checkpoint, what)
    if origin != log.origin:
        raise UsageError(f"the {what} is of another log ({origin}; this one is {log.origin})")
    if size > log.size:
        raise DeniedError(f"the {what} covers {size} events; the log holds {log.size}: it was truncated",
                          hint="agentctl audit verify --checkpoint FILE names what is missing")
    if tree.root_at(size, log._get_node) != root:
        raise DeniedError(f"the log does not match the {what} (size {size}): history was rewritten",
                          hint="agentctl audit verify --checkpoint FILE says more")
    return size, root, text

def prove(log: AuditLog, seq: int, checkpoint: str | None = None) -> dict:
    """An inclusion proof of event ``seq`` in a checkpoint: the text of one (of this log, which
    must still match it), or else the latest stored one."""
    row = store.require_leaf(log.conn, seq)
    if checkpoint is not None:
        size, root, note = _matching(log, checkpoint, "checkpoint")
        if size < seq:
            raise UsageError(f"the checkpoint covers {size} events, not event {seq}", hint="take a newer one: agentctl audit checkpoint")
    else:
        latest = log.latest_checkpoint()
        if latest is None or latest[0] < seq:
            raise UsageError(f"no checkpoint covers event {seq} yet", hint="take one: agentctl audit checkpoint")
        size, root, note = latest
    path = tree.inclusion_proof(seq - 1, size, log._get_node)
    proof.verify_inclusion(row[1], seq - 1, size, path, root)  # never hand out a proof that fails
    return {
        "seq": seq, "index": seq - 1, "tree_size": size, "event": json.loads(row[0]), "leaf": row[0],
        "leaf_hash": _b64(row[1]), "root": _b64(root), "proof": [_b64(p) for p in path], "checkpoint": note,
    }

def consistency(log: AuditLog, old: str, new: str) -> dict:
    """A consistency proof between two checkpoints of this log (their texts), old first."""
    m, old_root, _ = _matching(log, old, "old checkpoint")
    n, new_root, _ = _matching(log, new, "new checkpoint")
    if m > n:
        raise UsageError(f"the old checkpoint (size {m}) is newer than the new one (size {n})", hint="give the older one first")
    if m == 0:
        raise UsageError("the old checkpoint is of 0 events: every log extends it, and no proof from it exists (RFC 9162)")
    path = tree.consistency_proof(m, n, log._get_node)
    proof.verify_consistency(m, n, old_root, new_root, path)  # never hand out a proof that fails
    return {"origin": log.origin, "old_size": m, "new_size": n, "old_root": _b64(old_root), "new_root": _b64(new_root),
            "proof": [_b64(p) for p in path]}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def add_checkpoint(log: AuditLog, key_name: str, seed: bytes, clock, event: Event | None = None,
                   deliver=None) -> tuple[int, bytes, str]:
    """Sign (origin, size, root) now and store it; in the same transaction append ``event``
    recording it (its metadata gets the signed ``size``), so a checkpoint is never unrecorded.
    ``deliver(note)``, when given, runs before the transaction commits: if it raises, nothing is
    stored or recorded."""
    from .note import checkpoint_body, sign_note

    try:
        with log._locked():
            cr = log._frontier()
            size, root = cr.size, cr.root()
            note = sign_note(checkpoint_body(log.origin, size, root), key_name, seed)
            existing = log.conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()
            if existing is None:
                log.conn.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?)", (size, root, note, rfc3339(clock(), micro=True)))
            else:
                note = existing[0]
            if event is not None:
                import dataclasses  # checkpoints only: not on the cold verify path

                log._insert([dataclasses.replace(event, metadata={**event.metadata, "size": size})], clock)
            if deliver is not None:
                deliver(note)
    except sqlite3.DatabaseError as e:
        raise OperationalError(f"audit checkpoint failed ({log.path}): {e}") from None
    except OSError as e:
        raise OperationalError(f"audit checkpoint failed ({log.path}): {e.strerror or e}") from None
    return size, root, note
