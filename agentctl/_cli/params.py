"""The one table from a library parameter to the flag that gives it, for errors that name it."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import UsageError

__all__ = ["FLAGS", "flag_check"]

#: The parameter a library value check names -> the command-line flag that gave it.
FLAGS = {"action": "--action", "resource": "--resource", "audience": "--audience", "expect": "--expect",
         "leeway": "--leeway"}


def flag_check(check: Callable[[Any], Any], value: Any, param: str) -> Any:
    """Run a library value check (``agentctl.actions.check_*``); its error names the flag."""
    try:
        return check(value)
    except UsageError as e:
        name = getattr(e, "param", param)
        flag = FLAGS.get(name, name)
        raise UsageError(e.message.replace(f"bad {name}", f"bad {flag}", 1), hint=e.hint) from None
