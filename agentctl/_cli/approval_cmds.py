"""agentctl approval request | list | show | approve | deny (SPEC "Approvals")."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from ..clock import rfc3339
from ..errors import UsageError
from .common import State, command, make_context, read_bytes, read_input
from .options import JsonOpt, OutputOpt, TtlOpt
from .output import Output
from .record import Recorder
from .target import Target

__all__ = ["approval_app", "escape", "do_request", "do_list", "do_show", "do_approve", "do_deny"]

approval_app = typer.Typer(help="A human checkpoint bound to one exact action: request, show, approve, deny.",
                           no_args_is_help=True)
SCREEN_LINES = 40  # a payload is cut at a screenful; the full size is stated


def _state(ctx: typer.Context) -> State:
    return ctx.obj if isinstance(ctx.obj, State) else State()


@approval_app.command("request")
def request(
    ctx: typer.Context,
    as_: str = typer.Option(..., "--as", metavar="AGENT", help="The agent asking (it will sign the action)."),
    action: str = typer.Option(..., "--action", metavar="A", help="The action to be approved, e.g. deploy.production."),
    resource: str = typer.Option(..., "--resource", metavar="R", help="What it acts on."),
    audience: str = typer.Option(..., "--audience", metavar="AUD", help="The verifier that will require the approval."),
    grant: Optional[str] = typer.Option(None, "--grant", metavar="GRANT", help="The grant the action will carry (token, file or -)."),
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE", help="The payload, bound by its SHA-256 digest (- for stdin)."),
    embed: bool = typer.Option(False, "--embed", help="Carry the payload in the request, for the approver to read."),
    reason: Optional[str] = typer.Option(None, "--reason", metavar="TEXT", help="Why, in the agent's words (shown as such)."),
    ttl: Optional[str] = TtlOpt("How long the request stays open (default 1h)."),
    output: Optional[str] = OutputOpt("the request"),
    json_: bool = JsonOpt,
) -> None:
    """Sign a request for approval and queue it here; the request id goes to stderr."""
    s = _state(ctx)
    raise typer.Exit(do_request(s, s.output(json_), as_, action, resource, audience, grant, data, embed, reason, ttl, output))


@approval_app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Also the expired requests."),
    json_: bool = JsonOpt,
) -> None:
    """Pending requests in this home, oldest first."""
    s = _state(ctx)
    raise typer.Exit(do_list(s, s.output(json_), all_))


ReqArg = typer.Argument(..., metavar="REQ|FILE", help="A request id from 'approval list', a request file, or - (stdin).")


@approval_app.command("show")
def show(
    ctx: typer.Context,
    req: str = ReqArg,
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE", help="The payload, when the request does not carry it."),
    json_: bool = JsonOpt,
) -> None:
    """Verify a request, then show exactly what would be approved."""
    s = _state(ctx)
    raise typer.Exit(do_show(s, s.output(json_), req, data))


@approval_app.command("approve")
def approve(
    ctx: typer.Context,
    req: str = ReqArg,
    as_: str = typer.Option(..., "--as", metavar="NAME", help="The approver (signs the approval)."),
    ttl: Optional[str] = TtlOpt("How long the approval holds (default and cap: [approvals] max_ttl, 15m)."),
    note: Optional[str] = typer.Option(None, "--note", metavar="TEXT", help="A note for the record and the policy input."),
    audience: Optional[str] = typer.Option(None, "--audience", metavar="AUD", help="Narrow the approval to this audience."),
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE", help="The payload, when the request does not carry it."),
    blind: bool = typer.Option(False, "--blind", help="Approve a payload you have not seen."),
    output: Optional[str] = OutputOpt("the approval"),
    json_: bool = JsonOpt,
) -> None:
    """Approve a request, after verifying it: writes the approval token."""
    s = _state(ctx)
    raise typer.Exit(do_approve(s, s.output(json_), req, as_, ttl, note, audience, data, blind, output))


@approval_app.command("deny")
def deny(
    ctx: typer.Context,
    req: str = ReqArg,
    as_: str = typer.Option(..., "--as", metavar="NAME", help="Who refuses."),
    reason: str = typer.Option(..., "--reason", metavar="TEXT", help="Why, for the record."),
    json_: bool = JsonOpt,
) -> None:
    """Refuse a request in this home (recorded; it binds no other home)."""
    s = _state(ctx)
    raise typer.Exit(do_deny(s, s.output(json_), req, as_, reason))


# --- bodies -----------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text for a terminal: printable ASCII as is, a backslash doubled, everything else escaped
    (control characters, escape sequences, non-ASCII), so nothing an agent wrote can move the cursor,
    recolour the screen or look like something else."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


def _left(seconds: float) -> str:
    from ..durations import format_duration

    return "expired" if seconds <= 0 else f"{format_duration(seconds)} left"


def payload_lines(data: bytes) -> tuple[list[str], str]:
    """The payload for a person: JSON pretty-printed, text as is, both escaped line by line; binary as
    hex. Returns the lines and the kind."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [data[i:i + 32].hex(" ") for i in range(0, len(data), 32)], "binary"
    try:
        from ..encoding import loads_strict

        text = json.dumps(loads_strict(text), indent=2, ensure_ascii=False)
        kind = "json"
    except Exception:
        kind = "text"
    return [escape(line) for line in text.splitlines()] or [""], kind


