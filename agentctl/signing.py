"""Signing actions: an agent states what it does, on whose behalf, under which grant.

:func:`sign_action` signs with a principal of a home; :func:`sign_action_with` signs with a key held in
memory (:func:`signer_from_seed`, :func:`signer_from_secret`), with no home at all. Given a recorder,
both record the decision (``sign`` ok or deny) themselves.
"""

from __future__ import annotations

from typing import Any, Callable

from . import jws
from .actions import action_claims, check_action_name, check_audience, check_resource
from .clock import Clock, rfc3339, system_clock
from .context import Context
from .errors import UsageError, VerificationError
from .events import Event
from .identity import Signer, signer_for
from .names import check_name

__all__ = ["sign_action", "sign_action_with", "signer_from_seed", "signer_from_secret", "DEFAULT_ACTION_TTL"]

DEFAULT_ACTION_TTL = 300


def signer_from_seed(name: str, seed: bytes) -> Signer:
    """A key held in memory: ``name``'s 32-byte Ed25519 seed."""
    from . import crypto

    check_name(name)
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
        raise UsageError("a seed is 32 bytes")
    crypto.public_key(bytes(seed))
    return Signer(name, bytes(seed), "memory")


def signer_from_secret(text: str) -> Signer:
    """A key held in memory from an exported secret (``AGENTCTL-SECRET-KEY-1…``)."""
    from .secret import decode_secret

    secret = decode_secret(text)
    return Signer(secret.name, secret.seed, "memory")


def sign_action(
    ctx: Context,
    *,
    as_: str,
    action: str,
    resource: str,
    grant: str | None = None,
    data: bytes = b"",
    embed: bool = False,
    audience: str | None = None,
    ttl: int | None = None,
    recorder: Any = None,
    approval: str | None = None,
) -> str:
    """Sign an action as ``as_`` of ``ctx``'s home. With a grant, refuse up front what the grant does
    not allow. ``grant`` is a grant presentation; the result is that presentation extended by the action
    (or the action alone). Given a ``recorder``, record the outcome (a refusal of the grant as a deny)."""
    from .store import Store
    from .verify import NO_AUDIT, StoreTrust, Verifier

    check_name(as_)
    ttl = DEFAULT_ACTION_TTL if ttl is None else ttl
    if ttl > ctx.home.config.max_ttl:
        raise UsageError("ttl is longer than max_ttl in config.toml", param="ttl")
    verifier = Verifier(StoreTrust(Store(ctx.home)), recorder=NO_AUDIT, clock=ctx.clock, leeway=ctx.home.config.leeway)
    # the secret is read only once the grant allows the action: a refusal asks for no passphrase
    return _checked_sign(as_, lambda: signer_for(ctx, as_), verifier, action, resource, grant, data, embed, audience,
                         ttl, int(ctx.now()), recorder, approval)


def sign_action_with(
    signer: Signer,
    *,
    action: str,
    resource: str,
    grant: str | None = None,
    data: bytes = b"",
    embed: bool = False,
    audience: str | None = None,
    ttl: int = DEFAULT_ACTION_TTL,
    clock: Clock = system_clock,
    trust: Any = None,
    recorder: Any = None,
    approval: str | None = None,
) -> str:
    """Sign an action with a key held in memory, no home needed. With a grant, the holder's checks run
    against ``trust`` (default: trusting no one, so the root's signature is not checked here; the
    verifier checks it)."""
    from .verify import NO_AUDIT, StaticTrust, Verifier

    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise UsageError("ttl must be a positive number of seconds")
    verifier = Verifier(trust if trust is not None else StaticTrust({}), recorder=NO_AUDIT, clock=clock)
    return _checked_sign(signer.name, lambda: signer, verifier, action, resource, grant, data, embed, audience, ttl,
                         int(clock()), recorder, approval)


