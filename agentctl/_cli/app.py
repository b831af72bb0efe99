"""The Typer application: the root only registers command groups and the global options."""

from __future__ import annotations

from typing import List, Optional

import typer

from .. import __version__
from .common import State
from . import identity_cmds as ident
from .options import JSON_HELP, AudienceOpt, JsonOpt, NameArg, OutputOpt, TtlOpt

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


def state(ctx: typer.Context) -> State:
    return ctx.obj if isinstance(ctx.obj, State) else State()


def done(code: int) -> None:
    raise typer.Exit(code)


# --- identity ---------------------------------------------------------------------------------


@app.command()
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


@app.command("list")
def list_(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """List the principals in the home."""
    s = state(ctx)
    done(ident.do_list(s, s.output(json_)))


@app.command()
def show(ctx: typer.Context, name: str = NameArg, json_: bool = JsonOpt) -> None:
    """Show one principal: key history, roles, attributes, status."""
    s = state(ctx)
    done(ident.do_show(s, s.output(json_), name))


@app.command()
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


@app.command("import")
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


@app.command()
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


@app.command()
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
app.add_typer(role_app, name="role")


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


# --- delegation -----------------------------------------------------------------------------


@app.command()
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


@app.command()
def inspect(
    ctx: typer.Context,
    token: str = typer.Argument(..., metavar="TOKEN|FILE|-", help="The token, a file holding it, or - for stdin."),
    json_: bool = JsonOpt,
) -> None:
    """Decode a token and show every hop; valid only if verify would say so."""
    from .grant_cmds import do_inspect

    s = state(ctx)
    done(do_inspect(s, s.output(json_), token))


# --- actions ----------------------------------------------------------------------------------


@app.command()
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


@app.command()
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
app.add_typer(revocations_app, name="revocations")


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


# --- audit ------------------------------------------------------------------------------------

audit_app = typer.Typer(help="The tamper-evident audit log: query, export, checkpoint, prove, consistency, key, verify, ship, enroll.", invoke_without_command=True)
app.add_typer(audit_app, name="audit")


@audit_app.callback()
def audit(
    ctx: typer.Context,
    agent: Optional[str] = typer.Option(None, "--agent", metavar="NAME", help="Only events of this principal."),
    action: Optional[str] = typer.Option(None, "--action", metavar="A", help="Only events about this action."),
    outcome: Optional[str] = typer.Option(None, "--outcome", metavar="allow|deny|ok|error", help="Only events with this outcome."),
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN", help="Since a time (RFC 3339) or a duration ago (1h)."),
    until: Optional[str] = typer.Option(None, "--until", metavar="WHEN", help="Until a time (RFC 3339) or a duration ago."),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help="At most N events."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="URL", help="Query the central store (PostgreSQL) instead of this home."),
    host: Optional[str] = typer.Option(None, "--host", metavar="H", help="With --from: only events recorded on host H."),
    json_: bool = JsonOpt,
) -> None:
    """Show audit events, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    s = state(ctx)
    if from_ is not None or host is not None:
        from .ship_cmds import do_audit_query_from

        done(do_audit_query_from(s, s.output(json_), from_, host, agent, action, outcome, since, until, limit))
    from .audit_cmds import do_audit_query

    done(do_audit_query(s, s.output(json_), agent, action, outcome, since, until, limit))


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="FILE", help="Also prove the log extends this older checkpoint."),
    from_: Optional[str] = typer.Option(None, "--from", metavar="URL", help="Verify every log in the central store (PostgreSQL) instead."),
    state_dir: Optional[str] = typer.Option(None, "--state", metavar="DIR", help="With --from: keep the newest checkpoint seen per log here, and compare."),
    json_: bool = JsonOpt,
) -> None:
    """Recompute the whole tree and check every checkpoint; exit 1 on tampering."""
    s = state(ctx)
    if from_ is not None or state_dir is not None:
        from .ship_cmds import do_audit_verify_from

        done(do_audit_verify_from(s, s.output(json_), from_, state_dir, checkpoint))
    from .audit_cmds import do_audit_verify

    done(do_audit_verify(s, s.output(json_), checkpoint))


@audit_app.command("ship")
def audit_ship(
    ctx: typer.Context,
    to: Optional[str] = typer.Option(None, "--to", metavar="URL", help="The central store (default: $AGENTCTL_AUDIT_URL, else $PGSERVICE)."),
    init: Optional[str] = typer.Option(None, "--init", metavar="URL", help="Create the store's schema instead (run by its owner)."),
    json_: bool = JsonOpt,
) -> None:
    """Ship this home's audit log, under signed checkpoints, to the central store."""
    from .ship_cmds import do_audit_ship

    s = state(ctx)
    done(do_audit_ship(s, s.output(json_), init, to))


