"""Approvals: a human's signed "yes" to one exact action (SPEC, "Approvals").

An agent signs a **request** (``agentctl-request+jwt``) binding itself, the action, the resource, the
payload digest, the audience and its grant; it travels as ``grant~…~request``. An approver who has
seen it signs an **approval** (``agentctl-approval+jwt``) copying that binding, naming the request by
its digest (``req``); the agent puts it into its action's presentation (``sign --approval``) and the
verifier checks it in step 10 (:mod:`agentctl.verify.approval_step`).

:class:`ApprovalRules` is what a verifier requires (``[approvals]`` of config.toml, or given in code).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from . import jws
from .actions import check_action_name, check_audience, check_resource, payload_digest
from .encoding import EncodingError, b64u_decode, b64u_encode
from .errors import UsageError, VerificationError
from .grants import audience_claim, int_claim, jti_claim
from .names import is_name

__all__ = ["ApprovalRules", "request_with", "approve_with", "RequestToken", "ApprovalToken", "request_from", "approval_from", "request_claims",
           "approval_claims", "parse_request", "DEFAULT_REQUEST_TTL", "DEFAULT_APPROVAL_MAX_TTL", "MAX_TEXT",
           "check_approver_entry", "check_text"]

DEFAULT_REQUEST_TTL = 3600
DEFAULT_APPROVAL_MAX_TTL = 900
MAX_TEXT = 1000  # a reason or a note, in characters
MAX_EMBED = 32 * 1024
_ROLE_PREFIX = "role:"


def _bad(detail: str) -> VerificationError:
    return VerificationError("malformed", detail)


def check_text(text: str, what: str) -> str:
    """A reason or a note: at most :data:`MAX_TEXT` characters (shown escaped, never interpreted)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise UsageError(f"{what} is at most {MAX_TEXT} characters", param=what)
    return text


def check_approver_entry(entry: str) -> str:
    """An ``approvers`` entry: a principal name, or ``role:NAME``."""
    from .models import check_role

    if isinstance(entry, str) and entry.startswith(_ROLE_PREFIX):
        check_role(entry[len(_ROLE_PREFIX):])
        return entry
    if isinstance(entry, str) and is_name(entry):
        return entry
    raise UsageError(f"bad approver {entry!r}: a principal name (user:carol) or role:NAME")


@dataclass(frozen=True)
class ApprovalRules:
    """What a verifier requires of approvals: its ``audience``, the scopes that ``require`` one, who
    may approve (``approvers``: principal names or ``role:NAME``; empty: any principal this verifier
    knows), the longest approval it accepts (``max_ttl`` seconds), whether four eyes hold
    (``four_eyes``) and which attribute names one person (``same_person``)."""

    audience: str
    require: tuple = ()  # agentctl.scopes.Scope
    approvers: tuple[str, ...] = ()
    max_ttl: int = DEFAULT_APPROVAL_MAX_TTL
    four_eyes: bool = True
    same_person: str | None = None

    def __post_init__(self) -> None:
        from .scopes import parse_scopes

        check_audience(self.audience, "audience")
        if self.require and isinstance(self.require[0], str):
            object.__setattr__(self, "require", tuple(parse_scopes(list(self.require))))
        for a in self.approvers:
            check_approver_entry(a)
        if isinstance(self.max_ttl, bool) or not isinstance(self.max_ttl, int) or self.max_ttl <= 0:
            raise UsageError("max_ttl of approvals must be a positive number of seconds")

    def requires(self, action: str, resource: str) -> object | None:
        """The ``require`` scope that covers ``action`` on ``resource``, or None."""
        from .scopes import allowed

        return allowed(self.require, action, resource) if self.require else None

    def allows_approver(self, name: str, roles: tuple[str, ...]) -> bool:
        if not self.approvers:
            return True
        return name in self.approvers or any(f"{_ROLE_PREFIX}{r}" in self.approvers for r in roles)


