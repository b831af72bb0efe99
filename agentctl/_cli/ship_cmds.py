"""The fleet's audit commands: ``audit ship --init/--to``, ``audit enroll``, ``audit verify --from``
and ``audit --from``. The store's address is never printed with a password (``pg.describe``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .common import State, command, make_context
from .output import Output


@command
def do_audit_ship(state: State, out: Output, init: str | None, to: str | None) -> int | None:
    from ..audit.pg import describe, resolve_url

    if init is not None and to is not None:
        raise UsageError("give --init URL or --to URL, not both")
    ctx = make_context(state, out)
    if init is not None:
        from ..audit.ship import init_store

        url = resolve_url(init, "--init", ctx.env)
        applied = init_store(url)
        where = describe(url, ctx.env)
        msg = f"audit store ready at {where}" + (f" (migrations {', '.join(map(str, applied))} applied)" if applied else " (already up to date)")
        out.result({"ok": True, "store": where, "applied": applied}, msg)
        return 0
    from ..audit.ship import ship

    url = resolve_url(to, "--to", ctx.env)
    show, end = out.progress("shipped")
    try:
        result = ship(ctx, url, progress=show)
    finally:
        end()
    doc = {"ok": True, **result.doc()}
    out.result(doc, f"shipped {result.events} events and {result.checkpoints} checkpoint(s) of {result.origin} to {result.store}; "
                    f"the store holds {result.size} events, checkpointed to {result.checkpoint_size}")
    return 0


@command
def do_audit_enroll(state: State, out: Output, to: str | None, key: str, role: str | None, no_password: bool) -> int | None:
    from ..audit.pg import describe, resolve_url
    from ..audit.ship import enroll

    ctx = make_context(state, out)
    url = resolve_url(to, "--to", ctx.env)
    e = enroll(url, key, role, password=not no_password)
    doc = {"ok": True, "key": e.key, "role": e.role, "created": e.created, "password": e.password, "store": describe(url, ctx.env)}

    def human() -> None:
        made = "made the role" if e.created else "mapped the existing role"
        out.note(f"enrolled {e.key.split('+')[0]}: {made} {e.role} in {describe(url, ctx.env)}")
        if e.password is not None:
            out.note("the role's password follows on stdout, once: put it in the host's ~/.pgpass (PGPASSFILE) or service file")
            out.line(e.password)

    out.result(doc, human)
    return 0


@command
def do_audit_verify_from(state: State, out: Output, from_: str | None, state_dir: str | None, checkpoint: str | None = None) -> int | None:
    from ..audit.fleet import verify_store
    from ..audit.pg import resolve_url

    if checkpoint is not None:
        raise UsageError("--checkpoint is for this home's log; with --from, keep checkpoints with --state DIR")

    ctx = make_context(state, out)
    url = resolve_url(from_, "--from", ctx.env)
    report = verify_store(url, state_dir=Path(state_dir) if state_dir else None,
                          max_lag=ctx.home.config.ship_max_lag, now=ctx.now())
    for r in report.logs:
        if r.lagging and r.ok:
            out.note(f"warning: log {r.origin} ({r.key.split('+')[0]}): no checkpoint reached the store within ship_max_lag"
                     + (f" (last {r.last_received})" if r.last_received else ""))
    for origin in report.gone:
        out.stderr.write(f"agentctl: denied: log {origin} was seen before and is gone from the store\n")
    for r in report.logs:
        if not r.ok:
            at = f" (event {r.seq})" if r.seq else ""
            out.stderr.write(f"agentctl: denied: log {r.origin} ({r.key.split('+')[0]}){at}: {r.problem}\n")
    doc = report.doc()
    if not report.ok:
        bad = [r for r in report.logs if not r.ok]
        message = (f"log {bad[0].origin}: {bad[0].problem}" if bad else f"log {report.gone[0]} is gone from the store") \
            if (bad or report.gone) else "the central store did not verify"
        out.result({**doc, "error": "tampered", "reason": None, "message": message, "exit_code": 1})
        return 1
    total = sum(r.size for r in report.logs)
    out.result(doc, f"audit store intact: {len(report.logs)} log(s), {total} events, "
                    f"{sum(r.checkpoints for r in report.logs)} checkpoint(s) verified")
    return 0


@command
def do_audit_query_from(state: State, out: Output, from_, host, agent, action, outcome, since, until, limit) -> None:
    from ..audit.fleet import query_store
    from ..audit.pg import resolve_url
    from .audit_cmds import query_filters

    ctx, t0, t1 = query_filters(state, out, agent, outcome, since, until, limit)
    url = resolve_url(from_, "--from", ctx.env)
    events = query_store(url, agent=agent, action=action, outcome=outcome, since=t0, until=t1, limit=limit, host=host)

    def human() -> None:
        if not events:
            out.note("no audit events match")
            return
        rows = [(e["host"] or "-", str(e["seq"]), e["time"][:19] + "Z", e["event"], e["principal"] or "-", e["action"] or "-",
                 e["resource"] or "-", e["outcome"], e["reason"] or "-") for e in events]
        out.table(("host", "seq", "time", "event", "principal", "action", "resource", "outcome", "reason"), rows)

    out.result({"ok": True, "events": events}, human)
