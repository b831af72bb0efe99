"""One output object for every command: a human mode and a JSON mode.

Data goes to stdout, diagnostics to stderr. In JSON mode exactly one JSON document reaches stdout,
also on failure. Tables fit the terminal and colour only on a terminal; ``NO_COLOR`` is honoured.
A stdout or stderr that cannot encode a character (``LANG=C``, ``PYTHONIOENCODING=ascii``) gets an
ASCII stand-in for it (``safe_streams``), never a ``UnicodeEncodeError``.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
from typing import Callable, Sequence, TextIO

from ..errors import Error, VerificationError

__all__ = ["Output", "safe_streams"]

#: Columns a narrow terminal leaves out first (a name, a time, an outcome or a status stays).
_DROP_ORDER = ("origin", "event", "seq", "retired", "revoked", "resource", "roles", "created", "key", "action", "reason")

#: ASCII stand-ins for the few non-ASCII characters agentctl itself prints.
_ASCII = {"\u2026": "...", "\u2014": "-", "\u2013": "-", "\u25b8": ">", "\u2192": "->", "\u2190": "<-",
          "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "}
_ERRORS = "agentctl-ascii"


def _ascii_fallback(e: UnicodeError) -> tuple[str, int]:
    if not isinstance(e, UnicodeEncodeError):
        raise e
    return "".join(_ASCII.get(ch, "?") for ch in e.object[e.start:e.end]), e.end


codecs.register_error(_ERRORS, _ascii_fallback)


def _encodes(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _make_safe(stream: TextIO) -> None:
    if not _encodes(stream, "".join(_ASCII)) and hasattr(stream, "reconfigure"):
        try:
            stream.reconfigure(errors=_ERRORS)
        except (ValueError, OSError, io.UnsupportedOperation):
            pass


def safe_streams() -> None:
    """Make sys.stdout and sys.stderr print an ASCII stand-in for what their encoding cannot hold."""
    for stream in (sys.stdout, sys.stderr):
        _make_safe(stream)


def _grid_width(columns: Sequence[str], rows: Sequence[Sequence[str]], keep: Sequence[int]) -> int:
    return sum(max([len(columns[i])] + [len(r[i]) for r in rows]) for i in keep) + 2 * (len(keep) - 1)


class Output:
    def __init__(self, json_mode: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        for stream in (self.stdout, self.stderr):
            _make_safe(stream)
        self._emitted = False

    # --- results ------------------------------------------------------------------------------
    def result(self, doc: dict, human: Callable[[], object] | str | None = None) -> None:
        """The command's result: ``doc`` as JSON, or the human rendering."""
        if self.json_mode:
            self._json(doc)
        elif callable(human):
            human()
        elif human is not None:
            self.line(human)

    def _json(self, doc: dict) -> None:
        if self._emitted:  # one document per run, whatever happens
            return
        self._emitted = True
        # a stdout that cannot hold every character gets \u escapes: the same document, nothing replaced
        ascii_only = not _encodes(self.stdout, "\u2026\U0001f600")
        self.stdout.write(json.dumps(doc, indent=2, ensure_ascii=ascii_only) + "\n")
        self.stdout.flush()

    def line(self, text: str = "") -> None:
        """A line of data on stdout (human mode)."""
        self.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        """A diagnostic for a person on stderr, in both modes."""
        self.stderr.write(f"agentctl: {text}\n")
        self.stderr.flush()

    def say(self, text: str = "") -> None:
        """Human prose on stderr (JSON mode keeps stdout for the document)."""
        self.stderr.write(text + "\n")

    def progress(self, what: str, stdout_terminal: bool = True, unit: str = "events"):
        """``(show, end)`` for a progress line on stderr, ``show(done, total)`` rewriting it in place
        (``total`` None: a count alone): only when stderr is a terminal, and stdout is one too (or,
        with ``stdout_terminal=False``, is not: a stream of results on a terminal is its own
        progress); never under --json or into a pipe. Otherwise both do nothing."""
        try:
            tty = (not self.json_mode and self.stderr.isatty()
                   and self.stdout.isatty() == stdout_terminal)
        except (AttributeError, ValueError):
            tty = False
        if not tty:
            return (lambda done, total=None: None), (lambda: None)
        shown = [False]
        err = self.stderr

        def show(done: int, total: int | None = None) -> None:
            err.write(f"\ragentctl: {what} {done}" + (f"/{total}" if total is not None else "") + f" {unit}")
            err.flush()
            shown[0] = True

        def end() -> None:
            if shown[0]:
                err.write("\n")
                err.flush()

        return show, end

    @property
    def is_terminal(self) -> bool:
        try:
            return self.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
              optional: Sequence[str] | None = None) -> None:
        """Rows under upper-case headings. On a terminal the table fits its width without breaking a
        cell: the columns in ``optional`` (default: the usual less important ones) are left out, least
        important first, and when even the rest does not fit every row becomes a block of
        ``heading  value`` lines. Elsewhere (a pipe, a file) every column is printed in full."""
        columns = [c.upper() for c in columns]
        rows = [[str(v) for v in r] for r in rows]
        if not self.is_terminal:
            self._grid(columns, rows)
            return
        if title:
            self.line(self._style(title, "3"))
        width = self.width
        keep = list(range(len(columns)))
        dropped: list[str] = []
        order = [c.upper() for c in (optional if optional is not None else _DROP_ORDER)]
        for name in order:
            if _grid_width(columns, rows, keep) <= width:
                break
            if name in columns and columns.index(name) in keep and len(keep) > 1:
                keep.remove(columns.index(name))
                dropped.append(name.lower())
        if _grid_width(columns, rows, keep) > width:
            self._blocks(columns, rows)
            return
        self._grid([columns[i] for i in keep], [[r[i] for i in keep] for r in rows], bold=True)
        if dropped:
            for note in (f"({', '.join(dropped)} left out to fit {width} columns; --json has every field)",
                         f"({', '.join(dropped)} left out to fit)", f"({len(dropped)} columns left out)"):
                if len(note) <= width:
                    break
            self.line(self._style(note, "2"))

    def _grid(self, columns: Sequence[str], rows: Sequence[Sequence[str]], bold: bool = False) -> None:
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        head = "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()
        self.line(self._style(head, "1") if bold else head)
        for r in rows:
            self.line("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())

    def _blocks(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """One record per block: for a terminal too narrow for any table."""
        pad = max(len(c) for c in columns)
        for n, r in enumerate(rows):
            if n:
                self.line()
            for c, v in zip(columns, r):
                self.line(f"{self._style(c.lower().ljust(pad), '1')}  {v}")

    def _style(self, text: str, sgr: str) -> str:
        """``text`` in bold (1), dim (2) or italic (3) where colour is allowed: a terminal, no NO_COLOR
        (non-empty, no-color.org), not TERM=dumb."""
        if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb" or not self.is_terminal:
            return text
        return f"\x1b[{sgr}m{text}\x1b[0m"

    @property
    def width(self) -> int:
        """The terminal's width in columns: ``COLUMNS`` when set, else the terminal's, else 80."""
        try:
            cols = int(os.environ.get("COLUMNS", ""))
            if cols > 0:
                return cols
        except ValueError:
            pass
        try:
            return os.get_terminal_size(self.stdout.fileno()).columns or 80
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            return 80

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in pairs), default=0)
        for k, v in pairs:
            self.line(f"{k.ljust(width)}  {v}")

    # --- failures -----------------------------------------------------------------------------
    def verdict(self, doc: dict, e: Error) -> None:
        """A denial's verdict document with the one failure shape added (``error``, ``reason``,
        ``message``, ``exit_code``, ``hint``): the verdict fields stay."""
        self.result({**doc, **e.describe(), **{k: doc[k] for k in ("ok", "reason", "detail") if k in doc}})

    def error(self, e: Error) -> int:
        if isinstance(e, VerificationError):
            self.stderr.write(f"agentctl: denied: {e.reason}: {e.detail}\n")
        else:
            # 'denied: REASON: detail' is the verdict format (SPEC); every other failure is an error.
            self.stderr.write(f"agentctl: error: {e.message}\n")
        if e.hint:
            self.stderr.write(f"agentctl: hint: {e.hint}\n")
        self.stderr.flush()
        if self.json_mode:
            self._json(e.describe())
        return e.exit_code
