"""Seen action ids for ``verify --once``: one file per ``jti`` under ``HOME/seen``, created with
O_CREAT|O_EXCL so that two processes racing on the same action cannot both win. A file is kept until
its action expires, then swept.

The file is named by the SHA-256 of the acting principal and the ``jti``, not the ``jti`` itself: a
name of fixed length and one case, so that a long ``jti`` cannot make the record fail, two ids that
differ only in case cannot collide on a case-insensitive file system (macOS, Windows), and one agent
cannot use up another agent's action by signing one of its own with the same ``jti``."""

from __future__ import annotations

import hashlib
import os
import random

from .errors import OperationalError, VerificationError
from .home import Home

__all__ = ["remember_once"]

_EMPTY_GRACE = 24 * 3600


def remember_once(home: Home, jti: str, exp: float, now: float, leeway: int = 0, *, issuer: str = "") -> None:
    """Record ``jti`` as used; raise ``replayed`` if it was used before and has not yet expired.

    ``now`` is the real time (it decides what the sweep may forget), never a ``--at`` time."""
    seen = home.ensure("seen") / "seen"
    path = seen / hashlib.sha256(f"{issuer}\n{jti}".encode("utf-8")).hexdigest()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise VerificationError("replayed", f"action {jti} was already used") from None
    except OSError as e:
        raise OperationalError(f"cannot record action {jti} in {seen}: {e.strerror or e}") from None
    try:
        os.write(fd, str(int(exp + leeway)).encode("ascii"))
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        os.unlink(path)
        raise OperationalError(f"cannot record action {jti} in {seen}: {e.strerror or e}") from None
    os.close(fd)
    if random.random() < 1 / 64:
        _sweep(seen, now)


def _sweep(seen, now: float) -> None:
    for entry in os.scandir(seen):
        try:
            with open(entry.path, "rb") as f:
                text = f.read(32)
            # An empty file is one that another process has just created and not yet written: keep it
            # (unless it is old enough to be the leftover of a crash), or that process's action could
            # be replayed.
            until = int(text) if text else entry.stat().st_mtime + _EMPTY_GRACE
            if until < now:
                os.unlink(entry.path)
        except (OSError, ValueError):
            continue
