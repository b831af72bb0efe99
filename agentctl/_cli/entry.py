"""The console script. Hot commands take a fast path that never imports Typer; everything else, and
anything the fast path does not recognise exactly, goes to the Typer application."""

from __future__ import annotations

import os
import sys

__all__ = ["main", "run"]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from .fast import try_fast

    code = try_fast(args)
    if code is not None:
        return code
    return run_typer(args)


def run_typer(args: list[str]) -> int:
    from typer.main import get_command

    from .app import app

    try:
        from typer._click import exceptions as click_exc  # Typer >= 0.25 vendors click
    except ImportError:  # pragma: no cover - older Typer
        from click import exceptions as click_exc

    command = get_command(app)
    json_mode = "--json" in args or os.environ.get("AGENTCTL_FORMAT", "").lower() == "json"
    try:
        rv = command.main(args=args, prog_name="agentctl", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click_exc.Exit as e:
        return e.exit_code
    except click_exc.Abort:
        sys.stderr.write("agentctl: interrupted\n")
        return 130
    except click_exc.UsageError as e:
        from ..errors import UsageError
        from .output import Output

        where = e.ctx.command_path if e.ctx is not None else "agentctl"
        message = e.format_message()
        message = message[:1].lower() + message[1:]
        err = UsageError(message.replace("\n", " "), hint=f"see '{where} --help'")
        return Output(json_mode).error(err)
    except click_exc.ClickException as e:
        from ..errors import UsageError
        from .output import Output

        return Output(json_mode).error(UsageError(e.format_message()))


def run() -> None:
    sys.exit(main())
