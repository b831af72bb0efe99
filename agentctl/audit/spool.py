"""Group commit: appends that arrive while another process holds the append lock wait in a spool and
are committed by the holder, many in one transaction (one fsync).

A caller that finds the lock (``HOME/audit.lock``) taken writes its events, prepared except for their
sequence numbers, to a file of its own in ``HOME/audit.spool/`` (one JSON line an event, the last line
ending the file), holds a shared ``flock`` on that file for as long as it waits, and then waits for the
append lock. Whoever holds the append lock (the *leader*) takes every complete spool file whose writer
still waits, inserts their events after its own in one transaction, records in the same transaction
which files it committed (the ``group`` key of the ``meta`` table: name, first seq, count), commits,
and only then writes each file's result (its first seq and count) at the end of the file and unlinks
it. A waiter that gets the append lock reads its result from its own open file: when it is there, its
events are durable and it returns; when it is not, it leads itself.

Crashes:

- a leader killed before its commit: SQLite rolls the transaction back; the spool files stay, without
  results, and their writers (still waiting) lead in turn;
- a leader killed after its commit but before writing results: the next leader finds those files
  still waiting, finds their names in the ``group`` record of the last group commit, and writes their
  results from it (so nothing is committed twice) before it commits anything of its own;
- a waiter killed (or the machine restarting): its file is complete but no longer locked; a leader
  unlinks it unread. Its caller never returned, so its command never completed: nothing it did takes
  effect unrecorded. This is also why a restart cannot make a committed file count twice: the files
  that outlive their writers are never committed.

Only the leader touches the database; a waiter never writes to it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

__all__ = ["SPOOL_DIR", "MAX_GROUP", "Spooled", "Taken", "take", "record_text", "parse_record", "fcntl"]

try:
    import fcntl
except ImportError:  # not POSIX: no group commit; appends are serialized by SQLite alone
    fcntl = None  # type: ignore[assignment]

SPOOL_DIR = "audit.spool"
#: The most spool files one transaction takes; the rest wait for the next leader.
MAX_GROUP = 512
#: An incomplete spool file nobody holds is a writer that died while writing; after this many seconds
#: it is removed (a younger one may be a writer between creating and locking it).
STALE_SECONDS = 60.0
_SUFFIX = ".ev"
_counter = iter(range(1, 2**62))
_counter_lock = threading.Lock()


def _name() -> str:
    with _counter_lock:
        n = next(_counter)
    return f"{time.time_ns():020d}-{os.getpid()}-{threading.get_ident() % 10**8}-{n}{_SUFFIX}"


class Spooled:
    """A caller's events waiting in the spool (the file stays open and shared-locked until
    :meth:`close`)."""

    def __init__(self, directory: Path, payload: bytes) -> None:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        self.name = _name()
        self.path = directory / self.name
        self.size = len(payload)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH)  # alive and waiting, as long as this is held
            view = memoryview(payload)
            while view:
                view = view[os.write(self.fd, view):]
        except BaseException:
            self.close(withdraw=True)
            raise

    def result(self) -> "list[int] | str | None":
        """The seqs a leader committed these events as; a message when it refused them; None when no
        leader took them."""
        tail = os.pread(self.fd, 4096, self.size)
        if not tail.endswith(b"\n"):
            return None
        text = tail[:-1].decode("utf-8", "replace")
        if text.startswith("="):
            first, count = (int(x) for x in text[1:].split())
            return list(range(first, first + count))
        return text[1:] if text.startswith("!") else None

    def taken_away(self) -> bool:
        """Whether a leader removed this file without a result (it judged it abandoned): then its
        events are not in the log and the caller appends them itself."""
        return os.fstat(self.fd).st_nlink == 0

    def close(self, withdraw: bool = False) -> None:
        if withdraw:  # given up without a result: no later leader may take it
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(self.fd)


class Taken:
    """A spool file a leader holds: its name, its prepared events, and where its result goes."""

    __slots__ = ("name", "path", "fd", "size", "docs")

    def __init__(self, name: str, path: Path, fd: int, size: int, docs: list[bytes]) -> None:
        self.name, self.path, self.fd, self.size, self.docs = name, path, fd, size, docs

    def finish(self, result: str) -> None:
        """Write the result line, then unlink and close (the writer reads it from its open file)."""
        try:
            os.pwrite(self.fd, result.encode("utf-8") + b"\n", self.size)
            os.unlink(self.path)
        except OSError:
            pass  # its writer leads itself and finds it in the group record
        finally:
            os.close(self.fd)

    def release(self) -> None:
        os.close(self.fd)


def take(directory: Path, done: dict[str, tuple[int, int]], keep: str | None = None) -> list[Taken]:
    """The complete spool files of waiting writers, oldest first, at most :data:`MAX_GROUP` (and the
    one named ``keep`` in any case). Files of writers that are gone are removed; files in ``done`` (the
    last group record: committed already) get their result and are removed; incomplete ones are left
    to their writers."""
    try:
        names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(_SUFFIX))
    except FileNotFoundError:
        return []
    if len(names) > MAX_GROUP:
        names = names[:MAX_GROUP] + ([keep] if keep is not None and keep in names[MAX_GROUP:] else [])
    taken: list[Taken] = []
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue  # gone meanwhile
        try:
            content = _read_all(fd)
            complete = content.endswith(b"\n")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alive = True
            else:
                alive = False
            if not alive:  # its writer is gone (or has not locked it yet, while it is incomplete)
                if complete or _age(fd) > STALE_SECONDS:
                    os.unlink(path)
                os.close(fd)
                continue
            if not complete:  # still being written: its writer leads itself if no one takes it
                os.close(fd)
                continue
            lines = content.split(b"\n")[:-1]
            if not lines or lines[-1][:1] in (b"=", b"!"):  # it has its result (its leader died before unlinking)
                os.unlink(path)
                os.close(fd)
                continue
            if name in done:
                first, count = done[name]
                Taken(name, path, fd, len(content), []).finish(f"={first} {count}")
                continue
            taken.append(Taken(name, path, fd, len(content), lines))
        except OSError:
            os.close(fd)
    return taken


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _age(fd: int) -> float:
    return time.time() - os.fstat(fd).st_mtime


def record_text(entries: list[tuple[str, int, int]]) -> str:
    """The ``group`` record: ``name first count`` per committed spool file, ``;``-separated."""
    return ";".join(f"{n} {f} {c}" for n, f, c in entries)


def parse_record(text: str | None) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for part in (text or "").split(";"):
        bits = part.split()
        if len(bits) == 3:
            with contextlib.suppress(ValueError):
                out[bits[0]] = (int(bits[1]), int(bits[2]))
    return out
