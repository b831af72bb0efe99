"""What every command shares: resolving the home, the output mode, and running guarded."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from ..context import Context
from ..errors import Error, NotFoundError, OperationalError, UsageError
from ..jws import MAX_LIST_BYTES, MAX_TOKEN_BYTES
from .output import Output

__all__ = ["State", "command", "guarded", "make_context", "read_bytes", "read_file", "read_input"]


class State:
    """Global options, gathered by the root callback (or the fast path)."""

    def __init__(self, home: str | None = None, json_mode: bool = False) -> None:
        self.home = home
        self.json_mode = json_mode or os.environ.get("AGENTCTL_FORMAT", "").lower() == "json"

    def output(self, json_flag: bool = False) -> Output:
        return Output(self.json_mode or json_flag)


def _prompt(out: Output) -> Callable[[str], "bytes | None"] | None:
    if not sys.stdin.isatty() or not sys.stderr.isatty():
        return None  # never prompt in scripts or CI

    def ask(purpose: str, label: str = "") -> bytes | None:
        import getpass

        of = f" of {label}" if label else ""
        if purpose == "new":
            first = getpass.getpass(f"agentctl: passphrase for the new key file{of} (empty for none): ")
            if not first:
                return None
            if getpass.getpass("agentctl: repeat the passphrase: ") != first:
                raise UsageError("the passphrases do not match; nothing was created")
            return first.encode("utf-8")
        again = "wrong passphrase, try again: " if purpose == "retry" else ""
        value = getpass.getpass(f"agentctl: {again}passphrase for the key file{of}: ")
        return value.encode("utf-8") if value else None

    return ask


def make_context(state: State, out: Output) -> Context:
    return Context.for_home(state.home, notify=out.note, prompt=_prompt(out))


def command(body: Callable[..., "int | None"]) -> Callable[..., int]:
    """The one runner: ``body(state, out, ...)`` is a command's whole work; it returns an exit code (or
    None for 0) or raises. The runner turns every failure into the one message and JSON shape and an
    exit code (:func:`guarded`). The Typer commands and the fast path call the same runner."""
    import functools

    @functools.wraps(body)
    def run(state: State, out: Output, *args: object, **kwargs: object) -> int:
        return guarded(out, lambda: body(state, out, *args, **kwargs))

    return run


def guarded(out: Output, body: Callable[[], "int | None"]) -> int:
    """Run a command body; turn every failure into a one-line message and an exit code."""
    try:
        return body() or 0
    except Error as e:
        if e.param is not None:
            from .params import name_flags

            name_flags(e)
        return out.error(e)
    except KeyboardInterrupt:
        out.stderr.write("agentctl: interrupted\n")
        return 130
    except RecursionError:  # a document nested deeper than any parser here follows: bad input, not a bug
        return out.error(UsageError("an input document is nested too deeply to read", hint="give a flatter document"))
    except BrokenPipeError:  # the reader went away (agentctl list | head -1): not an error to report
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second failure at exit
        except (OSError, ValueError, AttributeError):
            pass
        return 141  # as if killed by SIGPIPE, like other command-line tools
    except Exception as e:  # the last line of defence: no traceback unless asked for
        if os.environ.get("AGENTCTL_DEBUG") == "1":
            raise
        return out.error(
            OperationalError(
                f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}",
                hint="rerun with AGENTCTL_DEBUG=1 for a traceback, and report it",
            )
        )


def read_input(source: str, what: str = "input") -> str:
    """A token or document from ``-`` (stdin), a file, or the text itself when it is neither."""
    if source == "-":
        return _token_text(_read_at_most("-", what, MAX_TOKEN_BYTES))
    try:
        is_file = len(source) < 4096 and Path(source).is_file()
    except (OSError, ValueError):  # too long or NUL: not a file name, so the text itself
        is_file = False
    if is_file:
        try:
            return _token_text(_read_at_most(source, what, MAX_TOKEN_BYTES))
        except UnicodeDecodeError as e:
            raise UsageError(f"cannot read {what} {source}: {e}") from None
    if source and len(source) < 4096 and _is_dir(source):  # a directory is no token either
        raise UsageError(f"cannot read {what} {source}: it is a directory")
    if _looks_like_path(source):  # a mistyped file name is a usage error, not a malformed token
        raise NotFoundError(f"no such file: {source}", hint=f"give the {what} itself, a file holding it, or - for stdin")
    return source


def _looks_like_path(text: str) -> bool:
    """A file extension, or a slash in something that is not three dot-separated segments, means a
    path was meant (a token has exactly two dots; a badly encoded one may hold '/')."""
    import re

    if len(text) >= 4096:
        return False
    if re.search(r"\.(jwt|jws|json|txt)$", text, re.I):
        return True
    return ("/" in text or os.sep in text) and text.count(".") != 2


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


#: The most a command reads from one file or stdin, checked while reading (never after: /dev/zero or an
#: endless pipe is refused, not read into memory). Documents (revocation lists, trust bundles,
#: checkpoints, keys) are at most 8 MiB (SPEC); a --data payload, hashed, at most 64 MiB; a token or
#: presentation is read up to 64 KiB and one byte more, so that verification refuses it as malformed.
MAX_DOCUMENT_BYTES = MAX_LIST_BYTES
MAX_DATA_BYTES = 64 * 1024 * 1024


def read_file(source: str, what: str = "file", *, limit: int = MAX_DOCUMENT_BYTES) -> str:
    """A UTF-8 file, or stdin for ``-``, of at most ``limit`` bytes."""
    data = read_bytes(source, what, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"cannot read {what} {source}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_bytes(source: str, what: str = "file", *, limit: int = MAX_DATA_BYTES) -> bytes:
    """A file's bytes, or stdin's for ``-``; more than ``limit`` bytes is a usage error, found after
    reading ``limit + 1`` bytes at most."""
    data = _read_at_most(source, what, limit)
    if len(data) > limit:
        where = "stdin" if source == "-" else source
        raise UsageError(f"{what} {where} is larger than {_size(limit)}, the most agentctl reads", hint="give a smaller file")
    return data


def _read_at_most(source: str, what: str, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a file or of stdin (``-``): enough to tell that it is too large."""
    if source == "-":
        if hasattr(sys.stdin, "buffer"):
            return sys.stdin.buffer.read(limit + 1)
        return sys.stdin.read(limit + 1).encode("utf-8")  # a text stream (tests): characters, then bytes
    if not source:  # Path("") is the current directory
        raise UsageError(f"no {what} file given (an empty name)")
    try:
        with open(source, "rb") as f:
            return f.read(limit + 1)
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {source}") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read {what} {source}: it is a directory") from None
    except OSError as e:
        raise UsageError(f"cannot read {what} {source}: {e.strerror or e}") from None


def _token_text(data: bytes) -> str:
    """A token's text; one larger than a token may be is cut (never decoded whole) and stays too
    large, so verification refuses it as malformed and names the limit."""
    if len(data) > MAX_TOKEN_BYTES:
        return data[: MAX_TOKEN_BYTES + 1].decode("ascii", "replace")
    return data.decode("utf-8")


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"
