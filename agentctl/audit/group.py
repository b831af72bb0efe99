"""Group commit: concurrent appends to one audit log share a transaction, and so an fsync.

A caller that finds the append lock free leads: it commits its own events and every complete request
waiting in the spool (:mod:`.spool`) in one transaction, and answers each request only after the commit
is durable. A caller that finds the lock taken leaves its events in a spool file of its own, waits for
the lock, and takes its answer (the seqs its events were committed as), or leads itself when no holder
took them. :func:`insert_docs` writes the rows: each event's canonical JSON deflated
(:mod:`.codec`), its leaf hash's tag, and the tree nodes every fourth level.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..clock import rfc3339
from ..encoding import canonical_json
from ..errors import OperationalError
from ..events import Event
from . import codec, tree
from . import spool as _spool

if TYPE_CHECKING:
    from .log import AuditLog

__all__ = ["Group", "insert_docs", "doc", "encoded"]


class Group:
    """The spool files of one open log, one for each caller waiting at once (made once, reused)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[_spool.SpoolFile] = []  # made by this log, for waiting callers
        self.free: list[_spool.SpoolFile] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files.clear()
        self.free.clear()

    def wait_or_lead(self, log: AuditLog, fd: int, docs: list[dict]) -> list[int]:
        """The lock is taken: leave the events in a spool file, wait for the lock, and return the seqs
        its holder committed them as, or else commit them (and whatever else waits) ourselves."""
        payload = b"".join(encoded(d) + b"\n" for d in docs)
        spooled = self.file()
        answered = False
        try:
            spooled.request(payload)
            _spool.fcntl.flock(fd, _spool.fcntl.LOCK_EX)
            result = spooled.answer()
            if result is None:
                self.lead(log, [], spooled.name)
                result = spooled.answer()
                if result is None:
                    raise OperationalError(f"audit append failed ({log.path}): the group commit left these events out")
            answered = True
        finally:
            if not answered:
                spooled.withdraw()
            self.free.append(spooled)
        if isinstance(result, str):
            raise OperationalError(f"audit append failed ({log.path}): {result}")
        return result

    def file(self) -> _spool.SpoolFile:
        """A spool file of this log's, for one waiting caller (each concurrent caller its own)."""
        with self._lock:
            if self.free:
                return self.free.pop()
        made = _spool.SpoolFile(self.directory)
        self.files.append(made)
        return made

    def lead(self, log: AuditLog, own: list[dict], keep: str | None) -> list[int]:
        """Under the append lock: one transaction of ``own`` events and every waiting request's;
        commit, then answer each request. Returns the seqs of ``own``."""
        directory = self.directory
        taken: list[_spool.Taken] = []
        try:
            with log._transaction():
                taken = _spool.take(directory, _spool.parse_record(log.meta("group")), keep)
                results = log._insert_docs([own, *[[json.loads(line) for line in t.docs] for t in taken]], own=True)
                if taken:
                    log.conn.execute("INSERT OR REPLACE INTO meta VALUES ('group', ?)", (_spool.record_text(
                        [(t.name, t.reqno, r[0], len(r)) for t, r in zip(taken, results[1:]) if isinstance(r, list) and r]),))
        except BaseException:
            for t in taken:
                t.release()  # unanswered: their writers lead in turn
            raise
        for t, r in zip(taken, results[1:]):
            t.finish(f"!{r}" if isinstance(r, str) else f"={r[0] if r else 0} {len(r)}")
        return results[0]


def insert_docs(log: AuditLog, groups: list[list[dict]], own: bool) -> list:
    """Insert groups of prepared events (each without its ``seq``), in order, inside the caller's
    locked transaction: per group, its seqs, or (for a group after the first, which came from the
    spool) a message when it cannot be encoded (then it is left out, and nothing of it is stored).
    The first group's encoding failure raises."""
    cr = log._frontier()
    packer = codec.of(log.conn)
    packer.load()  # the newest dictionary, also when another process trained it
    out: list = []
    for i, docs in enumerate(groups):
        first = cr.size + 1
        full = [{**doc, "seq": first + k} for k, doc in enumerate(docs)]
        try:
            leaves = [canonical_json(doc) for doc in full]
        except (ValueError, TypeError) as e:  # EncodingError: a value JSON cannot carry (a lone surrogate, NaN)
            if i == 0 and own:
                bad = next((d for d in docs if not encodable(d)), docs[0])
                raise OperationalError(f"audit append failed: event {bad.get('event')!r} cannot be encoded: {e}") from None
            out.append(f"event cannot be encoded: {e}")
            continue
        seqs = []
        for k, leaf in enumerate(leaves):
            seq = first + k
            created = cr.append(tree.leaf_hash(leaf))
            body = packer.pack(leaf)
            packer.remember(body, full[k])
            log.conn.execute("INSERT INTO entries (seq, body, tag) VALUES (?, ?, ?)", (seq, body, created[0][2][:4]))
            packer.maybe_train(seq)  # a dictionary of this log's own events, for the next ones
            if len(created) > 4:  # every fourth level is stored (schema.STORED_LEVEL_STEP)
                log.conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", created[4::4])
            seqs.append(seq)
        out.append(seqs)
    log.conn.execute("INSERT OR REPLACE INTO meta VALUES ('frontier', ?)", (cr.to_bytes().hex(),))
    return out


def doc(ev: Event, clock, host: str) -> dict:
    """An event as its leaf records it, all but its ``seq`` (given when it is inserted)."""
    return {
        "time": rfc3339(clock(), micro=True), "event": ev.event, "principal": ev.principal,
        "on_behalf_of": ev.on_behalf_of, "chain": list(ev.chain), "action": ev.action,
        "resource": ev.resource, "outcome": ev.outcome, "reason": ev.reason, "jtis": list(ev.jtis),
        "host": host, "version": __version__, "metadata": ev.metadata,
    }


def encoded(doc: dict) -> bytes:
    """A prepared event as one spool line (its canonical JSON), refused when it cannot be encoded."""
    try:
        return canonical_json(doc)
    except ValueError as e:  # EncodingError: a value JSON cannot carry (a lone surrogate, NaN)
        raise OperationalError(f"audit append failed: event {doc.get('event')!r} cannot be encoded: {e}") from None


def encodable(doc: dict) -> bool:
    try:
        canonical_json(doc)
        return True
    except (ValueError, TypeError):
        return False
