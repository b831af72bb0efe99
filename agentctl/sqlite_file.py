"""A new SQLite database file, made whole or not at all (the audit log, the revocation store)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Callable

__all__ = ["create_whole"]


def create_whole(path: Path, build: Callable[[sqlite3.Connection], None], fail: Callable[[str], Exception],
                 what: str | None = None) -> None:
    """Make a new database at ``path`` unless one appears there meanwhile: ``build(conn)`` fills it
    in one transaction under a temporary name (WAL, synchronous FULL, mode 0600); the file is synced
    and linked into place and its directory synced, so no reader ever sees an empty or half-made one.
    A failure raises ``fail("cannot create WHAT: …")`` (``what`` defaults to the path) and leaves no
    temporary file behind."""
    what = what or str(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            build(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()  # folds the WAL back into the file
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError:  # no hard links on this file system: a rename, unless one appeared meanwhile
            if not path.exists():
                os.replace(tmp, path)
        _fsync(path.parent)
    except sqlite3.DatabaseError as e:
        raise fail(f"cannot create {what}: {e}") from None
    except OSError as e:
        raise fail(f"cannot create {what}: {e.strerror or e}") from None
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
