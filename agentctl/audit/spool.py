"""Group commit: appends that arrive while another caller holds the append lock wait in a spool and
are committed by the holder, many in one transaction (one fsync).

Each waiting caller has a spool file of its own in ``HOME/audit.spool/``, made once (per open log
and concurrent caller), shared-``flock``-ed for as long as it is open, and reused for every request:
a request is written over the file's start as one header line (``R <request number> <payload length>
<CRC-32>``) and the prepared events, one JSON line each, all but their sequence numbers. Reusing the
file keeps the file system's metadata out of every append (making and removing a file an append
costs journal work that competes with the commit's own fsync).

Whoever holds the append lock (the *leader*) reads every spool file whose writer is alive (its lock
is held) and whose request is complete (its CRC matches) and unanswered (a :class:`Watch` keeps the
files open from one lead to the next, and asks a writer's lock of each file with a waiting request, and
of every file when the directory changed or every :data:`SWEEP_EVERY` leads); inserts their events
after its own in one transaction (each line as written, with its sequence number put in: the writer
encoded it canonically; the spool is as private as the log, in the same 0700 home); records in that transaction which requests it committed (the ``group``
key of the ``meta`` table); commits; and only then writes each request's answer (``=N first count``,
or ``!N message`` for one it refused) right after the request. The leader holds the *gate*
(``audit.spool/gate``) exclusively from before its transaction until it has answered; a waiting
caller sleeps on the gate (shared), so one commit wakes all its callers at once (not one by one, as
when each had to take the append lock to read its answer). A woken caller reads its answer from its
own file: when it is there its events are durable and it returns; when it is not (it came after the
leader took the spool), it leads itself, or, when another caller leads already, sleeps on the gate
again (that leader's commit takes it).

Crashes:

- a leader killed before its commit: SQLite rolls the transaction back; the requests stay unanswered
  and their writers, still waiting, lead in turn;
- a leader killed after its commit but before answering: the next leader finds those requests still
  unanswered, finds them in the ``group`` record of the last group commit, and answers them from it
  (nothing is committed twice) before it commits anything;
- a waiting caller killed (or the machine restarting): its file is no longer locked, and a leader
  removes it unread (the next leader, when its request was waiting; a sweep, when it was answered). Its caller never returned, so its command never completed: nothing it did takes
  effect unrecorded. That is also why a restart cannot make a committed request count twice: requests
  that outlive their writers are never committed.

Only the leader touches the database; a waiting caller never writes to it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Callable

__all__ = ["SPOOL_DIR", "GATE", "MAX_GROUP", "SpoolFile", "Taken", "Watch", "open_gate", "record_text", "parse_record", "fcntl"]

try:
    import fcntl
except ImportError:  # not POSIX: no group commit; appends are serialized by SQLite alone
    fcntl = None  # type: ignore[assignment]

SPOOL_DIR = "audit.spool"
#: The gate, in the spool directory: the leader holds it exclusively from before it takes the spool
#: until it has answered every request it took; waiting callers sleep on it (shared).
GATE = "gate"
#: The most requests one transaction takes; the rest wait for the next leader.
MAX_GROUP = 512
#: A spool file nobody holds whose request is incomplete is a writer that died while making it; it is
#: removed after this many seconds (a younger one may be a writer between creating and locking it).
STALE_SECONDS = 60.0
#: A leader asks the writer of every spool file whether it is alive at least this often (in takes).
SWEEP_EVERY = 64
_SUFFIX = ".ev"
_counter = iter(range(1, 2**62))
_counter_lock = threading.Lock()


def _name() -> str:
    with _counter_lock:
        n = next(_counter)
    return f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(3).hex()}-{n}{_SUFFIX}"


class SpoolFile:
    """One caller's spool file: made, locked (shared) and kept open until :meth:`close`."""

    def __init__(self, directory: Path) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        self.name = _name()
        self.path = directory / self.name
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.reqno = 0
        self.end = 0  # where the current request's answer goes
        self.gate = -1
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH)  # alive, as long as this is held
            self.gate = open_gate(directory)  # its caller's own descriptor of the gate, to sleep on
        except BaseException:
            self.close()
            raise

    def request(self, payload: bytes) -> None:
        """Write a new request (over the previous one)."""
        self.reqno += 1
        data = f"R {self.reqno} {len(payload)} {zlib.crc32(payload)}\n".encode("ascii") + payload
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(self.fd, view[offset:], offset)
        self.end = len(data)

    def answer(self) -> "list[int] | str | None":
        """The seqs a leader committed the current request as; a message when it refused it; None
        when no leader answered it."""
        return parse_answer(os.pread(self.fd, 4096, self.end), self.reqno)

    def withdraw(self) -> None:
        """Give up the current request unanswered: no later leader may take it."""
        with contextlib.suppress(OSError):
            os.pwrite(self.fd, f"!{self.reqno} withdrawn\n".encode("ascii"), self.end)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.gate >= 0:
            with contextlib.suppress(OSError):
                os.close(self.gate)


