"""The other commands' options: demo, completion."""

from __future__ import annotations

import typer

from .options import JsonOpt, done, state

#: registered on the root by app.py, in this order
commands = typer.Typer()

# --- other ------------------------------------------------------------------------------------


@commands.command()
def demo(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Walk through the whole story in a throwaway home."""
    from .demo import do_demo

    s = state(ctx)
    done(do_demo(s, s.output(json_)))


@commands.command()
def completion(
    ctx: typer.Context,
    shell: str = typer.Argument(..., metavar="bash|zsh|fish", help="The shell to print the completion script for."),
    json_: bool = JsonOpt,
) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from .entry import do_completion

    done(do_completion(shell, state(ctx).json_mode or json_))
