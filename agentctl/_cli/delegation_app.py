"""The delegation commands' options: delegate, inspect (bodies in :mod:`.grant_cmds`)."""

from __future__ import annotations

from typing import List, Optional

import typer

from .options import AudienceOpt, JsonOpt, OutputOpt, TtlOpt, done, state

#: registered on the root by app.py, in this order
commands = typer.Typer()

# --- delegation -----------------------------------------------------------------------------


@commands.command()
def delegate(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", metavar="NAME", help="The principal receiving the grant."),
    scope: List[str] = typer.Option(..., "--scope", metavar="SCOPE", help="ACTION[:RESOURCE], e.g. pull_request.create:acme/* (repeatable)."),
    ttl: Optional[str] = TtlOpt("Lifetime: 90s, 30m, 1h, 2d (default 1h, at most max_ttl)."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="NAME", help="The signing principal (default: the only local one)."),
    parent: Optional[str] = typer.Option(None, "--parent", metavar="GRANT", help="Re-delegate this grant (token, file or -); its holder signs."),
    audience: Optional[str] = AudienceOpt("Restrict the grant to one audience."),
    max_depth: Optional[int] = typer.Option(None, "--max-depth", metavar="N", help="Re-delegations still allowed (default 0; under --parent, one less than the parent)."),
    output: Optional[str] = OutputOpt("the grant"),
    json_: bool = JsonOpt,
) -> None:
    """Mint a delegation grant and print it.

    Scopes: RESOURCE is matched as text, never as a path: acme/** also matches acme/../../etc/shadow.
    For path-like resources, normalise the path before asking verify about it, or scope without **.
    """
    from .grant_cmds import do_delegate

    s = state(ctx)
    done(do_delegate(s, s.output(json_), to, scope, ttl, from_, parent, audience, max_depth, output))


@commands.command()
def inspect(
    ctx: typer.Context,
    token: str = typer.Argument(..., metavar="TOKEN|FILE|-", help="The token, a file holding it, or - for stdin."),
    json_: bool = JsonOpt,
) -> None:
    """Decode a token and show every hop; valid only if verify would say so."""
    from .grant_cmds import do_inspect

    s = state(ctx)
    done(do_inspect(s, s.output(json_), token))
