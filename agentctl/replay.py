"""Seen action ids for ``verify --once``: one file per ``jti`` under ``HOME/seen``, created with
O_CREAT|O_EXCL so that two processes racing on the same action cannot both win. A file is kept until
its action expires, then swept."""

from __future__ import annotations

import os
import random

from .errors import OperationalError, VerificationError
from .home import Home

__all__ = ["remember_once"]


def remember_once(home: Home, jti: str, exp: float, now: float, leeway: int = 0) -> None:
    """Record ``jti`` as used; raise ``replayed`` if it was used before and has not yet expired."""
    seen = home.ensure("seen") / "seen"
    path = seen / jti  # jti is strict base64url (checked when the token was parsed): a safe file name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise VerificationError("replayed", f"action {jti} was already used") from None
    except OSError as e:
        raise OperationalError(f"cannot record action {jti} in {seen}: {e.strerror or e}") from None
    try:
        os.write(fd, str(int(exp + leeway)).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if random.random() < 1 / 64:
        _sweep(seen, now)


def _sweep(seen, now: float) -> None:
    for entry in os.scandir(seen):
        try:
            with open(entry.path, "rb") as f:
                until = int(f.read(32) or b"0")
            if until < now:
                os.unlink(entry.path)
        except (OSError, ValueError):
            continue
