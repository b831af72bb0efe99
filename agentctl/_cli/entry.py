"""The console script. Hot commands take a fast path that never imports Typer; everything else, and
anything the fast path does not recognise exactly, goes to the Typer application."""

from __future__ import annotations

import os
import sys

__all__ = ["main", "run"]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(str(getattr(s, "encoding", "utf-8")).lower().replace("-", "") != "utf8" for s in (sys.stdout, sys.stderr)):
        from .output import safe_streams  # LANG=C, PYTHONIOENCODING=ascii: stand-ins, never UnicodeEncodeError

        safe_streams()
    from .fast import try_fast

    code = try_fast(args)
    if code is not None:
        return code
    return run_typer(args)


def run_typer(args: list[str]) -> int:
    from typer import Abort, Exit  # typer's own classes (click's before Typer 0.25, its vendored copy's after)
    from typer.main import get_command

    from .app import app

    try:
        from typer._click import exceptions as click_exc  # Typer >= 0.25 vendors click
    except ImportError:  # pragma: no cover - older Typer
        from click import exceptions as click_exc

    command = get_command(app)
    args = _protect_dash_keys(args)
    json_mode = "--json" in args or os.environ.get("AGENTCTL_FORMAT", "").lower() == "json"
    twice = _repeated_option(command, args)
    if twice is not None:  # the parser would keep the last one and silently drop a check or a setting
        from ..errors import UsageError
        from .output import Output

        return Output(json_mode).error(UsageError(f"{twice} is given more than once; give it once"))
    try:
        rv = command.main(args=args, prog_name="agentctl", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except Exit as e:
        return e.exit_code
    except Abort:
        sys.stderr.write("agentctl: interrupted\n")
        return 130
    except click_exc.UsageError as e:
        from ..errors import UsageError
        from .output import Output

        where = e.ctx.command_path if e.ctx is not None else "agentctl"
        if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:  # its message is the whole help
            sys.stderr.write(e.ctx.get_help() + "\n")
            message = "missing command"
        else:
            message = e.format_message()
            message = message[:1].lower() + message[1:]
        err = UsageError(message.replace("\n", " "), hint=f"see '{where} --help'")
        return Output(json_mode).error(err)
    except click_exc.ClickException as e:
        from ..errors import UsageError
        from .output import Output

        return Output(json_mode).error(UsageError(e.format_message()))


def _protect_dash_keys(args: list[str]) -> list[str]:
    """A base64url public key starts with '-' once in 64 keys; option parsing would take it for a flag.
    No flag has that shape (43 base64url characters), so such a key moves behind '--' at the end (it is
    the last positional argument of ``import``, the one command that takes a key)."""
    import re

    if "--" in args:
        return args
    # a value of an option (``revoke --key -KID``) is taken as such already: leave it in place
    keys = [a for i, a in enumerate(args) if re.fullmatch(r"-[A-Za-z0-9_-]{42}", a) and not (i and args[i - 1].startswith("-"))]
    if not keys:
        return args
    return [a for a in args if a not in keys] + ["--", *keys]


def _repeated_option(command, args: list[str]) -> str | None:
    """The first option that takes one value and appears twice (repeatable ones like --scope aside)."""
    single: dict[str, str] = {}  # every spelling (-o, --output) -> the option's longest name

    def collect(cmd) -> None:
        for p in getattr(cmd, "params", ()):
            if getattr(p, "param_type_name", "") == "option" and not p.is_flag and not p.multiple:
                for opt in p.opts:
                    single[opt] = max(p.opts, key=len)
        for sub in getattr(cmd, "commands", {}).values():
            collect(sub)

    collect(command)
    seen: set[str] = set()
    expect_value = False
    for a in args:
        if a == "--":
            break
        if expect_value:
            expect_value = False
            continue
        name = single.get(a.split("=", 1)[0])
        if name is not None:
            if name in seen:
                return name
            seen.add(name)
            expect_value = "=" not in a
    return None


def run() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (agentctl --version | head -0): no traceback
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second failure at exit
        except (OSError, ValueError, AttributeError):
            pass
        code = 141  # as if killed by SIGPIPE, like other command-line tools
    sys.exit(code)
