"""Signed agent actions: an ``agentctl-action+jwt`` in which an agent states that it performs ACTION on
RESOURCE, binding a payload digest and naming (by digest) the grant that authorizes it, which travels
before it in the presentation (:mod:`agentctl.presentation`)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from . import jws
from .encoding import EncodingError, b64u_decode, b64u_encode
from .errors import UsageError, VerificationError
from .frozen import dataclass, field
from .grants import _name, _new_jti, audience_claim, jti_claim, int_claim

__all__ = ["ActionToken", "parse_action", "action_from", "action_claims", "payload_digest", "check_action_name", "check_resource",
           "check_audience", "param_error", "MAX_RESOURCE", "MAX_AUDIENCE"]

MAX_EMBED = 32 * 1024

_ACTION = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
MAX_RESOURCE = 1024
MAX_AUDIENCE = 256
_RESOURCE = re.compile(r"[\x21-\x29\x2b-\x7e]{1,%d}" % MAX_RESOURCE)  # printable ASCII, no space, no '*'
_SHA256 = re.compile(r"[0-9a-f]{64}")


def payload_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- value checks: the one home of the checks of what a caller asks for -----------------------------
# Each raises a UsageError whose message names the parameter and whose ``param`` attribute holds it,
# so the CLI can name its flag (one table, in agentctl._cli) and a library caller its argument.


def param_error(param: str, message: str, hint: str | None = None) -> UsageError:
    e = UsageError(message, hint=hint)
    e.param = param
    return e


def check_action_name(action: object, param: str = "action") -> str:
    """A concrete action: dot-separated segments of ``[a-z0-9_-]+``, no ``*``, no ``:``."""
    if isinstance(action, str) and _ACTION.fullmatch(action):
        return action
    raise param_error(param, f"bad {param} {_shown(action)}: a concrete action like pull_request.create, "
                      "dot-separated segments of [a-z0-9_-]")


def _shown(value: object) -> str:
    """A refused value as an error message shows it: quoted, and cut short when long (one line)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "..."


def check_resource(resource: object, param: str = "resource") -> str:
    """A concrete resource: printable ASCII without spaces or ``*``, 1 to :data:`MAX_RESOURCE` characters
    (what a signed action may carry, so every resource a verifier accepts could have been signed)."""
    if isinstance(resource, str) and _RESOURCE.fullmatch(resource):
        return resource
    raise param_error(param, f"bad {param} {_shown(resource)}: printable ASCII without spaces or '*', at most {MAX_RESOURCE} characters")


def check_audience(audience: object, param: str = "audience") -> str:
    """An audience: printable text without spaces, 1 to :data:`MAX_AUDIENCE` characters."""
    if isinstance(audience, str) and audience and audience.isprintable() and " " not in audience and len(audience) <= MAX_AUDIENCE:
        return audience
    raise param_error(param, f"bad {param}: printable text without spaces, at most {MAX_AUDIENCE} characters")


def _bad(detail: str) -> VerificationError:
    return VerificationError("malformed", detail)


@dataclass(frozen=True)
class ActionToken:
    token: jws.Jws = field(repr=False)
    iss: str
    sub: str
    action: str
    resource: str
    iat: int
    exp: int
    jti: str
    aud: tuple[str, ...] | None
    sha256: str
    data: bytes | None = field(repr=False)
    grant: str | None = field(repr=False)  # the leaf grant's digest
    approval: str | None = field(default=None, repr=False)  # the approval's digest

    @property
    def kid(self) -> str:
        return self.token.kid


def parse_action(token: object) -> ActionToken:
    """Step 1 for an action: a well-formed ``agentctl-action+jwt`` with claims of the right shapes.
    ``token`` is the action alone or a presentation ending in one (only its action is read here).
    Nothing is trusted yet; :meth:`agentctl.verify.Verifier.verify_action` decides."""
    if isinstance(token, str) and "~" in token:
        token = token.strip().rpartition("~")[2]
    return action_from(jws.decode(token, jws.ACTION))


def action_from(t: jws.Jws) -> ActionToken:
    """An action from its decoded token."""
    global _check_reference
    if _check_reference is None:
        from .presentation import check_reference as _check_reference
    c = t.claims
    iss, sub = _name(c.get("iss"), "claim 'iss'"), _name(c.get("sub"), "claim 'sub'")
    action, resource = c.get("action"), c.get("resource")
    if type(action) is not str or action not in _ACTIONS or type(resource) is not str or not _RESOURCE.fullmatch(resource):
        try:
            action = check_action_name(action)
            resource = check_resource(resource)
        except UsageError as e:
            raise _bad(f"claim: {e.message}") from None
        if len(_ACTIONS) >= 4096:
            _ACTIONS.clear()
        _ACTIONS.add(action)
    payload = c.get("payload")
    if not isinstance(payload, dict) or set(payload) - {"sha256", "data"} or not isinstance(payload.get("sha256"), str):
        raise _bad("claim 'payload' must be {'sha256': HEX[, 'data': BASE64URL]}")
    sha = payload["sha256"]
    if not _SHA256.fullmatch(sha):
        raise _bad("claim 'payload.sha256' must be 64 lower-case hex digits")
    data = None
    if "data" in payload:
        try:
            data = b64u_decode(payload["data"]) if isinstance(payload["data"], str) else None
        except EncodingError as e:
            raise _bad(f"claim 'payload.data': {e}") from None
        if data is None:
            raise _bad("claim 'payload.data' must be base64url")
    jti = jti_claim(c)
    grant = _check_reference(c.get("grant"), "the action's 'grant'")
    approval = _check_reference(c.get("approval"), "the action's 'approval'")
    iat, exp = int_claim(c, "iat"), int_claim(c, "exp")
    if exp <= iat:
        raise _bad("claim 'exp' is not after 'iat'")
    act = _new_action()  # every field set, as ActionToken(...) would (a frozen dataclass, built without its __init__)
    act.__dict__.update(token=t, iss=iss, sub=sub, action=action, resource=resource, iat=iat, exp=exp, jti=jti,
                        aud=audience_claim(c) if "aud" in c else None, sha256=sha, data=data, grant=grant, approval=approval)
    return act


def _new_action() -> ActionToken:
    return object.__new__(ActionToken)


_ACTIONS: set = set()  # action names met before (the same few come again and again): checked once
_check_reference: Any = None  # agentctl.presentation's, imported on first use (it imports grants, which this imports)


def action_claims(*, iss: str, sub: str, action: str, resource: str, data: bytes, embed: bool, now: int, ttl: int,
                  audience: str | None, grant: str | None, approval: str | None = None) -> dict:
    """An action's claims; ``grant`` and ``approval`` are the digests of the leaf grant and of the
    approval (:func:`agentctl.presentation.digest`)."""
    payload = {"sha256": payload_digest(data)}
    if embed:
        if len(data) > MAX_EMBED:
            raise UsageError(f"embed carries at most {MAX_EMBED} bytes; this payload is {len(data)}", hint="leave out embed: the digest binds it",
                             param="embed")
        payload["data"] = b64u_encode(data)
    claims: dict = {"iss": iss, "sub": sub, "action": action, "resource": resource}
    if audience:
        claims["aud"] = audience
    claims.update(iat=now, exp=now + ttl, jti=_new_jti(), payload=payload)
    if grant is not None:
        claims["grant"] = grant
    if approval is not None:
        claims["approval"] = approval
    return claims
