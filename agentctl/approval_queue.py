"""Requests and decisions in a home (SPEC "Approvals"): an agent's home signs a request and queues it;
an approver's home verifies it, shows it, and approves or denies it, once.

Layout: ``HOME/approvals/requests/JTI.jwt`` (the request presentation, pending until decided) and
``HOME/approvals/decisions/HASH.json``, created with O_CREAT|O_EXCL under the home's lock, so that two
approvers racing on one request cannot both decide it: one wins, the other is told who did.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from . import jws
from .approvals import (DEFAULT_APPROVAL_MAX_TTL, DEFAULT_REQUEST_TTL, RequestToken, approval_claims, check_text,
                        parse_request, request_claims)
from .clock import rfc3339
from .context import Context
from .errors import DeniedError, OperationalError, StoreError, UsageError, VerificationError
from .events import Event

__all__ = ["RequestView", "make_request", "view_request", "approve_request", "deny_request", "pending_requests",
           "request_text", "decision_of"]

_JTI = re.compile(r"[A-Za-z0-9_-]{16,128}")


@dataclass(frozen=True)
class RequestView:
    """A request as this home sees it: parsed, and verified or not (with the reason)."""

    text: str
    chain: Any
    request: RequestToken
    verified: bool
    reason: str | None = None
    detail: str | None = None
    checked_at: float = 0.0

    @property
    def grant_expires_at(self) -> int | None:
        return min(h.exp for h in self.chain.hops) if self.chain is not None else None


def _dirs(ctx: Context):
    base = ctx.home.ensure("approvals", "approvals/requests", "approvals/decisions") / "approvals"
    return base / "requests", base / "decisions"


def _decision_name(req: RequestToken) -> str:
    return hashlib.sha256(f"{req.iss}\n{req.jti}".encode("utf-8")).hexdigest() + ".json"


def _record(recorder: Any, event: Event) -> None:
    if recorder is not None:
        recorder.record(event)


def _verifier(ctx: Context):
    from .store import Store
    from .verify import NO_AUDIT, StoreTrust, Verifier

    return Verifier(StoreTrust(Store(ctx.home)), recorder=NO_AUDIT, clock=ctx.clock, leeway=ctx.home.config.leeway)


def make_request(ctx: Context, *, as_: str, action: str, resource: str, audience: str, grant: str | None = None,
                 data: bytes = b"", embed: bool = False, reason: str | None = None, ttl: int | None = None,
                 recorder: Any = None) -> tuple[str, RequestToken]:
    """Sign a request as ``as_`` and queue it in this home. Returns the presentation and the request."""
    from .actions import check_action_name, check_audience, check_resource
    from .identity import signer_for
    from .names import check_name
    from .signing import _preflight

    check_name(as_)
    check_action_name(action)
    check_resource(resource)
    check_audience(audience)
    if reason is not None:
        check_text(reason, "reason")
    ttl = DEFAULT_REQUEST_TTL if ttl is None else ttl
    if ttl > ctx.home.config.max_ttl:
        raise UsageError("ttl is longer than max_ttl in config.toml", param="ttl")
    chain = _preflight(_verifier(ctx), grant, as_, action, resource, audience) if grant is not None else None
    signer = signer_for(ctx, as_)
    now = int(ctx.now())
    sub = as_
    if chain is not None:
        if signer.public != chain.leaf.cnf:
            raise UsageError(f"the key of {as_} here is not the key the grant was given to")
        sub = chain.leaf.sub
        ttl = min(ttl, min(h.exp for h in chain.hops) - now)
    claims = request_claims(iss=as_, sub=sub, action=action, resource=resource, data=data, embed=embed,
                            audience=audience, now=now, ttl=ttl, grant=chain.leaf.digest if chain is not None else None,
                            reason=reason)
    token = jws.encode(jws.REQUEST, claims, signer.seed)
    text = f"{chain.text}~{token}" if chain is not None else token
    _, req = parse_request(text)
    requests, _ = _dirs(ctx)
    from .home import atomic_write

    with ctx.home.lock():
        atomic_write(requests / f"{req.jti}.jwt", (text + "\n").encode("ascii"))
    _record(recorder, Event("approval.request", "ok", principal=as_, on_behalf_of=sub, action=action, resource=resource,
                            jtis=(req.jti,), metadata={"audience": audience, "sha256": req.sha256, "embedded": embed}))
    return text, req


def request_text(ctx: Context, ref: str, read_input) -> str:
    """``REQ|FILE``: a request id in this home's queue, else a file, a token or ``-`` (``read_input``)."""
    if _JTI.fullmatch(ref):
        path = ctx.home.path / "approvals" / "requests" / f"{ref}.jwt"
        if path.is_file():
            try:
                return path.read_text("ascii").strip()
            except (OSError, UnicodeDecodeError) as e:
                raise StoreError(f"cannot read request {path}: {e}") from None
    text = read_input(ref, "request").strip()
    if text.count(".") < 2:
        raise UsageError(f"{ref!r} is neither a pending request here, a file nor a request token",
                         hint="agentctl approval list shows the pending requests")
    return text