def _view(state: State, out: Output, req: str, data: str | None):
    from ..approval_queue import request_text, view_request

    ctx = make_context(state, out)
    text = request_text(ctx, req, read_input)
    payload = read_bytes(data, "--data") if data is not None else None
    return ctx, view_request(ctx, text), payload


def _describe(view, payload: bytes | None, now: float) -> dict:
    from ..actions import payload_digest

    r = view.request
    data = r.data if r.data is not None else payload
    if payload is not None and payload_digest(payload) != r.sha256:
        raise UsageError("--data is not the payload the request binds (its SHA-256 differs)")
    shown = None
    if data is not None:
        lines, kind = payload_lines(data)
        shown = {"size": len(data), "kind": kind, "lines": len(lines), "text": "\n".join(lines[:SCREEN_LINES]),
                 "cut": len(lines) > SCREEN_LINES, "source": "embedded" if r.data is not None else "--data"}
    grant_exp = view.grant_expires_at
    return {
        "id": r.jti, "verified": view.verified, "reason": view.reason, "detail": view.detail,
        "agent": r.iss, "on_behalf_of": r.sub,
        "chain": list(view.chain.principals) if view.chain is not None else [r.iss],
        "action": r.action, "resource": r.resource, "audience": list(r.aud),
        "requested_at": rfc3339(r.iat), "expires_at": rfc3339(r.exp),
        "grant_expires_at": rfc3339(grant_exp) if grant_exp is not None else None,
        "grant_seconds_left": max(0, int(grant_exp - now)) if grant_exp is not None else None,
        "payload": {"sha256": r.sha256, "visible": data is not None or r.sha256 == payload_digest(b""), "shown": shown},
        "agent_reason": r.reason,
    }


def _human(out: Output, doc: dict) -> None:
    e = escape
    if doc["verified"]:
        out.line("verified: the agent's signature and its grant chain hold here")
    else:
        out.line(f"NOT VERIFIED: {doc['reason']}: {e(doc['detail'] or '')}")
        out.line("  do not approve this request")
    out.line(f"request    {doc['id']}")
    out.line(f"agent      {doc['agent']}")
    out.line(f"on behalf  {doc['on_behalf_of']}")
    out.line(f"chain      {' > '.join(doc['chain'])}")
    out.line(f"action     {doc['action']}")
    out.line(f"resource   {e(doc['resource'])}")
    out.line(f"audience   {', '.join(e(a) for a in doc['audience'])}")
    out.line(f"open until {doc['expires_at']}")
    if doc["grant_expires_at"] is not None:
        out.line(f"grant      until {doc['grant_expires_at']} ({_left(doc['grant_seconds_left'])})")
    else:
        out.line("grant      none: the agent acts on its own authority")
    p = doc["payload"]
    out.line(f"payload    sha256 {p['sha256']}")
    shown = p["shown"]
    if shown is None:
        if p["visible"]:
            out.line("           (empty)")
        else:
            out.line("           not shown: the request does not carry it; give it with --data FILE")
    else:
        out.line(f"           {shown['size']} bytes, {shown['kind']} ({shown['source']}){', first ' + str(SCREEN_LINES) + ' of ' + str(shown['lines']) + ' lines' if shown['cut'] else ''}:")
        for line in shown["text"].splitlines():
            out.line(f"    | {line}")
        if shown["cut"]:
            out.line(f"    | ... cut at a screenful; the payload is {shown['size']} bytes in {shown['lines']} lines")
    if doc["agent_reason"]:
        out.line(f"the agent's words (unverified claim): \"{e(doc['agent_reason'])}\"")


