"""What a Rego set's source says, read as text before the engine sees it.

rego-cpp builds a set that does not define the queried rule and answers it undefined, and it runs
``print()`` straight to the process's stdout: so the source is scanned first (comments and string
contents blanked) for the paths its rules define and for calls to ``print``. No engine is needed here.
"""

from __future__ import annotations

import re

from ..errors import UsageError
from . import PolicyFile

__all__ = ["SEGMENT", "code_only", "defined_paths", "require_rule", "calls_print"]

#: One segment of a package path or rule name.
SEGMENT = r"[A-Za-z_][A-Za-z0-9_]*"

_PRINT = re.compile(r"\bprint\s*\(")


def code_only(text: str) -> str:
    """The text with comments and string contents blanked (lengths and newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + " " * (min(j, n) - i - 1) + ('"' if j < n else ""))
            i = j + 1
        elif c == "`":
            j = text.find("`", i + 1)
            j = n - 1 if j < 0 else j
            out.append("`" + re.sub(r"[^\n]", " ", text[i + 1:j]) + "`")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_HEAD = re.compile(rf"(?:default\s+)?({SEGMENT}(?:\.{SEGMENT})*)")
_KEYWORDS = {"package", "import", "else", "default", "not", "some", "every", "with", "as", "if", "contains", "in"}


def defined_paths(text: str) -> set[tuple[str, ...]]:
    """The data paths the rules of one module define: its package plus each top-level rule head."""
    code = code_only(text)
    package = None
    paths = set()
    depth = 0
    at_line_start = True
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth = max(0, depth - 1)
        elif c == "\n":
            at_line_start = True
            i += 1
            continue
        elif depth == 0 and at_line_start and not c.isspace():
            m = _HEAD.match(code, i)
            if m:
                word = m.group(1)
                if word == "package":
                    pm = re.match(rf"package\s+({SEGMENT}(?:\.{SEGMENT})*)", code[i:])
                    if pm:
                        package = tuple(pm.group(1).split("."))
                elif word.split(".")[0] not in _KEYWORDS and package is not None:
                    paths.add(package + (word.split(".")[0],))
                i = m.end()
                at_line_start = False
                continue
        if not c.isspace():
            at_line_start = False
        i += 1
    return paths


def require_rule(files: list[PolicyFile], query: str) -> None:
    """Refuse a set none of whose modules defines ``query`` (the engine would answer undefined)."""
    wanted = tuple(query.split(".")[1:])
    for f in files:
        for path in defined_paths(f.text):
            k = min(len(path), len(wanted))
            if path[:k] == wanted[:k]:
                return
    raise UsageError(f"policy set {', '.join(f.path for f in files)} does not define {query}",
                     hint="check the package name and the rule, or give query", param="query")


def calls_print(text: str) -> bool:
    """Whether a module calls ``print`` (outside comments and strings)."""
    return bool(_PRINT.search(code_only(text)))
