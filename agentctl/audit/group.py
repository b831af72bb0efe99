"""Group commit: concurrent appends to one audit log share a transaction, and so an fsync.

A caller that finds the append lock free leads: it commits its own events and every complete request
waiting in the spool (:mod:`.spool`) in one transaction, and answers each request only after the commit
is durable; it takes the spool after inserting its own events, so callers that came meanwhile are in.
A caller that finds the lock taken leaves its events in a spool file of its own, sleeps until the
leader's commit is done (on the gate, with every other waiting caller), and takes its answer (the seqs
its events were committed as), or leads itself when no holder took them. :class:`Inserter` writes the rows: each event's canonical JSON deflated
(:mod:`.codec`), its leaf hash's tag, and the tree nodes every fourth level.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .. import __version__
from ..clock import rfc3339
from ..encoding import canonical_json
from ..errors import OperationalError
from ..events import Event
from . import codec, tree
from . import spool as _spool

if TYPE_CHECKING:
    from .log import AuditLog

__all__ = ["Group", "Inserter", "insert", "doc", "encoded"]

#: How often a waiting caller finds its request unanswered and the lock taken by a holder that does not
#: hold the gate (one between taking the lock and the gate) before it queues on the lock itself.
SPINS = 64


class Group:
    """The spool files of one open log, one for each caller waiting at once (made once, reused), and
    the gate: a lock its leader holds exclusively while it commits, on which waiting callers sleep
    (shared) so that one commit wakes them all at once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[_spool.SpoolFile] = []  # made by this log, for waiting callers
        self.free: list[_spool.SpoolFile] = []
        self.gates: list[int] = []  # open descriptors of the gate, one for each caller leading at once
        self.gate_path = str(directory / _spool.GATE)
        self.watch = _spool.Watch(directory)  # the spool as this log's leaders see it
        self._lock = threading.Lock()

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files.clear()
        self.free.clear()
        for fd in self.gates:
            os.close(fd)
        self.gates.clear()
        self.watch.close()

    def wait_or_lead(self, log: AuditLog, fd: int, docs: list[dict]) -> list[int]:
        """The append lock (``fd``'s) is taken: leave the events in a spool file, sleep until the
        holder's commit is done, and return the seqs it committed them as; or, when no holder took
        them, commit them (and whatever else waits) ourselves."""
        payload = b"".join(encoded(d) + b"\n" for d in docs)
        spooled = self.file()
        answered = False
        try:
            spooled.request(payload)
            gate, flock = spooled.gate, _spool.fcntl.flock
            spins = 0
            while True:
                flock(gate, _spool.fcntl.LOCK_SH)  # sleeps while a leader commits (it holds the gate)
                flock(gate, _spool.fcntl.LOCK_UN)
                result = spooled.answer()
                if result is not None:
                    break
                try:  # not taken: lead, unless another caller leads now (then its commit takes ours)
                    flock(fd, _spool.fcntl.LOCK_EX | _spool.fcntl.LOCK_NB)
                except BlockingIOError:
                    spins += 1
                    if spins < SPINS:
                        continue
                    flock(fd, _spool.fcntl.LOCK_EX)  # a holder that does not take the spool: queue on the lock
                result = spooled.answer()
                if result is None:
                    self.lead(log, [], spooled.name, fd)
                    result = spooled.answer()
                    if result is None:
                        raise OperationalError(f"audit append failed ({log.path}): the group commit left these events out")
                else:
                    flock(fd, _spool.fcntl.LOCK_UN)
                break
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

    @contextlib.contextmanager
    def gate(self) -> Iterator[None]:
        """Hold the gate exclusively (under the append lock): waiting callers sleep until it opens."""
        with self._lock:
            fd = self.gates.pop() if self.gates else None
        if fd is None:
            try:
                fd = os.open(self.gate_path, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:  # no spool yet, so no caller waits (one that comes now finds the lock)
                yield
                return
        try:
            _spool.fcntl.flock(fd, _spool.fcntl.LOCK_EX)
            try:
                yield
            finally:
                _spool.fcntl.flock(fd, _spool.fcntl.LOCK_UN)
        finally:
            with self._lock:
                self.gates.append(fd)

    def lead(self, log: AuditLog, own: list[dict], keep: str | None, fd: int) -> list[int]:
        """Holding the append lock (``fd``'s): one transaction of ``own`` events and every waiting
        request's; commit, then answer each request; then release the lock, and then the gate (so
        callers it wakes unanswered find the lock free). Returns the seqs of ``own``."""
        taken: list[_spool.Taken] = []
        try:
            with self.gate():
                try:
                    with log._transaction():
                        ins = Inserter(log)
                        mine = ins.add(own, True) if own else []
                        # taken only now: the callers this commit answers may have spooled meanwhile
                        taken = self.watch.take(lambda: _spool.parse_record(log.meta("group")), keep)
                        results = [mine, *[ins.add_spooled(t.docs) for t in taken]]
                        ins.finish()
                        if taken:
                            log.conn.execute("INSERT OR REPLACE INTO meta VALUES ('group', ?)", (_spool.record_text(
                                [(t.name, t.reqno, r[0], len(r)) for t, r in zip(taken, results[1:]) if isinstance(r, list) and r]),))
                except BaseException:
                    for t in taken:
                        t.release()  # unanswered: their writers lead in turn
                    raise
                for t, r in zip(taken, results[1:]):
                    t.finish(f"!{r}" if isinstance(r, str) else f"={r[0] if r else 0} {len(r)}")
                _spool.fcntl.flock(fd, _spool.fcntl.LOCK_UN)
        except BaseException:
            _spool.fcntl.flock(fd, _spool.fcntl.LOCK_UN)  # (again, when it raised)
            raise
        assert isinstance(mine, list)  # own events that cannot be encoded raised
        return mine


def insert(log: AuditLog, docs: list[dict]) -> list[int]:
    """Insert prepared events (each without its ``seq``) inside the caller's locked transaction; their
    seqs. An event that cannot be encoded raises, and nothing is stored."""
    ins = Inserter(log)
    seqs = ins.add(docs, True)
    ins.finish()
    assert isinstance(seqs, list)  # own events that cannot be encoded raised
    return seqs


class Inserter:
    """The inserts of one transaction (under the append lock): the frontier read once, extended by
    each group of events added, and stored by :meth:`finish`."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.packer = codec.of(log.conn)
        kept = log._kept
        # SQLite changes data_version when another connection (or process) commits: until then the
        # frontier and the dictionaries this connection's last append left are the log's own
        self.version = log.conn.execute("PRAGMA data_version").fetchone()[0]
        if kept is not None and kept[0] == self.version:
            self.cr = kept[1]
        else:
            self.cr = log._frontier()
            self.packer.load()  # the newest dictionary, also when another process trained it
        log._kept = None  # extended in place from here: kept again only when this transaction commits

    def add(self, docs: list[dict], own: bool) -> "list[int] | str":
        """Insert prepared events; their seqs. When one cannot be encoded: raises for ``own`` events,
        else returns a message and stores none of them."""
        first = self.cr.size + 1
        full = [{**doc, "seq": first + k} for k, doc in enumerate(docs)]
        try:
            leaves = [canonical_json(doc) for doc in full]
        except (ValueError, TypeError) as e:  # EncodingError: a value JSON cannot carry (a lone surrogate, NaN)
            if own:
                bad = next((d for d in docs if not encodable(d)), docs[0])
                raise OperationalError(f"audit append failed: event {bad.get('event')!r} cannot be encoded: {e}") from None
            return f"event cannot be encoded: {e}"
        return self._insert(full, leaves)

    def add_spooled(self, lines: list[bytes]) -> "list[int] | str":
        """Insert a spooled request's events (each line the canonical JSON of a prepared event); their
        seqs, or a message when one cannot be stored (then none is). A line :func:`encoded` wrote is
        not encoded again: its leaf is the line with ``"seq":N,`` put before its ``"time"`` key (the
        key after ``seq`` in canonical order; the last top-level key but ``version``); any other line
        is parsed and encoded afresh."""
        first = self.cr.size + 1
        full, leaves = [], []
        try:
            for k, line in enumerate(lines):
                doc = json.loads(line)
                if type(doc) is not dict:
                    return "event is not a JSON object"
                doc["seq"] = first + k
                full.append(doc)
                leaves.append(spliced(line, doc) or canonical_json(doc))
        except (ValueError, TypeError) as e:  # not JSON, or a value JSON cannot carry (a lone surrogate)
            return f"event cannot be encoded: {e}"
        return self._insert(full, leaves)

    def _insert(self, full: list[dict], leaves: list[bytes]) -> list[int]:
        cr, packer, execute = self.cr, self.packer, self.log.conn.execute
        first = cr.size + 1
        seqs = []
        for k, leaf in enumerate(leaves):
            seq = first + k
            created = cr.append(tree.leaf_hash(leaf))
            body = packer.pack(leaf)
            packer.remember(body, full[k])
            execute("INSERT INTO entries (seq, body, tag) VALUES (?, ?, ?)", (seq, body, created[0][2][:4]))
            packer.maybe_train(seq)  # a dictionary of this log's own events, for the next ones
            if len(created) > 4:  # every fourth level is stored (schema.STORED_LEVEL_STEP)
                self.log.conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", created[4::4])
            seqs.append(seq)
        return seqs

    def finish(self) -> None:
        self.log.conn.execute("INSERT OR REPLACE INTO meta VALUES ('frontier', ?)", (self.cr.to_bytes().hex(),))
        self.log._pending = (self.version, self.cr)  # AuditLog._transaction keeps it once committed


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


#: The keys of a prepared event (:func:`doc`) with its ``seq``.
DOC_KEYS = frozenset(("time", "event", "principal", "on_behalf_of", "chain", "action", "resource", "outcome", "reason",
                      "jtis", "host", "version", "metadata", "seq"))


def spliced(line: bytes, doc: dict) -> bytes | None:
    """The canonical JSON of ``doc`` (a prepared event, ``seq`` added) made from ``line``, the
    canonical JSON :func:`encoded` wrote of it without ``seq``; None when ``line`` is not one of those
    (then it is encoded afresh). ``"seq"`` sorts right before ``"time"``, which only ``"version"``
    follows at the top level; a nested ``"time"`` key comes earlier (inside ``metadata`` or before),
    so the last ``,"time":"`` is the top-level key (a quote inside a string is escaped)."""
    if doc.keys() != DOC_KEYS or type(doc["time"]) is not str or type(doc["version"]) is not str or b"\\ud" in line:
        return None  # (a surrogate escape: encoded afresh, and refused)
    i = line.rfind(b',"time":"')
    if i < 0:
        return None
    return b"%s,\"seq\":%d%s" % (line[:i], doc["seq"], line[i:])


def encodable(doc: dict) -> bool:
    try:
        canonical_json(doc)
        return True
    except (ValueError, TypeError):
        return False
