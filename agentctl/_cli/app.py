"""The Typer application: the root only registers command groups and the global options."""

from __future__ import annotations

from typing import List, Optional

import typer

from .. import __version__
from .common import State
from . import identity_cmds as ident

HOME_HELP = "Home directory (default: $AGENTCTL_HOME, else the user data dir)."
JSON_HELP = "Print exactly one JSON document on stdout; everything else goes to stderr."

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


def state(ctx: typer.Context) -> State:
    return ctx.obj if isinstance(ctx.obj, State) else State()


def done(code: int) -> None:
    raise typer.Exit(code)


JsonOpt = typer.Option(False, "--json", help=JSON_HELP)


# --- identity ---------------------------------------------------------------------------------


@app.command()
def keygen(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Principal name, e.g. agent:code-reviewer:prod."),
    role: List[str] = typer.Option([], "--role", metavar="ROLE", help="A role (repeatable)."),
    attr: List[str] = typer.Option([], "--attr", metavar="KEY=VALUE", help="An attribute (repeatable)."),
    export_secret: bool = typer.Option(False, "--export-secret", help="Print the exported secret on stdout, for a CI secret store."),
    no_store: bool = typer.Option(False, "--no-store", help="Keep no copy of the secret on this machine (with --export-secret)."),
    json_: bool = JsonOpt,
) -> None:
    """Create a principal with a fresh Ed25519 key."""
    s = state(ctx)
    done(ident.do_keygen(s, s.output(json_), name, role, attr, export_secret, no_store))


@app.command("list")
def list_(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """List the principals in the home."""
    s = state(ctx)
    done(ident.do_list(s, s.output(json_)))


@app.command()
def show(ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME"), json_: bool = JsonOpt) -> None:
    """Show one principal: key history, roles, attributes, status."""
    s = state(ctx)
    done(ident.do_show(s, s.output(json_), name))


@app.command()
def pubkey(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    format: str = typer.Option("did", "--format", metavar="did|jwk|jwks|b64", help="Output form of the current public key."),
    json_: bool = JsonOpt,
) -> None:
    """Print a principal's current public key."""
    s = state(ctx)
    done(ident.do_pubkey(s, s.output(json_), name, format))


@app.command("import")
def import_(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    key: Optional[str] = typer.Argument(None, metavar="[KEY]", help="did:key, a JWK file, or base64url."),
    rotation: Optional[str] = typer.Option(None, "--rotation", metavar="FILE", help="Accept a rotation statement for NAME."),
    role: List[str] = typer.Option([], "--role", metavar="ROLE", help="A role (repeatable)."),
    json_: bool = JsonOpt,
) -> None:
    """Trust a principal made elsewhere, or accept its rotation statement."""
    s = state(ctx)
    done(ident.do_import(s, s.output(json_), name, key, rotation, role))


@app.command()
def rotate(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME"),
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE", help="Write the rotation statement to FILE."),
    json_: bool = JsonOpt,
) -> None:
    """Give a principal a new key; the old one is retired and signs a rotation statement."""
    s = state(ctx)
    done(ident.do_rotate(s, s.output(json_), name, output))


@app.command()
def revoke(
    ctx: typer.Context,
    name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="Principal to revoke, with all its keys."),
    key: Optional[str] = typer.Option(None, "--key", metavar="KID", help="Revoke one key."),
    grant: Optional[str] = typer.Option(None, "--grant", metavar="JTI", help="Revoke one grant."),
    reason: str = typer.Option("", "--reason", metavar="TEXT", help="Why, for the record."),
    json_: bool = JsonOpt,
) -> None:
    """Revoke a principal, a key or a grant. Permanent."""
    s = state(ctx)
    done(ident.do_revoke(s, s.output(json_), name, key, grant, reason))


# --- other ------------------------------------------------------------------------------------


@app.command()
def demo(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Walk through the whole story in a throwaway home."""
    from .demo import do_demo

    s = state(ctx)
    done(do_demo(s, s.output(json_)))