def open_gate(directory: Path) -> int:
    """A new descriptor of the gate (:data:`GATE`), made when missing (and its directory)."""
    path = directory / GATE
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def parse_answer(tail: bytes, reqno: int) -> "list[int] | str | None":
    line, nl, _ = tail.partition(b"\n")
    if not nl or line[:1] not in (b"=", b"!"):
        return None
    head, _, rest = line[1:].decode("utf-8", "replace").partition(" ")
    if head != str(reqno):
        return None  # an old answer of an earlier request at this place
    if line[:1] == b"!":
        return rest
    first, count = (int(x) for x in rest.split())
    return list(range(first, first + count))


class Taken:
    """A request a leader took: its file, its number, its prepared events, and where its answer goes.
    The descriptor is the :class:`Watch`'s (kept open from one lead to the next)."""

    __slots__ = ("name", "fd", "reqno", "end", "docs", "head", "watch")

    def __init__(self, name: str, fd: int, reqno: int, end: int, docs: list[bytes], head: bytes = b"",
                 watch: "Watch | None" = None) -> None:
        self.name, self.fd, self.reqno, self.end, self.docs = name, fd, reqno, end, docs
        self.head, self.watch = head, watch

    def finish(self, answer: str) -> None:
        """Write the answer (``=first count`` or ``!message``)."""
        try:
            os.pwrite(self.fd, f"{answer[0]}{self.reqno} {answer[1:]}\n".encode("utf-8"), self.end)
        except OSError:
            return  # its writer leads itself and finds it in the group record
        if self.watch is not None:
            self.watch.answered[self.name] = self.head  # not read again until its writer makes a new request

    def release(self) -> None:
        """Leave it unanswered (its writer leads in turn)."""