def _checked_sign(name: str, signer_of: Callable[[], Signer], verifier, action: str, resource: str, grant: str | None,
                  data: bytes, embed: bool, audience: str | None, ttl: int, now: int, recorder: Any,
                  approval: str | None) -> str:
    """What both ways of signing share: the values checked, the grant's holder checks (a refusal
    recorded as a deny), the approval bound, then the signature."""
    check_action_name(action)
    check_resource(resource)
    if audience is not None:
        check_audience(audience)
    try:
        chain = _preflight(verifier, grant, name, action, resource, audience) if grant is not None else None
    except VerificationError as e:
        _record(recorder, Event("sign", "deny", principal=name, action=action, resource=resource, reason=e.reason, metadata={"detail": e.detail}))
        raise
    approved = _approval(approval, name, action, resource, data, chain, now) if approval is not None else None
    return _sign(signer_of(), chain, grant, action, resource, data, embed, audience, ttl, now, recorder, approved)


def _preflight(verifier, grant: str, as_: str, action: str, resource: str, audience: str | None):
    from .scopes import allowed

    chain, _root_checked = verifier.preflight(grant)
    leaf = chain.leaf
    if leaf.delegate != as_:
        raise UsageError(f"the grant was given to {leaf.delegate}, not {as_}", hint=f"sign with as_ {leaf.delegate}", param="as_")
    if allowed(leaf.scopes, action, resource) is None:
        raise VerificationError("scope_denied", f"the grant does not allow {action} on {resource} (scope: {leaf.scope_text})")
    if leaf.aud is not None and audience is not None and audience not in leaf.aud:
        raise VerificationError("audience_mismatch", f"the grant is for {', '.join(leaf.aud)}, not {audience}")
    grant_exp = min(h.exp for h in chain.hops)
    if grant_exp <= int(verifier.clock()):  # within the leeway preflight allows: an action must still be valid when signed
        raise VerificationError("expired", f"the grant expired at {rfc3339(grant_exp)}")
    return chain


def _approval(text: str, as_: str, action: str, resource: str, data: bytes, chain, now: int):
    """The approval to carry (``--approval``): one that binds exactly this action, or a usage error
    naming what differs (the verifier would refuse it)."""
    from .actions import payload_digest
    from .approvals import approval_from

    try:
        approval = approval_from(jws.decode(text.strip(), jws.APPROVAL))
    except VerificationError as e:
        raise UsageError(f"approval is not an agentctl-approval+jwt token: {e.detail}", param="approval") from None
    grant = chain.leaf.digest if chain is not None else None
    for what, theirs, mine in (("agent", approval.agent, as_), ("action", approval.action, action),
                               ("resource", approval.resource, resource), ("payload", approval.sha256, payload_digest(data)),
                               ("grant", approval.grant, grant)):
        if theirs != mine:
            raise UsageError(f"the approval is for another {what} than this action's", hint="sign exactly what was approved")
    if approval.exp <= now:
        raise UsageError(f"the approval expired at {rfc3339(approval.exp)}", hint="ask for a new approval")
    return approval


def _sign(signer: Signer, chain, grant, action, resource, data, embed, audience, ttl, now, recorder, approval=None) -> str:
    from .actions import parse_action
    from .presentation import digest

    sub = signer.name
    if chain is not None:
        leaf = chain.leaf
        if signer.public != leaf.cnf:
            raise UsageError(f"the key of {signer.name} here is not the key the grant was given to", hint="was it rotated after the grant was minted?")
        if audience is None and leaf.aud is not None and len(leaf.aud) == 1:
            audience = leaf.aud[0]
        ttl = min(ttl, min(h.exp for h in chain.hops) - now)
        sub = leaf.sub
    claims = action_claims(iss=signer.name, sub=sub, action=action, resource=resource, data=data, embed=embed, now=now,
                           ttl=ttl, audience=audience, grant=chain.leaf.digest if chain is not None else None,
                           approval=digest(approval.text) if approval is not None else None)
    token = jws.encode(jws.ACTION, claims, signer.seed)
    if recorder is not None:
        signed = parse_action(token)
        _record(recorder, Event("sign", "ok", principal=signer.name, on_behalf_of=signed.sub, action=action, resource=resource,
                                jtis=(signed.jti,), metadata={"sha256": signed.sha256, "embedded": embed, "grant": grant is not None,
                                                              "approval": approval.jti if approval is not None else None}))
    if approval is not None:
        token = f"{approval.text}~{token}"
    return f"{chain.text}~{token}" if chain is not None else token  # the grant's presentation, extended


def _record(recorder: Any, event: Event) -> None:
    if recorder is not None:
        recorder.record(event)