def view_request(ctx: Context, text: str, *, at: float | None = None) -> RequestView:
    """Parse ``text`` and verify it as verify steps 1 to 9 would check an action: the agent's signature
    by its key known here, the grant chain, the audience, authority and the embedded payload. A
    request that does not parse raises (``malformed``); one that does not verify is returned with
    ``verified`` False and the reason."""
    from .verify.pipeline import Pipeline
    from .verify.steps import STEPS, Check

    chain, req = parse_request(text)
    v = _verifier(ctx)
    now = ctx.now() if at is None else at
    c = Check(text, now, "action", audience=req.aud[0], real_now=ctx.now())
    c.act, c.chain = req, chain
    try:
        Pipeline("request", [s for s in STEPS if 2 <= s.number <= 9]).run(v, c)
    except VerificationError as e:
        return RequestView(text, chain, req, False, e.reason, e.detail, now)
    return RequestView(text, chain, req, True, checked_at=now)


def decision_of(ctx: Context, req: RequestToken) -> dict | None:
    path = ctx.home.path / "approvals" / "decisions" / _decision_name(req)
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StoreError(f"damaged decision file {path}: {e}", hint="fix or remove it") from None


def _decided(doc: dict, req: RequestToken) -> DeniedError:
    what = "approved" if doc.get("decision") == "approved" else "denied"
    return DeniedError(f"request {req.jti} was already {what} here by {doc.get('by')} at {doc.get('at')}; "
                       "a request is decided once")


