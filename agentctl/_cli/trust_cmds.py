"""agentctl trust export | import, and agentctl sync: trust bundles and sources (SPEC "Beyond one machine")."""

from __future__ import annotations

from typing import Optional

import typer

from .common import State, command, make_context, read_file
from .output import Output
from .record import Recorder
from .target import Target

__all__ = ["trust_app", "sync_command", "do_trust_export", "do_trust_import", "do_sync"]

trust_app = typer.Typer(help="Signed trust bundles: the principals of one home, for others to trust.", no_args_is_help=True)
JSON_HELP = "Print exactly one JSON document on stdout; everything else goes to stderr."


def _state(ctx: typer.Context) -> State:
    return ctx.obj if isinstance(ctx.obj, State) else State()


@trust_app.command("export")
def trust_export(
    ctx: typer.Context,
    sign_as: str = typer.Option(..., "--sign-as", metavar="NAME", help="The principal signing the bundle."),
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE", help="Write the bundle to FILE."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export this home's principals as a signed, versioned trust bundle."""
    s = _state(ctx)
    raise typer.Exit(do_trust_export(s, s.output(json_), sign_as, output))


@trust_app.command("import")
def trust_import(
    ctx: typer.Context,
    file: str = typer.Argument(..., metavar="FILE", help="A bundle made by 'trust export'."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Import a trust bundle from the signer of a trust source; show what changed."""
    s = _state(ctx)
    raise typer.Exit(do_trust_import(s, s.output(json_), file))


def sync_command(
    ctx: typer.Context,
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Fetch every source in config.toml. Exit 0 all current, 1 a source refused, 3 one unreachable."""
    s = _state(ctx)
    raise typer.Exit(do_sync(s, s.output(json_)))


@command
def do_trust_export(state: State, out: Output, sign_as: str, output_file: str | None) -> None:
    from ..trust_bundles import export_bundle

    signed_export(state, out, output_file, export_bundle, sign_as, "trust bundle", "bundle", "principals")


def signed_export(state: State, out: Output, output_file: str | None, export, sign_as: str, what: str, key: str,
                  counted: str) -> None:
    """``trust export`` and ``revocations export``: ``export(ctx, sign_as, recorder=, then=)`` signs
    the next version; ``-o FILE`` is written under the home lock once the event is recorded, and a
    failed write puts the version back (recorded as undone), so no version goes unwritten."""
    target = Target.of(output_file)  # checked before the exported version is counted
    ctx = make_context(state, out)

    def write(token: str, *_: object) -> None:
        if not target.to_stdout:
            target.write(token + "\n")

    token, version, count = export(ctx, sign_as, recorder=Recorder(ctx), then=write)
    noun = "entr" + ("y" if count == 1 else "ies") if counted == "entries" else "principal(s)"
    out.note(f"{what} version {version} signed by {sign_as} with {count} {noun}"
             + ("" if target.to_stdout else f"; written to {target}"))
    out.result({"ok": True, key: token, "version": version, counted: count}, token if target.to_stdout else None)


@command
def do_trust_import(state: State, out: Output, source: str) -> None:
    from ..clock import rfc3339
    from ..jws import MAX_LIST_BYTES
    from ..trust_bundles import import_bundle

    ctx = make_context(state, out)
    rec = Recorder(ctx)
    text = read_file(source, "trust bundle", limit=MAX_LIST_BYTES).strip()
    b, changes = import_bundle(ctx, text, recorder=rec)
    if changes.unchanged:
        out.note(f"trust bundle version {b.version} from {b.issuer} is already held; nothing changed")
    else:
        out.note(f"imported trust bundle version {b.version} from {b.issuer}: {_summary(changes.describe())}")
    doc = {"ok": True, "issuer": b.issuer, "version": b.version, "issued": rfc3339(b.issued), "unchanged": changes.unchanged,
           **changes.describe()}
    out.result(doc)


def _summary(changes: dict) -> str:
    parts = [f"{k} {', '.join(v)}" for k, v in changes.items() if v]
    return "; ".join(parts) if parts else "no principal changed"


@command
def do_sync(state: State, out: Output) -> int | None:
    from ..sync import exit_code, sync

    ctx = make_context(state, out)
    rec = Recorder(ctx)
    terminal = _stderr_is_terminal(out)

    def progress(s) -> None:
        if terminal:
            out.note(f"fetching {s.url} …")

    results = sync(ctx, progress=progress, recorder=rec)
    for r in results:
        line = f"{r.status}: {r.source.url} ({r.source.kind}, {r.source.signer})"
        if r.version is not None:
            line += f" version {r.version}"
        if r.detail:
            line += f": {r.detail}"
        out.note(line)
        if r.self_revoked:
            out.note(f"warning: {r.source.signer} revoked itself in the list from {r.source.url}; it signs no list after this one")
    code = exit_code(results)
    out.result({"ok": code == 0, "sources": [r.describe() for r in results], "exit_code": code})
    return code


def _stderr_is_terminal(out: Output) -> bool:
    try:
        return out.stderr.isatty()
    except (AttributeError, ValueError):
        return False
