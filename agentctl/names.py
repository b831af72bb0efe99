"""Principal names: ``KIND:NAME[:QUALIFIER…]``, checked before they reach a file name, log or token."""

from __future__ import annotations

from typing import TypeGuard

import re

from .errors import UsageError

__all__ = ["KINDS", "check_name", "is_name", "kind_of", "file_stem"]

KINDS = ("user", "agent", "service", "host")
_SEGMENT = r"[a-z0-9][a-z0-9._-]*"
_NAME = re.compile(rf"(?:{'|'.join(KINDS)})(?::{_SEGMENT})+")


def is_name(text: object) -> TypeGuard[str]:
    return isinstance(text, str) and 3 <= len(text) <= 128 and _NAME.fullmatch(text) is not None and ".." not in text


def check_name(text: str) -> str:
    """Return ``text`` if it is a valid principal name, else raise a :class:`UsageError` saying why."""
    if is_name(text):
        return text
    shown = text if isinstance(text, str) and len(text) <= 40 and text.isprintable() else "that name"
    if not isinstance(text, str) or not text:
        why = "it is empty"
    elif len(text) > 128:
        why = f"it is {len(text)} characters (at most 128)"
    elif not text.isascii() or not text.isprintable():
        why = "it has non-ASCII or control characters"
    elif ":" not in text:
        why = "it has no KIND: prefix"
    elif text.split(":", 1)[0] not in KINDS:
        why = f"kind {text.split(':', 1)[0]!r} is not one of {', '.join(KINDS)}"
    elif ".." in text:
        why = "it contains '..'"
    else:
        why = "each segment is lower-case [a-z0-9][a-z0-9._-]*"
    raise UsageError(
        f"bad principal name {shown!r}: {why}",
        hint="names look like user:alice or agent:code-reviewer:prod",
    )


def kind_of(name: str) -> str:
    return name.split(":", 1)[0]


def file_stem(name: str) -> str:
    """A file name for a valid principal name (':' is not portable in file names; '+' never occurs)."""
    return check_name(name).replace(":", "+")
