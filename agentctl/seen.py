"""Seen-stores for the ``once`` step (SPEC, "Verification", step 12): an action's ``jti`` is accepted
once, and refused (``replayed``) every later time while it could still verify.

A record lasts until the action's ``exp`` plus :data:`MAX_LEEWAY`, the largest leeway any verifier of
the home may use (``--leeway`` is at most 10m), whatever leeway the recording call used: a later call
with a larger leeway still finds it. Records past that are swept, so the store holds only the actions
that could still verify. An action whose ``exp`` is far away (even the year 9999) is kept that long and
refused the second time throughout: forgetting it earlier would let it be replayed, and it could only
be replayed while it is valid. What bounds the store is therefore the lifetime verifiers accept, not
the store: a verifier that wants short records accepts short-lived actions (``sign`` caps an action's
life by ``max_ttl``).

Two implementations of :class:`SeenStore`: :class:`HomeSeenStore` (one file per record under
``HOME/seen``, safe across processes) and :class:`MemorySeenStore` (one process, e.g. a tool server).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Protocol, runtime_checkable

from .errors import OperationalError, VerificationError

__all__ = ["SeenStore", "HomeSeenStore", "MemorySeenStore", "MAX_LEEWAY"]

MAX_LEEWAY = 600  # seconds: the largest leeway a verifier may allow (SPEC: --leeway <= 10m)
_EMPTY_GRACE = 24 * 3600


@runtime_checkable
class SeenStore(Protocol):
    """Remembers what was used. ``remember`` records ``(issuer, jti)`` until ``exp`` + :data:`MAX_LEEWAY`
    and raises ``VerificationError("replayed", …)`` when it is already recorded. ``now`` is the real
    time (it decides what may be forgotten), never a ``--at`` time."""

    def remember(self, issuer: str, jti: str, exp: float, now: float) -> None: ...


def _record_name(issuer: str, jti: str) -> str:
    # The SHA-256 of issuer and jti, not the jti itself: a name of fixed length and one case, so a long
    # jti cannot make the record fail, two ids that differ only in case cannot collide on a
    # case-insensitive file system, and one agent cannot use up another's action with the same jti.
    return hashlib.sha256(f"{issuer}\n{jti}".encode("utf-8")).hexdigest()


def _replayed(jti: str) -> VerificationError:
    return VerificationError("replayed", f"action {jti} was already used")


class MemorySeenStore:
    """Records in memory, for one process (a tool server). Thread-safe; swept as it grows."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 1024

    def remember(self, issuer: str, jti: str, exp: float, now: float) -> None:
        key = _record_name(issuer, jti)
        with self._lock:
            until = self._until.get(key)
            if until is not None and until >= now:
                raise _replayed(jti)
            self._until[key] = exp + MAX_LEEWAY
            if len(self._until) >= self._next_sweep:
                self.sweep(now)
                self._next_sweep = max(1024, 2 * len(self._until))

    def forget(self, issuer: str, jti: str) -> None:
        """Drop the record of ``(issuer, jti)``: what was held for a use that did not happen (an MCP
        call whose server answered with an error) becomes usable again."""
        with self._lock:
            self._until.pop(_record_name(issuer, jti), None)

    def sweep(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until < now]:
            del self._until[key]

    def __len__(self) -> int:
        return len(self._until)


class HomeSeenStore:
    """One file per record under ``HOME/seen``, created with O_CREAT|O_EXCL so that two processes
    racing on the same action cannot both win; expired records are swept now and then. The directory
    is made once per store (again only if it disappears), so a long-running guard's record is one file
    made and synced, nothing more."""

    def __init__(self, home, *, sweep_chance: float = 1 / 64) -> None:
        self.home = home
        self.sweep_chance = sweep_chance
        self._dir: str | None = None  # HOME/seen, once made

    def remember(self, issuer: str, jti: str, exp: float, now: float) -> None:
        if self._dir is None:
            self._dir = str(self.home.ensure("seen") / "seen")
        seen = self._dir
        path = os.path.join(seen, _record_name(issuer, jti))
        until = int(exp) + MAX_LEEWAY
        for attempt in (1, 2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileNotFoundError:  # the directory went away: make it again, once
                if attempt == 2:
                    raise OperationalError(f"cannot record action {jti} in {seen}: the directory is missing") from None
                self._dir = None
                seen = self._dir = str(self.home.ensure("seen") / "seen")
            except FileExistsError:
                if attempt == 2 or not _expired(path, now):
                    raise _replayed(jti) from None
                try:  # a record past its time that no sweep removed yet: it no longer counts
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    raise _replayed(jti) from None
            except OSError as e:
                raise OperationalError(f"cannot record action {jti} in {seen}: {e.strerror or e}") from None
        try:
            os.write(fd, str(until).encode("ascii"))
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            os.unlink(path)
            raise OperationalError(f"cannot record action {jti} in {seen}: {e.strerror or e}") from None
        os.close(fd)
        import random  # only a remembering process needs it

        if random.random() < self.sweep_chance:
            self.sweep(now)

    def forget(self, issuer: str, jti: str) -> None:
        """Remove the record of ``(issuer, jti)`` (see :meth:`MemorySeenStore.forget`)."""
        path = self.home.path / "seen" / _record_name(issuer, jti)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OperationalError(f"cannot release {jti} in {path.parent}: {e.strerror or e}") from None

    def sweep(self, now: float) -> int:
        """Remove every record past its time; return how many were removed."""
        seen = self.home.path / "seen"
        removed = 0
        try:
            entries = list(os.scandir(seen))
        except OSError:
            return 0
        for entry in entries:
            if _expired(entry.path, now):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except OSError:
                    continue
        return removed


def _expired(path, now: float) -> bool:
    try:
        with open(path, "rb") as f:
            text = f.read(32)
        # An empty file is one that another process has just created and not yet written: keep it
        # (unless it is old enough to be the leftover of a crash), or that process's action could be
        # replayed.
        until = int(text) if text else os.stat(path).st_mtime + _EMPTY_GRACE
    except (OSError, ValueError):
        return False
    return until < now