class Watch:
    """A leader's view of the spool: the files it has opened, kept open from one lead to the next (so
    a lead opens only the files that are new since the last). A writer's liveness (its lock) is asked
    of every file whose request is waiting; of the others when the directory changed, and every
    :data:`SWEEP_EVERY` takes (so the files of writers that are gone are removed)."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)
        self.fds: dict[str, int] = {}
        #: the header line of each file's request last found answered (by this leader or another): a
        #: file that still starts with it has no new request
        self.answered: dict[str, bytes] = {}
        self.takes = 0

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def _drop(self, name: str, unlink: bool) -> None:
        fd = self.fds.pop(name, -1)
        self.answered.pop(name, None)
        if unlink:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.directory, name))
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def take(self, done: "Callable[[], dict[tuple[str, int], tuple[int, int]]]", keep: str | None = None) -> list[Taken]:
        """The complete, unanswered requests of living writers, oldest file first, at most
        :data:`MAX_GROUP` (and the one in the file named ``keep`` in any case). Files of writers that
        are gone are removed; requests in ``done()`` (the last group record: committed already; read
        only when there is a request) get their answer; incomplete ones are left to their writers."""
        try:
            names = sorted(e.name for e in os.scandir(self.directory) if e.name.endswith(_SUFFIX))
        except FileNotFoundError:
            self.close()
            return []
        fds = self.fds
        self.takes += 1
        sweep = self.takes % SWEEP_EVERY == 0 or len(names) != len(fds)
        if sweep:
            for gone in set(fds).difference(names):
                self._drop(gone, False)
        taken: list[Taken] = []
        record: "dict[tuple[str, int], tuple[int, int]] | None" = None
        flock, pread = fcntl.flock, os.pread
        for name in names:
            if len(taken) >= MAX_GROUP and name != keep:
                continue
            fd = fds.get(name, -1)
            try:
                if fd < 0:
                    fd = fds[name] = os.open(os.path.join(self.directory, name), os.O_RDWR)
                head = pread(fd, 4096, 0)
                seen = self.answered.get(name)
                if seen is not None and not sweep and head.startswith(seen):
                    continue  # the request this leader answered last, still
                request = _request(fd, head, self.answered, name)
                if request is None and not sweep:
                    continue
                try:
                    flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass  # its writer is alive
                else:  # its writer is gone (or has just made it and not locked it yet: then it is empty)
                    st = os.fstat(fd)
                    if st.st_size or time.time() - st.st_mtime > STALE_SECONDS:
                        self._drop(name, True)
                    else:
                        flock(fd, fcntl.LOCK_UN)
                    continue
                if request is None:
                    continue
                reqno, end, lines = request
                if record is None:
                    record = done()
                if (name, reqno) in record:
                    first, count = record[(name, reqno)]
                    Taken(name, fd, reqno, end, []).finish(f"={first} {count}")
                    continue
                taken.append(Taken(name, fd, reqno, end, lines, head[:head.find(b"\n") + 1], self))
            except OSError:
                self._drop(name, False)  # gone meanwhile
        return taken


def _request(fd: int, head: bytes | None = None, answered: "dict[str, bytes] | None" = None,
             name: str = "") -> "tuple[int, int, list[bytes]] | None":
    """(number, end, lines) of the file's complete, unanswered request; None when there is none.
    ``head``: the file's first bytes, when read already; ``answered``: where the header line of a
    complete request found answered is noted (under ``name``), so it is not read again."""
    if head is None:
        head = os.pread(fd, 4096, 0)
    line, nl, rest = head.partition(b"\n")
    bits = line.split(b" ")
    if not nl or len(bits) != 4 or bits[0] != b"R":
        return None
    try:
        reqno, length, crc = int(bits[1]), int(bits[2]), int(bits[3])
    except ValueError:
        return None
    start = len(line) + 1
    end = start + length
    data = head[start:end + 4096]
    if len(data) < length + 4096 and len(head) >= 4096:
        data = os.pread(fd, length + 4096, start)
    payload, tail = data[:length], data[length:]
    if len(payload) != length or zlib.crc32(payload) != crc or not payload.endswith(b"\n"):
        return None  # being written: its writer leads itself if no one takes it
    if parse_answer(tail, reqno) is not None:
        if answered is not None:
            answered[name] = head[:start]
        return None  # answered already
    return reqno, end, payload.split(b"\n")[:-1]


def record_text(entries: list[tuple[str, int, int, int]]) -> str:
    """The ``group`` record: ``file request first count`` per committed request, ``;``-separated."""
    return ";".join(f"{n} {r} {f} {c}" for n, r, f, c in entries)


def parse_record(text: str | None) -> dict[tuple[str, int], tuple[int, int]]:
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for part in (text or "").split(";"):
        bits = part.split()
        if len(bits) == 4:
            with contextlib.suppress(ValueError):
                out[(bits[0], int(bits[1]))] = (int(bits[2]), int(bits[3]))
    return out
