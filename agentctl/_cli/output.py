"""One output object for every command: a human mode and a JSON mode.

Data goes to stdout, diagnostics to stderr. In JSON mode exactly one JSON document reaches stdout,
also on failure. Tables and colour only on a terminal (rich, imported only then); ``NO_COLOR`` is
honoured.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Callable, Sequence, TextIO

from ..errors import Error, VerificationError

__all__ = ["Output"]


class Output:
    def __init__(self, json_mode: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._emitted = False

    # --- results ------------------------------------------------------------------------------
    def result(self, doc: dict, human: Callable[[], None] | str | None = None) -> None:
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
        self.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
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

    @property
    def is_terminal(self) -> bool:
        try:
            return self.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> None:
        if self.is_terminal:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=title, show_edge=False, header_style="bold")
            for c in columns:
                t.add_column(c, overflow="fold")  # a narrow terminal wraps a key id, never cuts it
            for r in rows:
                t.add_row(*r)
            # cells are data, never rich markup; NO_COLOR (non-empty, no-color.org) means no escape codes at all
            Console(file=self.stdout, markup=False, highlight=False, emoji=False,
                    color_system=None if os.environ.get("NO_COLOR") else "auto").print(t)
            return
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        self.line("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
        for r in rows:
            self.line("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in pairs), default=0)
        for k, v in pairs:
            self.line(f"{k.ljust(width)}  {v}")

    # --- failures -----------------------------------------------------------------------------
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
