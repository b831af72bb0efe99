"""The identity commands' options: keygen, list, show, pubkey, import, rotate, revoke, role. Their bodies
are the ``do_*`` functions of :mod:`.identity_cmds` (shared with the fast path)."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import identity_cmds as ident
from .options import JsonOpt, NameArg, OutputOpt, done, state

#: registered on the root by app.py, in this order
commands = typer.Typer()

# --- identity ---------------------------------------------------------------------------------


@commands.command()
def keygen(
    ctx: typer.Context,
    name: str = NameArg,
    role: List[str] = typer.Option([], "--role", metavar="ROLE", help="A role (repeatable)."),
    attr: List[str] = typer.Option([], "--attr", metavar="KEY=VALUE", help="An attribute (repeatable)."),
    export_secret: bool = typer.Option(False, "--export-secret", help="Print the exported secret on stdout, for a CI secret store."),
    no_store: bool = typer.Option(False, "--no-store", help="Keep no copy of the secret on this machine (with --export-secret)."),
    replace: bool = typer.Option(False, "--replace", help="Re-create the key of a principal whose exported secret never reached its destination; the old key is revoked (with --export-secret --no-store)."),
    json_: bool = JsonOpt,
) -> None:
    """Create a principal with a fresh Ed25519 key."""
    s = state(ctx)
    done(ident.do_keygen(s, s.output(json_), name, role, attr, export_secret, no_store, replace))


@commands.command("list")
def list_(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """List the principals in the home."""
    s = state(ctx)
    done(ident.do_list(s, s.output(json_)))


@commands.command()
def show(ctx: typer.Context, name: str = NameArg, json_: bool = JsonOpt) -> None:
    """Show one principal: key history, roles, attributes, status."""
    s = state(ctx)
    done(ident.do_show(s, s.output(json_), name))


@commands.command()
def pubkey(
    ctx: typer.Context,
    name: str = NameArg,
    format: str = typer.Option("did", "--format", metavar="did|jwk|jwks|b64", help="Output form of the current public key."),
    all_: bool = typer.Option(False, "--all", help="With --format jwks: every key that still verifies, retired ones too, each with its validity (iat, exp)."),
    json_: bool = JsonOpt,
) -> None:
    """Print a principal's current public key (or, with --all, every key)."""
    s = state(ctx)
    done(ident.do_pubkey(s, s.output(json_), name, format, all_))


@commands.command("import")
def import_(
    ctx: typer.Context,
    name: str = NameArg,
    key: Optional[str] = typer.Argument(None, metavar="[KEY]", help="did:key, a JWK file, or base64url (after -- if it starts with -)."),
    rotation: Optional[str] = typer.Option(None, "--rotation", metavar="FILE", help="Accept a rotation statement for NAME."),
    role: List[str] = typer.Option([], "--role", metavar="ROLE", help="A role (repeatable)."),
    json_: bool = JsonOpt,
) -> None:
    """Trust a principal made elsewhere, or accept its rotation statement."""
    s = state(ctx)
    done(ident.do_import(s, s.output(json_), name, key, rotation, role))


@commands.command()
def rotate(
    ctx: typer.Context,
    name: str = NameArg,
    output: Optional[str] = OutputOpt("the rotation statement"),
    export_secret: bool = typer.Option(False, "--export-secret", help="Print the new exported secret on stdout (needs -o FILE)."),
    no_store: bool = typer.Option(False, "--no-store", help="Keep no copy of the new secret here (with --export-secret)."),
    json_: bool = JsonOpt,
) -> None:
    """Give a principal a new key; the old one is retired and signs a rotation statement."""
    s = state(ctx)
    done(ident.do_rotate(s, s.output(json_), name, output, export_secret, no_store))


@commands.command()
def revoke(
    ctx: typer.Context,
    name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="Principal to revoke, with all its keys."),
    key: Optional[str] = typer.Option(None, "--key", metavar="KID", help="Revoke one key."),
    grant: Optional[str] = typer.Option(None, "--jti", "--grant", metavar="JTI", help="Revoke one grant, action or approval by its id (--grant: the same)."),
    reason: str = typer.Option("", "--reason", metavar="TEXT", help="Why, for the record."),
    json_: bool = JsonOpt,
) -> None:
    """Revoke a principal, a key, or a grant, action or approval (--jti). Permanent."""
    s = state(ctx)
    done(ident.do_revoke(s, s.output(json_), name, key, grant, reason))


role_app = typer.Typer(help="A principal's roles (what they confer is set in config.toml, see Authority and roles).", no_args_is_help=True)
commands.add_typer(role_app, name="role")


@role_app.command("add")
def role_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Principal name, e.g. user:alice."),
    roles: List[str] = typer.Argument(..., metavar="ROLE...", help="Roles to add."),
    json_: bool = JsonOpt,
) -> None:
    """Give a principal roles (recorded in the audit log)."""
    s = state(ctx)
    done(ident.do_role(s, s.output(json_), "add", name, roles))


@role_app.command("remove")
def role_remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Principal name, e.g. user:alice."),
    roles: List[str] = typer.Argument(..., metavar="ROLE...", help="Roles to remove."),
    json_: bool = JsonOpt,
) -> None:
    """Take roles from a principal (recorded in the audit log)."""
    s = state(ctx)
    done(ident.do_role(s, s.output(json_), "remove", name, roles))
