"""The one meaning of ``-o FILE|-`` (SPEC "Commands"): ``-`` (or no ``-o``) is stdout; a file is checked
before the command acts (a directory, a missing or unwritable directory: a usage error before anything
changes or is recorded) and written atomically once the command has succeeded, with the mode the umask
gives; a device or a pipe (``/dev/null``, a FIFO) is written into, never renamed over.

Secret-bearing outputs never go through ``-o``: what is written here is public (tokens, statements,
lists, checkpoints)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import NotFoundError, OperationalError, UsageError

__all__ = ["Target", "umask_mode"]


def umask_mode() -> int:
    """The mode a new file gets from the umask (0o666 less the umask), as ``open`` would give it."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class Target:
    """Where a command's result goes. Build it with :meth:`of` before acting: that is the check."""

    def __init__(self, path: str | None) -> None:
        self.path = None if path in (None, "-") else path
        self._written = False

    @classmethod
    def of(cls, path: str | None) -> "Target":
        target = cls(path)
        target.check()
        return target

    @property
    def to_stdout(self) -> bool:
        return self.path is None

    def __str__(self) -> str:
        return self.path or "stdout"

    def check(self) -> None:
        """Refuse a file that cannot be written, before a command changes or records anything."""
        path = self.path
        if path is None:
            return
        if not path:  # Path("") is the current directory
            raise UsageError("no output file given (an empty name)")
        target = Path(path)
        try:
            if target.is_dir():
                raise UsageError(f"cannot write {path}: it is a directory")
            if not target.parent.is_dir():
                raise NotFoundError(f"cannot write {path}: no directory {target.parent}")
            st = target.stat() if target.exists() else None
        except OSError as e:  # a name too long, a loop of links
            raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
        except ValueError as e:  # a NUL in the name
            raise UsageError(f"cannot write {path}: {e}") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            if not os.access(target, os.W_OK):
                raise UsageError(f"cannot write {path}: permission denied")
            return
        if not os.access(target.parent, os.W_OK | os.X_OK):  # the atomic write makes a file next to it
            raise UsageError(f"cannot write {path}: the directory {target.parent} is not writable")

    def write(self, text: str) -> None:
        """Write ``text`` to the file (never to stdout: the caller prints a stdout result itself)."""
        if self.path is None:
            raise ValueError("write() of a stdout target")
        from ..home import atomic_write

        self.check()
        target = Path(self.path)
        try:
            mode = target.stat().st_mode
        except FileNotFoundError:
            mode = None
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror or e}") from None
        if mode is not None and not stat.S_ISREG(mode):
            try:  # a device or a pipe: write into it, never rename over it
                with open(target, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                raise OperationalError(f"cannot write {self.path}: {e.strerror or e}") from None
            return
        atomic_write(target, text.encode("utf-8"), mode=umask_mode())
        self._written = True

    def undo(self) -> None:
        """Remove a file this target wrote (a later step failed); a device or a pipe is left alone."""
        if not self._written or self.path is None:
            return
        try:
            if stat.S_ISREG(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except OSError:
            pass
        self._written = False
