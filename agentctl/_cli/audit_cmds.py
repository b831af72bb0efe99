"""Audit commands: query, export, checkpoint, prove, consistency, key, verify. Reading commands
open the log with ``AuditLog.open_existing``: they never create one or write a schema into it."""

from __future__ import annotations

import json

from ..errors import UsageError
from .common import State, command, make_context, read_file
from .target import Target
from .output import Output


def _open(state: State, out: Output, ctx=None):
    from ..audit.log import AuditLog

    ctx = ctx or make_context(state, out)
    path = ctx.home.path / "audit.db"
    if not path.exists():
        return ctx, None
    return ctx, AuditLog.open_existing(path)


def _when(option: str, text: str | None, now: float) -> float | None:
    from ..durations import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, now)
    except UsageError as e:
        raise UsageError(f"{option}: {e.message}") from None


def query_filters(state: State, out: Output, agent, outcome, since, until, limit):
    """The filters of ``audit`` and ``audit --from``, checked before anything is read: the context and
    the time range."""
    from ..events import OUTCOMES
    from ..names import check_name

    if outcome is not None and outcome not in OUTCOMES:
        raise UsageError(f"bad --outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
    if agent is not None:
        check_name(agent)
    if limit is not None and limit < 1:
        raise UsageError(f"bad --limit {limit}: it must be 1 or more")
    ctx = make_context(state, out)
    now = ctx.now()
    return ctx, _when("--since", since, now), _when("--until", until, now)


@command
def do_audit_query(state: State, out: Output, agent, action, outcome, since, until, limit) -> None:
    ctx, t0, t1 = query_filters(state, out, agent, outcome, since, until, limit)
    ctx, log = _open(state, out, ctx)
    try:
        events = log.query(agent=agent, action=action, outcome=outcome, since=t0, until=t1, limit=limit) if log else []
    finally:
        if log is not None:
            log.close()

    def human() -> None:
        if not events:
            out.note("no audit events match")
            return
        rows = [
            (str(e["seq"]), e["time"][:19] + "Z", e["event"], e["principal"] or "-", e["action"] or "-",
             e["resource"] or "-", e["outcome"], e["reason"] or "-")
            for e in events
        ]
        out.table(("seq", "time", "event", "principal", "action", "resource", "outcome", "reason"), rows)

    out.result({"ok": True, "events": events}, human)


@command
def do_audit_export(state: State, out: Output, since) -> None:
    import json

    t0 = _when("--since", since, make_context(state, out).now())
    ctx, log = _open(state, out)
    if out.json_mode:  # one document, as everywhere; without --json, JSON Lines for a SIEM
        try:
            events = [json.loads(leaf) for leaf in log.export(t0)] if log is not None else []
        finally:
            if log is not None:
                log.close()
        out.result({"ok": True, "events": events})
        return
    if log is None:
        return
    try:
        write = out.stdout.write
        for leaf in log.export(t0):
            write(leaf + "\n")
    finally:
        log.close()


@command
def do_audit_checkpoint(state: State, out: Output, output_file) -> None:
    import base64

    from ..recording import HomeRecorder

    ctx = make_context(state, out)
    if not ctx.home.config.audit:
        raise UsageError("auditing is off in config.toml (audit = false)")
    target = Target.of(output_file)  # before signing: a failed command must leave no checkpoint behind
    to_file = not target.to_stdout

    def deliver(note: str) -> None:  # before the checkpoint commits: a failed write records nothing
        target.write(note)

    rec = HomeRecorder(ctx)
    try:
        name, (size, root, note) = rec.checkpoint(deliver=deliver if to_file else None)
    except BaseException:
        target.undo()  # the write succeeded but the commit did not: leave no file
        raise
    finally:
        rec.close()
    out.note(f"checkpoint of {size} events signed by {name}" + (f"; written to {target} — keep a copy elsewhere" if to_file else ""))
    out.result({"ok": True, "size": size, "root": base64.b64encode(root).decode(), "signer": name, "note": note},
               (lambda: out.stdout.write(note)) if not to_file else None)


@command
def do_audit_prove(state: State, out: Output, seq: int, checkpoint=None) -> None:
    kept = read_file(checkpoint, "checkpoint") if checkpoint is not None else None
    _print_proof(state, out, lambda log: log.prove(seq, kept))


@command
def do_audit_consistency(state: State, out: Output, old: str, new: str) -> None:
    old_text, new_text = read_file(old, "checkpoint"), read_file(new, "checkpoint")
    _print_proof(state, out, lambda log: log.consistency(old_text, new_text))


def _print_proof(state: State, out: Output, make) -> None:
    """Print the proof ``make(log)`` gives from this home's log (which must exist)."""
    ctx, log = _open(state, out)
    if log is None:
        raise UsageError("there is no audit log in this home yet")
    try:
        doc = make(log)
    finally:
        log.close()
    out.result({"ok": True, **doc}, lambda: out.line(json.dumps(doc, indent=2)))


@command
def do_audit_key(state: State, out: Output) -> None:
    from ..recording import audit_key

    vkey = audit_key(make_context(state, out))
    out.result({"ok": True, "verifier_key": vkey, "name": vkey.split("+", 1)[0]}, lambda: out.line(vkey))


@command
def do_audit_verify(state: State, out: Output, checkpoint) -> int:
    from ..recording import verify_home

    external = read_file(checkpoint, "checkpoint") if checkpoint is not None else None
    show, end = out.progress("verified")
    try:
        report = verify_home(make_context(state, out), external, show)
    finally:
        end()
    if not report.ok:
        return _tampered(out, report)
    doc = report.doc()
    extra = f"; extends the kept checkpoint of {report.external['size']} events" if report.external else ""
    p = report.pruned
    pruned = (f" (events 1..{p} pruned: their kept leaf hashes verified, their bodies held elsewhere; "
              f"{p + 1}..{report.size} verified)" if p < report.size else " (all pruned: their kept leaf hashes verified)") if p else ""
    out.result(doc, f"audit log intact: {report.size} events{pruned}, {report.checkpoints} checkpoint(s) verified{extra}")
    return 0


def _tampered(out: Output, report) -> int:
    """The verdict on a log that failed ``audit verify``: one line naming the events, exit 1."""
    first, last = report.first_bad_seq, report.last_bad_seq
    where = "" if first is None else f" (event {first})" if last in (None, first) else f" (events {first}..{last})"
    message = f"audit log tampered{where}: {report.problem}"
    out.stderr.write(f"agentctl: denied: {message}\n")
    out.result({**report.doc(), "error": "tampered", "reason": None, "message": message, "exit_code": 1})
    return 1


# --- retention: archive, prune, verify --archive ------------------------------------------------------


@command
def do_audit_archive(state: State, out: Output, output_file) -> None:
    from ..audit.prune import archive_event, archive_text
    from ..recording import HomeRecorder

    if output_file is None or output_file == "-":
        raise UsageError("audit archive needs -o FILE: the archive is recorded in the log, so it must be a file",
                         hint="agentctl audit archive -o audit-archive.jsonl")
    ctx = make_context(state, out)
    if not ctx.home.config.audit:
        raise UsageError("auditing is off in config.toml (audit = false): there is nothing to archive")
    target = Target.of(output_file)
    rec = HomeRecorder(ctx)
    try:
        log = rec._open()
        rec.checkpoint()  # the archive's events are those a checkpoint covers: cover all of them now
        text, header = archive_text(log)
        target.write(text)
        try:
            log.append([archive_event(header, text, log.meta("host_key"))], ctx.clock)
        except BaseException:
            target.undo()  # an archive not recorded may not be pruned after: leave none behind
            raise
    finally:
        rec.close()
    first, last = header["first"], header["last"]
    doc = {"ok": True, "file": str(target), "origin": header["origin"], "first": first, "last": last, "events": last - first + 1}
    out.result(doc, f"archived events {first}..{last} of {header['origin']} to {target}, under the checkpoint of {last} events; "
                    "keep it elsewhere (agentctl audit verify --archive FILE checks it)")


@command
def do_audit_prune(state: State, out: Output, before, to) -> None:
    from .. import crypto
    from ..audit.codec import parse_time_us
    from ..audit.note import verifier_key
    from ..audit.pg import describe, resolve_url
    from ..audit.prune import archived_through, central_through, prune
    from ..clock import rfc3339
    from ..recording import HomeRecorder, audit_signer

    if before is None:
        raise UsageError("audit prune needs --before WHEN (a time, or a duration ago such as 90d)")
    ctx = make_context(state, out)
    t = _when("--before", before, ctx.now())
    assert t is not None
    if not ctx.home.config.audit:
        raise UsageError("auditing is off in config.toml (audit = false): there is nothing to prune")
    url = resolve_url(to, "--to", ctx.env) if to is not None or ctx.env.get("AGENTCTL_AUDIT_URL") or ctx.env.get("PGSERVICE") else None
    rec = HomeRecorder(ctx)
    try:
        log = rec._open()
        held, basis = archived_through(log), "archive"
        if url is not None:
            name, seed = audit_signer(ctx, log)
            public = crypto.public_key(seed)
            central = central_through(url, log, name, public, verifier_key(name, public))
            if central > held:
                held, basis = central, f"central store {describe(url, ctx.env)}"
        first, last = prune(log, parse_time_us(rfc3339(t, micro=True)) or 0, held, basis, ctx.clock, log.meta("host_key"))
    finally:
        rec.close()
    doc = {"ok": True, "pruned": last - first + 1 if last else 0, "first": first or None, "last": last or None, "held_by": basis if last else None}
    if not last:
        out.result(doc, "nothing to prune: no kept event is older than that")
        return
    out.result(doc, f"pruned events {first}..{last}: their bodies dropped (the {basis} holds them), their leaf hashes kept; "
                    "proofs and checkpoints still verify")


@command
def do_audit_verify_archive(state: State, out: Output, archive: str, checkpoint, other) -> None:
    from ..audit.prune import check_archive
    from ..recording import host_keys

    if checkpoint is not None or other is not None:
        raise UsageError("--archive checks an archive against this home's log: give it without --checkpoint, --from or --state")
    text = _read_archive(archive)
    ctx, log = _open(state, out)
    if log is None:
        raise UsageError("there is no audit log in this home to check the archive against")
    try:
        doc = check_archive(text, host_keys(ctx, log), log)
    finally:
        log.close()
    out.result(doc, f"archive intact: events {doc['first']}..{doc['last']} of {doc['origin']}, under a checkpoint of "
                    f"{doc['checkpoint_size']} events this log still matches")


def _read_archive(path: str) -> str:
    """An archive file, whole (it may be larger than the documents read_file allows)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UsageError(f"cannot read archive {path}: no such file") from None
    except OSError as e:
        raise UsageError(f"cannot read archive {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"cannot read archive {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
