"""The action commands' options: sign, verify, revocations export|import (bodies in :mod:`.action_cmds`)."""

from __future__ import annotations

from typing import List, Optional

import typer

from .options import AudienceOpt, JsonOpt, OutputOpt, TtlOpt, done, state

#: registered on the root by app.py, in this order
commands = typer.Typer()

# --- actions ----------------------------------------------------------------------------------


@commands.command()
def sign(
    ctx: typer.Context,
    as_: str = typer.Option(..., "--as", metavar="NAME", help="The acting principal."),
    action: str = typer.Option(..., "--action", metavar="ACTION", help="What it does, e.g. deploy.staging."),
    resource: str = typer.Option(..., "--resource", metavar="RESOURCE", help="What it acts on, e.g. api/web."),
    grant: Optional[str] = typer.Option(None, "--grant", metavar="GRANT", help="The grant that authorizes it (token, file or -)."),
    approval: Optional[str] = typer.Option(None, "--approval", metavar="FILE", help="An approval of exactly this action (agentctl approval approve)."),
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE", help="Payload to bind by its SHA-256 digest (- for stdin)."),
    embed: bool = typer.Option(False, "--embed", help="Carry the payload in the token."),
    audience: Optional[str] = AudienceOpt("Restrict the action to one audience."),
    ttl: Optional[str] = TtlOpt("Lifetime (default 5m)."),
    output: Optional[str] = OutputOpt("the action token"),
    json_: bool = JsonOpt,
) -> None:
    """Sign an action."""
    from .action_cmds import do_sign

    s = state(ctx)
    done(do_sign(s, s.output(json_), as_, action, resource, grant, data, embed, audience, ttl, output, approval=approval))


@commands.command()
def verify(
    ctx: typer.Context,
    token: Optional[str] = typer.Argument(None, metavar="TOKEN|FILE|-", help="The grant or action token, a file, or - for stdin."),
    action: Optional[str] = typer.Option(None, "--action", metavar="A", help="Require exactly this action."),
    resource: Optional[str] = typer.Option(None, "--resource", metavar="R", help="Require exactly this resource."),
    audience: Optional[str] = AudienceOpt("The audience verifying: the token must name it in aud."),
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE", help="The payload the action must bind."),
    expect: Optional[str] = typer.Option(None, "--expect", metavar="action|grant", help="Refuse a token of the other type (malformed)."),
    revocations: Optional[str] = typer.Option(None, "--revocations", metavar="FILE", help="Also honour this signed revocation list."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME", help="Verify as of this time (RFC 3339, or a duration ago)."),
    leeway: Optional[str] = typer.Option(None, "--leeway", metavar="DURATION", help="Clock skew allowed (default 60s, at most 10m)."),
    once: bool = typer.Option(False, "--once", help="Refuse an action seen before (replayed)."),
    batch: bool = typer.Option(False, "--batch", help="Read one token or JSON request per line on stdin; one JSON verdict per line."),
    policy: Optional[List[str]] = typer.Option(None, "--policy", metavar="FILE", help="Also ask this .rego or .cedar policy (a set of its own; repeatable)."),
    query: Optional[str] = typer.Option(None, "--query", metavar="Q", help="The rule each --policy file is asked (default: the config's, data.agent.authz.allow)."),
    context: Optional[str] = typer.Option(None, "--context", metavar="FILE", help="A JSON object the policies see beside the verified facts."),
    json_: bool = JsonOpt,
) -> None:
    """Verify a grant or an action. Exit 0 only when everything holds."""
    from .action_cmds import do_verify

    s = state(ctx)
    done(do_verify(s, s.output(json_), token, action, resource, audience, data, revocations, at, leeway, once, batch, expect,
                   policies=policy or (), query=query, context=context))


revocations_app = typer.Typer(help="Signed revocation lists that travel to other machines.", no_args_is_help=True)
commands.add_typer(revocations_app, name="revocations")


@revocations_app.command("export")
def revocations_export(
    ctx: typer.Context,
    sign_as: str = typer.Option(..., "--sign-as", metavar="NAME", help="The principal signing the list."),
    output: Optional[str] = OutputOpt("the list"),
    json_: bool = JsonOpt,
) -> None:
    """Export every revocation held here as a signed, versioned list."""
    from .action_cmds import do_revocations_export

    s = state(ctx)
    done(do_revocations_export(s, s.output(json_), sign_as, output))


@revocations_app.command("import")
def revocations_import(
    ctx: typer.Context,
    file: str = typer.Argument(..., metavar="FILE", help="A list made by 'revocations export'."),
    json_: bool = JsonOpt,
) -> None:
    """Import a signed revocation list; an older version than the one held is refused."""
    from .action_cmds import do_revocations_import

    s = state(ctx)
    done(do_revocations_import(s, s.output(json_), file))