@command
def do_request(state: State, out: Output, as_: str, action: str, resource: str, audience: str, grant: str | None,
               data: str | None, embed: bool, reason: str | None, ttl: str | None, output_file: str | None) -> None:
    from ..approval_queue import make_request
    from ..durations import parse_duration

    if grant == "-" and data == "-":
        raise UsageError("--grant and --data cannot both read stdin")
    target = Target.of(output_file)
    ctx = make_context(state, out)
    ttl_s = parse_duration(ttl, what="--ttl") if ttl is not None else None
    grant_text = read_input(grant, "grant").strip() if grant is not None else None
    payload = read_bytes(data, "--data") if data is not None else b""
    text, req = make_request(ctx, as_=as_, action=action, resource=resource, audience=audience, grant=grant_text,
                             data=payload, embed=embed, reason=reason, ttl=ttl_s, recorder=Recorder(ctx))
    if not target.to_stdout:
        target.write(text + "\n")
    out.stderr.write(f"{req.jti}\n")
    out.note(f"{as_} asks to {action} on {resource} for {audience}; open until {rfc3339(req.exp)}"
             + ("" if target.to_stdout else f"; written to {target}"))
    out.result({"ok": True, "id": req.jti, "request": text, "expires_at": rfc3339(req.exp)},
               text if target.to_stdout else None)


@command
def do_list(state: State, out: Output, all_: bool) -> None:
    from ..approval_queue import pending_requests

    ctx = make_context(state, out)
    now = ctx.now()
    reqs = pending_requests(ctx, include_expired=all_)
    rows: list[dict[str, Any]] = [{"id": r.jti, "agent": r.iss, "on_behalf_of": r.sub, "action": r.action, "resource": r.resource,
             "audience": list(r.aud), "requested_at": rfc3339(r.iat), "expires_at": rfc3339(r.exp),
             "expired": r.exp <= now} for r in reqs]

    def human() -> None:
        if not rows:
            out.note("no pending requests")
            return
        out.table(["ID", "AGENT", "ACTION", "RESOURCE", "EXPIRES"],
                  [[d["id"], d["agent"], d["action"], escape(d["resource"]), d["expires_at"] + (" (expired)" if d["expired"] else "")]
                   for d in rows])

    out.result({"ok": True, "requests": rows}, human)


@command
def do_show(state: State, out: Output, req: str, data: str | None) -> int:
    ctx, view, payload = _view(state, out, req, data)
    doc = _describe(view, payload, ctx.now())
    out.result({"ok": True, **doc}, lambda: _human(out, doc))
    return 0 if view.verified else 1


@command
def do_approve(state: State, out: Output, req: str, as_: str, ttl: str | None, note: str | None, audience: str | None,
               data: str | None, blind: bool, output_file: str | None) -> None:
    from ..approval_queue import approve_request
    from ..durations import parse_duration

    target = Target.of(output_file)
    ttl_s = parse_duration(ttl, what="--ttl") if ttl is not None else None
    ctx, view, payload = _view(state, out, req, data)
    token, approval = approve_request(ctx, view, as_=as_, ttl=ttl_s, note=note, audience=audience, blind=blind,
                                      data=payload, recorder=Recorder(ctx))
    if not target.to_stdout:
        target.write(token + "\n")
    r = view.request
    out.note(f"{as_} approved {r.action} on {escape(r.resource)} by {r.iss} (request {r.jti}) until {rfc3339(approval.exp)}"
             + ("" if target.to_stdout else f"; written to {target}"))
    out.result({"ok": True, "approval": token, "jti": approval.jti, "req": approval.req, "expires_at": rfc3339(approval.exp)},
               token if target.to_stdout else None)


@command
def do_deny(state: State, out: Output, req: str, as_: str, reason: str) -> None:
    from ..approval_queue import deny_request

    ctx, view, _ = _view(state, out, req, None)
    deny_request(ctx, view, as_=as_, reason=reason, recorder=Recorder(ctx))
    r = view.request
    out.note(f"{as_} denied request {r.jti} ({r.action} on {escape(r.resource)} by {r.iss}) in this home")
    out.result({"ok": True, "id": r.jti, "denied_by": as_})
