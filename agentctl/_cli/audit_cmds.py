"""Audit commands: query, export, checkpoint, prove, verify."""

from __future__ import annotations

import json

from ..errors import UsageError
from .common import State, check_output, guarded, make_context, read_file, write_output
from .output import Output


def _open(state: State, out: Output):
    from ..audit import AuditLog

    ctx = make_context(state, out)
    if not (ctx.home.path / "audit.db").exists():
        return ctx, None
    return ctx, AuditLog.open(ctx.home)


def _when(option: str, text: str | None, now: float) -> float | None:
    from ..durations import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, now)
    except UsageError as e:
        raise UsageError(f"{option}: {e.message}") from None


def do_audit_query(state: State, out: Output, agent, action, outcome, since, until, limit) -> int:
    def body() -> None:
        from ..audit import OUTCOMES
        from ..names import check_name

        if outcome is not None and outcome not in OUTCOMES:
            raise UsageError(f"bad --outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
        if agent is not None:
            check_name(agent)
        if limit is not None and limit < 1:
            raise UsageError(f"bad --limit {limit}: it must be 1 or more")
        ctx = make_context(state, out)
        now = ctx.now()
        t0, t1 = _when("--since", since, now), _when("--until", until, now)
        ctx, log = _open(state, out)
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

    return guarded(out, body)


def do_audit_export(state: State, out: Output, since) -> int:
    def body() -> None:
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

    return guarded(out, body)


def do_audit_checkpoint(state: State, out: Output, output_file) -> int:
    def body() -> None:
        import base64

        from .record import Recorder

        ctx = make_context(state, out)
        if not ctx.home.config.audit:
            raise UsageError("auditing is off in config.toml (audit = false)")
        if output_file is not None:  # check before signing: a failed command must leave no checkpoint behind
            check_output(output_file)
        rec = Recorder(ctx)
        try:
            name, (size, root, note) = rec.checkpoint()
        finally:
            rec.close()
        if output_file is not None:
            write_output(output_file, note)
        out.note(f"checkpoint of {size} events signed by {name}" + (f"; written to {output_file} — keep a copy elsewhere" if output_file else ""))
        out.result({"ok": True, "size": size, "root": base64.b64encode(root).decode(), "signer": name, "note": note},
                   (lambda: out.stdout.write(note)) if output_file is None else None)

    return guarded(out, body)


def do_audit_prove(state: State, out: Output, seq: int) -> int:
    def body() -> None:
        ctx, log = _open(state, out)
        if log is None:
            raise UsageError("there is no audit log in this home yet")
        try:
            doc = log.prove(seq)
        finally:
            log.close()
        out.result({"ok": True, **doc}, lambda: out.line(json.dumps(doc, indent=2)))

    return guarded(out, body)


def do_audit_verify(state: State, out: Output, checkpoint) -> int:
    def body() -> int:
        from .record import host_keys

        external = read_file(checkpoint, "checkpoint") if checkpoint is not None else None
        ctx, log = _open(state, out)
        if log is None:
            if external is not None:
                from ..audit import VerifyReport, parse_kept_checkpoint

                size, _, origin, _ = parse_kept_checkpoint(external)  # a usage error if it is not a checkpoint
                if size:
                    return _tampered(out, VerifyReport(False, 0, 0, f"the log is gone: the kept checkpoint covers {size} events, "
                                                       "this home has no audit log", 1, {"size": size, "origin": origin}, size))
            out.result({"ok": True, "size": 0, "checkpoints_checked": 0, "problem": None, "first_bad_seq": None, "last_bad_seq": None,
                        "external_checkpoint": None}, "audit log: empty")
            return 0
        try:
            report = log.verify(host_keys(ctx, log), external)
        finally:
            log.close()
        if not report.ok:
            return _tampered(out, report)
        doc = report.doc()
        extra = f"; extends the kept checkpoint of {report.external['size']} events" if report.external else ""
        out.result(doc, f"audit log intact: {report.size} events, {report.checkpoints} checkpoint(s) verified{extra}")
        return 0

    return guarded(out, body)


def _tampered(out: Output, report) -> int:
    """The verdict on a log that failed ``audit verify``: one line naming the events, exit 1."""
    first, last = report.first_bad_seq, report.last_bad_seq
    where = "" if first is None else f" (event {first})" if last in (None, first) else f" (events {first}..{last})"
    out.stderr.write(f"agentctl: denied: audit log tampered{where}: {report.problem}\n")
    out.result(report.doc())
    return 1
