"""The Typer application: the root only registers command groups and the global options."""

from __future__ import annotations

from typing import Optional

import typer

from .. import __version__
from .common import State
from .options import JSON_HELP

HOME_HELP = "Home directory (default: $AGENTCTL_HOME, else the user data dir)."

app = typer.Typer(
    name="agentctl",
    help="Cryptographic identities, delegation grants, signed actions and a tamper-evident audit log for AI agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _version(value: bool) -> None:
    if value:
        print(f"agentctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    home: Optional[str] = typer.Option(None, "--home", metavar="DIR", help=HOME_HELP),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """agentctl: which agent did that, on whose behalf, and who allowed it."""
    ctx.obj = State(home, json_)


# --- the command groups, each defined in its own module, in the order --help lists them ----------

from . import action_app, audit_app, delegation_app, identity_app, other_app  # noqa: E402

for _module in (identity_app, delegation_app, action_app, audit_app, other_app):
    app.registered_commands += _module.commands.registered_commands
    app.registered_groups += _module.commands.registered_groups

from .policy_cmds import policy_app  # noqa: E402 - the policy group lives in its own module

app.add_typer(policy_app, name="policy")

from .trust_cmds import sync_command, trust_app  # noqa: E402 - trust bundles and sources live in their own module

app.add_typer(trust_app, name="trust")
app.command("sync")(sync_command)

from .mcp_cmds import mcp_app  # noqa: E402 - the MCP proxies live in their own module

app.add_typer(mcp_app, name="mcp")

from .approval_cmds import approval_app  # noqa: E402 - approvals live in their own module

app.add_typer(approval_app, name="approval")


# --- help: summaries, examples and environment for every command (agentctl/_cli/helptext.py) ---------

from .helptext import attach as _attach_help  # noqa: E402  (after every command is registered)

_attach_help(app)