def _decide(ctx: Context, req: RequestToken, doc: dict) -> None:
    """Create the decision file exclusively: the first decision wins."""
    _, decisions = _dirs(ctx)
    path = decisions / _decision_name(req)
    with ctx.home.lock():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            raise _decided(decision_of(ctx, req) or {}, req) from None
        except OSError as e:
            raise OperationalError(f"cannot record the decision in {decisions}: {e.strerror or e}") from None
        try:
            os.write(fd, json.dumps(doc, sort_keys=True).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        pending = ctx.home.path / "approvals" / "requests" / f"{req.jti}.jwt"
        try:
            pending.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OperationalError(f"cannot remove {pending}: {e.strerror or e}") from None


def _checked(ctx: Context, view: RequestView, recorder: Any, event: str, by: str) -> None:
    req = view.request
    if not view.verified:
        _record(recorder, Event(event, "deny", principal=by, action=req.action, resource=req.resource, reason=view.reason,
                                jtis=(req.jti,), metadata={"agent": req.iss, "detail": view.detail}))
        raise VerificationError(view.reason or "malformed", f"the request does not verify: {view.detail}")
    done = decision_of(ctx, req)
    if done is not None:
        raise _decided(done, req)


def approve_request(ctx: Context, view: RequestView, *, as_: str, ttl: int | None = None, note: str | None = None,
                    audience: str | None = None, blind: bool = False, data: bytes | None = None,
                    recorder: Any = None) -> tuple[str, Any]:
    """Approve a verified request as ``as_``: the approval token and its parsed form. Refused: a request
    that does not verify (exit 1), one decided before here, a payload the approver cannot see unless
    ``blind``, an approver not on this home's ``approvers``, the agent, the user or anyone in the chain."""
    from .actions import check_audience, payload_digest
    from .approvals import approval_from
    from .identity import signer_for
    from .names import check_name
    from .store import Store

    check_name(as_)
    if note is not None:
        check_text(note, "note")
    req = view.request
    _checked(ctx, view, recorder, "approval.approve", as_)
    visible = req.data is not None or (data is not None and payload_digest(data) == req.sha256) \
        or req.sha256 == payload_digest(b"")
    if data is not None and payload_digest(data) != req.sha256:
        raise UsageError("data is not the payload the request binds (its SHA-256 differs)", param="data")
    if not visible and not blind:
        raise UsageError("the request binds a payload you have not seen", hint="give it as data (same digest), "
                         "or approve without seeing it (blind)", param=("data", "blind"))
    rules = ctx.home.config.approvals
    if rules is not None and rules.approvers:
        p = Store(ctx.home).get(as_)
        if not rules.allows_approver(as_, tuple(p.roles) if p is not None else ()):
            raise UsageError(f"{as_} is not one of this home's approvers ({', '.join(rules.approvers)})")
    named = {req.iss, req.sub, *(view.chain.principals if view.chain is not None else ())}
    if as_ in named:
        raise UsageError(f"{as_} is named in the request (agent, user or chain): four eyes need someone else")
    if audience is not None:
        check_audience(audience)
        if audience not in req.aud:
            raise UsageError(f"audience {audience} is not the request's ({', '.join(req.aud)}): it can only narrow", param="audience")
    max_ttl = rules.max_ttl if rules is not None else DEFAULT_APPROVAL_MAX_TTL
    ttl = max_ttl if ttl is None else min(ttl, max_ttl)
    signer = signer_for(ctx, as_)
    now = int(ctx.now())
    claims = approval_claims(iss=as_, request=req, audience=audience or req.aud[0], now=now, ttl=ttl, note=note)
    token = jws.encode(jws.APPROVAL, claims, signer.seed)
    approval = approval_from(jws.decode(token, jws.APPROVAL))
    _decide(ctx, req, {"decision": "approved", "by": as_, "at": rfc3339(now), "approval": approval.jti,
                       "blind": blind and not visible})
    _record(recorder, Event("approval.approve", "ok", principal=as_, on_behalf_of=req.sub, action=req.action,
                            resource=req.resource, jtis=(approval.jti, req.jti),
                            metadata={"agent": req.iss, "req": approval.req, "exp": approval.exp,
                                      "blind": blind and not visible}))
    return token, approval


def deny_request(ctx: Context, view: RequestView, *, as_: str, reason: str, recorder: Any = None) -> None:
    """Refuse a request in this home (it binds no other home): recorded, and the request is decided."""
    from .names import check_name

    check_name(as_)
    check_text(reason, "reason")
    if not reason.strip():
        raise UsageError("reason is required: say why, for the record", param="reason")
    req = view.request
    done = decision_of(ctx, req)
    if done is not None:
        raise _decided(done, req)
    now = int(ctx.now())
    _decide(ctx, req, {"decision": "denied", "by": as_, "at": rfc3339(now), "reason": reason})
    _record(recorder, Event("approval.deny", "ok", principal=as_, on_behalf_of=req.sub, action=req.action,
                            resource=req.resource, jtis=(req.jti,), metadata={"agent": req.iss, "reason": reason}))


def pending_requests(ctx: Context, *, include_expired: bool = False) -> list[RequestToken]:
    """The requests queued here and not yet decided, oldest first; expired ones only when asked."""
    base = ctx.home.path / "approvals" / "requests"
    out = []
    now = ctx.now()
    try:
        entries = sorted(base.glob("*.jwt"))
    except OSError:
        return []
    for path in entries:
        try:
            _, req = parse_request(path.read_text("ascii"))
        except (OSError, UnicodeDecodeError, VerificationError) as e:
            raise StoreError(f"damaged request file {path}: {getattr(e, 'detail', e)}", hint="remove it") from None
        if not include_expired and req.exp <= now:
            continue
        if decision_of(ctx, req) is not None:
            continue
        out.append(req)
    return sorted(out, key=lambda r: (r.iat, r.jti))
