"""The options and arguments several commands share, defined once (help text, metavar, spelling)."""

from __future__ import annotations

from typing import Any

import typer

from .common import State

__all__ = ["JSON_HELP", "JsonOpt", "NameArg", "OutputOpt", "AudienceOpt", "TtlOpt", "state", "done"]

JSON_HELP = "Print exactly one JSON document on stdout; everything else goes to stderr."

#: --json after the command (it is also a global option before it).
JsonOpt = typer.Option(False, "--json", help=JSON_HELP)

#: A principal's name, the first argument of most identity commands.
NameArg = typer.Argument(..., metavar="NAME", help="Principal name, e.g. agent:code-reviewer:prod.")


# The factories below return Any, as typer.Option itself does: the OptionInfo is a parameter's default
# (``output: Optional[str] = OutputOpt("…")``), which Typer replaces with the value given.


def OutputOpt(what: str) -> Any:
    """-o FILE|-: where the result goes (see :mod:`.target`: '-' is stdout, checked before acting)."""
    return typer.Option(None, "-o", "--output", metavar="FILE", help=f"Write {what} to FILE ('-': stdout).")


def AudienceOpt(help: str = "Restrict it to one audience.") -> Any:
    return typer.Option(None, "--audience", metavar="AUD", help=help)


def TtlOpt(help: str) -> Any:
    return typer.Option(None, "--ttl", metavar="DURATION", help=help)


def state(ctx: typer.Context) -> State:
    """The global options the root callback gathered."""
    return ctx.obj if isinstance(ctx.obj, State) else State()


def done(code: int) -> None:
    """End a Typer command with the body's exit code."""
    raise typer.Exit(code)
