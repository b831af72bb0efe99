"""The one table from a library parameter to the flag that gives it, for errors that name it."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import Error, UsageError, VerificationError

__all__ = ["FLAGS", "flag_check", "name_flags"]

#: The parameter a library value check names -> the command-line flag that gave it.
FLAGS = {"action": "--action", "resource": "--resource", "audience": "--audience", "expect": "--expect",
         "leeway": "--leeway", "max_depth": "--max-depth", "ttl": "--ttl", "scopes": "--scope", "issuer": "--from",
         "embed": "--embed", "data": "--data", "reason": "--reason", "note": "--note", "approval": "--approval",
         "home": "--home", "query": "--query", "blind": "--blind", "store_secret=False": "--no-store", "export_secret": "--export-secret",
         "replace": "--replace", "as_": "--as", "roles": "--role", "attrs": "--attr"}


def name_flags(e: "Error") -> None:
    """Name the flags where a library error names its parameters (``e.param``), in place: the message,
    a verdict's detail and the hint. A parameter is replaced as a whole word, where the library wrote it."""
    import re

    params = (e.param,) if isinstance(e.param, str) else tuple(e.param or ())
    for p in params:
        flag = FLAGS.get(p)
        if flag is None:
            continue
        word = re.compile(rf"(?<![\w-]){re.escape(p)}(?![\w-])")
        e.message = word.sub(flag, e.message)
        if e.hint:
            e.hint = word.sub(flag, e.hint)
        if isinstance(e, VerificationError):
            e.detail = word.sub(flag, e.detail)


def flag_check(check: Callable[[Any], Any], value: Any, param: str) -> Any:
    """Run a library value check (``agentctl.actions.check_*``); its error names the flag."""
    try:
        return check(value)
    except UsageError as e:
        name = getattr(e, "param", param)
        flag = FLAGS.get(name, name)
        raise UsageError(e.message.replace(f"bad {name}", f"bad {flag}", 1), hint=e.hint) from None
