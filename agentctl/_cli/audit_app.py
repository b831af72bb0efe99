"""The audit commands' options: audit (query), verify, ship, enroll, checkpoint, prove, consistency, key,
export, archive, prune (bodies in :mod:`.audit_cmds` and :mod:`.ship_cmds`)."""

from __future__ import annotations

from typing import Optional

import typer

from .options import JsonOpt, OutputOpt, done, state

#: registered on the root by app.py, in this order
commands = typer.Typer()

# --- audit ------------------------------------------------------------------------------------

audit_app = typer.Typer(help="The tamper-evident audit log: query, export, checkpoint, prove, consistency, key, verify, ship, enroll, archive, prune.", invoke_without_command=True)
commands.add_typer(audit_app, name="audit")


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
    archive: Optional[str] = typer.Option(None, "--archive", metavar="FILE", help="Check an archive (audit archive -o) against this log instead."),
    json_: bool = JsonOpt,
) -> None:
    """Recompute the whole tree and check every checkpoint; exit 1 on tampering."""
    s = state(ctx)
    if archive is not None:
        from .audit_cmds import do_audit_verify_archive

        done(do_audit_verify_archive(s, s.output(json_), archive, checkpoint, from_ or state_dir))
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


@audit_app.command("archive")
def audit_archive(
    ctx: typer.Context,
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE", help="Write the archive here (required)."),
    json_: bool = JsonOpt,
) -> None:
    """Write the kept events under a new checkpoint to an archive that verifies offline."""
    from .audit_cmds import do_audit_archive

    s = state(ctx)
    done(do_audit_archive(s, s.output(json_), output))


@audit_app.command("prune")
def audit_prune(
    ctx: typer.Context,
    before: Optional[str] = typer.Option(None, "--before", metavar="WHEN", help="Drop the bodies of events before a time (RFC 3339) or a duration ago (90d)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="URL", help="Also count what this central store holds (default: $AGENTCTL_AUDIT_URL, else $PGSERVICE, if set)."),
    json_: bool = JsonOpt,
) -> None:
    """Drop the bodies of old events an archive or the central store already holds; proofs still verify."""
    from .audit_cmds import do_audit_prune

    s = state(ctx)
    done(do_audit_prune(s, s.output(json_), before, to))