@audit_app.command("enroll")
def audit_enroll(
    ctx: typer.Context,
    key: str = typer.Argument(..., metavar="KEY", help="The host's audit key, as 'agentctl audit key' prints it."),
    to: Optional[str] = typer.Option(None, "--to", metavar="URL", help="The central store (default: $AGENTCTL_AUDIT_URL, else $PGSERVICE)."),
    role: Optional[str] = typer.Option(None, "--db-role", metavar="ROLE", help="The host's database role (default: agentctl_host_NAME_KEYID)."),
    no_password: bool = typer.Option(False, "--no-password", help="Make the role without a password (certificate or peer authentication)."),
    json_: bool = JsonOpt,
) -> None:
    """Enroll a host's audit key in the central store, with a database role of its own."""
    from .ship_cmds import do_audit_enroll

    s = state(ctx)
    done(do_audit_enroll(s, s.output(json_), to, key, role, no_password))


@audit_app.command("checkpoint")
def audit_checkpoint(
    ctx: typer.Context,
    output: Optional[str] = OutputOpt("the signed checkpoint"),
    json_: bool = JsonOpt,
) -> None:
    """Sign the log's current size and root with the host's audit key."""
    from .audit_cmds import do_audit_checkpoint

    s = state(ctx)
    done(do_audit_checkpoint(s, s.output(json_), output))


@audit_app.command("prove")
def audit_prove(
    ctx: typer.Context,
    seq: int = typer.Argument(..., metavar="SEQ", help="The event's sequence number."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="FILE", help="Prove it in this checkpoint (default: the latest stored)."),
    json_: bool = JsonOpt,
) -> None:
    """Print an inclusion proof of one event in a checkpoint (RFC 6962)."""
    from .audit_cmds import do_audit_prove

    s = state(ctx)
    done(do_audit_prove(s, s.output(json_), seq, checkpoint))


@audit_app.command("consistency")
def audit_consistency(
    ctx: typer.Context,
    old: str = typer.Argument(..., metavar="OLD", help="The older checkpoint file."),
    new: str = typer.Argument(..., metavar="NEW", help="The newer checkpoint file."),
    json_: bool = JsonOpt,
) -> None:
    """Print a consistency proof that checkpoint NEW extends checkpoint OLD (RFC 6962)."""
    from .audit_cmds import do_audit_consistency

    s = state(ctx)
    done(do_audit_consistency(s, s.output(json_), old, new))


@audit_app.command("key")
def audit_key(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Print the host's audit key as a C2SP note verifier key (name+keyid+base64)."""
    from .audit_cmds import do_audit_key

    s = state(ctx)
    done(do_audit_key(s, s.output(json_)))


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN", help="Since a time (RFC 3339) or a duration ago."),
    json_: bool = typer.Option(False, "--json", help="One JSON document with every event instead of JSON Lines."),
) -> None:
    """Print events as JSON Lines, oldest first, for a SIEM."""
    from .audit_cmds import do_audit_export

    s = state(ctx)
    done(do_audit_export(s, s.output(json_), since))


# --- other ------------------------------------------------------------------------------------


@app.command()
def demo(ctx: typer.Context, json_: bool = JsonOpt) -> None:
    """Walk through the whole story in a throwaway home."""
    from .demo import do_demo

    s = state(ctx)
    done(do_demo(s, s.output(json_)))


@app.command()
def completion(
    ctx: typer.Context,
    shell: str = typer.Argument(..., metavar="bash|zsh|fish", help="The shell to print the completion script for."),
    json_: bool = JsonOpt,
) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from .entry import do_completion

    done(do_completion(shell, state(ctx).json_mode or json_))


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