def _binding(c: dict, what: str) -> tuple[str, str, str, str | None]:
    """The action, resource, payload digest (and embedded data) a request or approval binds."""
    try:
        action = check_action_name(c.get("action"))
        resource = check_resource(c.get("resource"))
    except UsageError as e:
        raise _bad(f"{what} claim: {e.message}") from None
    payload = c.get("payload")
    if not isinstance(payload, dict) or set(payload) - {"sha256", "data"} or not isinstance(payload.get("sha256"), str):
        raise _bad(f"the {what}'s claim 'payload' must be {{'sha256': HEX[, 'data': BASE64URL]}}")
    sha = payload["sha256"]
    if len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha):
        raise _bad(f"the {what}'s claim 'payload.sha256' must be 64 lower-case hex digits")
    return action, resource, sha, payload.get("data")


def _text_claim(c: dict, name: str, what: str) -> str | None:
    value = c.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _bad(f"the {what}'s claim {name!r} must be text of at most {MAX_TEXT} characters")
    return value


@dataclass(frozen=True)
class RequestToken:
    """An agent's signed request for approval. Shaped like an action (``iss``, ``sub``, ``action``,
    ``resource``, ``payload``, ``grant``, ``aud``, ``iat``, ``exp``, ``jti``), so verify steps 2 to 9
    check it as they check an action; plus the agent's ``reason``."""

    token: jws.Jws = field(repr=False)
    iss: str
    sub: str
    action: str
    resource: str
    iat: int
    exp: int
    jti: str
    aud: tuple[str, ...]
    sha256: str
    data: bytes | None = field(repr=False)
    grant: str | None = field(repr=False)
    reason: str | None = None

    @property
    def kid(self) -> str:
        return self.token.kid

    @property
    def digest(self) -> str:
        from .presentation import digest

        return digest(self.token.token)


def request_from(t: jws.Jws) -> RequestToken:
    from .presentation import check_reference

    c = t.claims
    for name in ("iss", "sub"):
        if not is_name(c.get(name)):
            raise _bad(f"the request's claim {name!r} is not a valid principal name")
    action, resource, sha, data_text = _binding(c, "request")
    data = None
    if data_text is not None:
        try:
            data = b64u_decode(data_text) if isinstance(data_text, str) else None
        except EncodingError:
            data = None
        if data is None:
            raise _bad("the request's claim 'payload.data' must be base64url")
    aud = audience_claim(c)
    if aud is None:
        raise _bad("a request names the audience it is for ('aud')")
    iat, exp = int_claim(c, "iat"), int_claim(c, "exp")
    if exp <= iat:
        raise _bad("the request's 'exp' is not after its 'iat'")
    return RequestToken(t, c["iss"], c["sub"], action, resource, iat, exp, jti_claim(c), aud, sha, data,
                        check_reference(c.get("grant"), "the request's 'grant'"), _text_claim(c, "reason", "request"))


@dataclass(frozen=True)
class ApprovalToken:
    """An approver's signed approval of one request: the binding it copies, its audience and window."""

    token: jws.Jws = field(repr=False)
    iss: str
    req: str
    agent: str
    action: str
    resource: str
    sha256: str
    grant: str | None
    aud: tuple[str, ...]
    iat: int
    nbf: int
    exp: int
    jti: str
    note: str | None = None

    @property
    def kid(self) -> str:
        return self.token.kid

    @property
    def text(self) -> str:
        return self.token.token


def approval_from(t: jws.Jws) -> ApprovalToken:
    """Step 1 for an approval: the claims of the right shapes (nothing trusted yet)."""
    from .presentation import check_reference

    c = t.claims
    for name in ("iss", "agent"):
        if not is_name(c.get(name)):
            raise _bad(f"the approval's claim {name!r} is not a valid principal name")
    action, resource, sha, data = _binding(c, "approval")
    if data is not None:
        raise _bad("an approval binds the payload by its digest only")
    req = check_reference(c.get("req"), "the approval's 'req'")
    if req is None:
        raise _bad("an approval names the request it approves ('req')")
    aud = audience_claim(c)
    if aud is None:
        raise _bad("an approval names the audience it is for ('aud')")
    iat, exp = int_claim(c, "iat"), int_claim(c, "exp")
    nbf = int_claim(c, "nbf") if "nbf" in c else iat
    if exp <= iat:
        raise _bad("the approval's 'exp' is not after its 'iat'")
    return ApprovalToken(t, c["iss"], req, c["agent"], action, resource, sha,
                         check_reference(c.get("grant"), "the approval's 'grant'"), aud, iat, nbf, exp, jti_claim(c),
                         _text_claim(c, "note", "approval"))


def request_claims(*, iss: str, sub: str, action: str, resource: str, data: bytes, embed: bool, audience: str, now: int,
                   ttl: int, grant: str | None, reason: str | None) -> dict:
    payload: dict = {"sha256": payload_digest(data)}
    if embed:
        if len(data) > MAX_EMBED:
            raise UsageError(f"embed carries at most {MAX_EMBED} bytes; this payload is {len(data)}",
                             hint="leave out embed and give the approver the payload file to show beside the request",
                             param="embed")
        payload["data"] = b64u_encode(data)
    claims: dict = {"iss": iss, "sub": sub, "action": action, "resource": resource, "aud": audience, "iat": now,
                    "exp": now + ttl, "jti": secrets.token_urlsafe(16), "payload": payload}
    if grant is not None:
        claims["grant"] = grant
    if reason:
        claims["reason"] = check_text(reason, "--reason")
    return claims


def approval_claims(*, iss: str, request: RequestToken, audience: str, now: int, ttl: int, note: str | None) -> dict:
    claims: dict = {"iss": iss, "req": request.digest, "agent": request.iss, "action": request.action,
                    "resource": request.resource, "payload": {"sha256": request.sha256}, "aud": audience,
                    "iat": now, "exp": now + ttl, "jti": secrets.token_urlsafe(16)}
    if request.grant is not None:
        claims["grant"] = request.grant
    if note:
        claims["note"] = check_text(note, "--note")
    return claims


def parse_request(text: str):
    """A request presentation (``grant~…~request``): (chain or None, RequestToken). Each token parsed
    once; the request names the last grant by digest."""
    from .presentation import _misplaced, digest, parse_grants, split

    parts = split(text)
    t = jws.decode(parts[-1], jws.REQUEST)
    req = request_from(t)
    rest = parts[:-1]
    if req.grant is None:
        if rest:
            raise _bad("the request names no grant, so nothing references the tokens before it")
        return None, req
    if not rest or digest(rest[-1]) != req.grant:
        raise _misplaced("the request's 'grant'", req.grant, parts)
    chain = parse_grants(rest)
    return chain, req


def request_with(signer, *, action: str, resource: str, audience: str, grant: str | None = None, data: bytes = b"",
                 embed: bool = False, reason: str | None = None, ttl: int = DEFAULT_REQUEST_TTL, clock=None) -> str:
    """Sign a request for approval with a key held in memory (no home): the presentation
    ``grant~…~request``. ``grant`` is the grant presentation the action will carry, if any."""
    from .clock import system_clock
    from .grants import parse_chain

    check_action_name(action)
    check_resource(resource)
    check_audience(audience)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise UsageError("ttl must be a positive number of seconds")
    now = int((clock or system_clock)())
    chain = parse_chain(grant.strip()) if grant is not None else None
    sub = chain.leaf.sub if chain is not None else signer.name
    claims = request_claims(iss=signer.name, sub=sub, action=action, resource=resource, data=data, embed=embed,
                            audience=audience, now=now, ttl=ttl, grant=chain.leaf.digest if chain is not None else None,
                            reason=reason)
    token = jws.encode(jws.REQUEST, claims, signer.seed)
    return f"{chain.text}~{token}" if chain is not None else token


def approve_with(signer, request: str, *, audience: str | None = None, ttl: int = DEFAULT_APPROVAL_MAX_TTL,
                 note: str | None = None, clock=None) -> str:
    """Sign an approval of ``request`` (a request presentation) with a key held in memory. It copies
    the request's binding; it does not judge the request: verify it first, and show a person what it
    binds (``agentctl approval show``)."""
    from .clock import system_clock

    _, req = parse_request(request.strip())
    if audience is not None and audience not in req.aud:
        raise UsageError(f"audience {audience} is not the request's ({', '.join(req.aud)}): it can only narrow")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise UsageError("ttl must be a positive number of seconds")
    claims = approval_claims(iss=signer.name, request=req, audience=audience or req.aud[0],
                             now=int((clock or system_clock)()), ttl=ttl, note=note)
    return jws.encode(jws.APPROVAL, claims, signer.seed)
