"""Signing actions: an agent states what it does, on whose behalf, under which grant."""

from __future__ import annotations

from . import jws
from .actions import action_claims, check_action_name, check_resource
from .context import Context
from .errors import UsageError, VerificationError
from .identity import signer_for
from .names import check_name
from .store import Store
from .verify import StoreTrust, Verifier

__all__ = ["sign_action", "DEFAULT_ACTION_TTL"]

DEFAULT_ACTION_TTL = 300


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
) -> str:
    """Sign an action. With a grant, refuse up front what the grant does not allow."""
    check_name(as_)
    check_action_name(action)
    check_resource(resource)
    ttl = DEFAULT_ACTION_TTL if ttl is None else ttl
    if ttl > ctx.home.config.max_ttl:
        raise UsageError("--ttl is longer than max_ttl in config.toml")
    if audience is not None and (not audience or not audience.isprintable() or " " in audience or len(audience) > 256):
        raise UsageError("--audience must be printable text without spaces")
    now = int(ctx.now())
    sub = as_
    if grant is not None:
        verifier = Verifier(StoreTrust(Store(ctx.home)), clock=ctx.clock, leeway=ctx.home.config.leeway)
        chain, _root_checked = verifier.preflight(grant)
        leaf = chain.leaf
        if leaf.delegate != as_:
            raise UsageError(f"the grant was given to {leaf.delegate}, not {as_}", hint=f"sign with --as {leaf.delegate}")
        from .scopes import allowed

        if allowed(leaf.scopes, action, resource) is None:
            raise VerificationError("scope_denied", f"the grant does not allow {action} on {resource} (scope: {leaf.scope_text})")
        if leaf.aud is not None and audience is not None and audience not in leaf.aud:
            raise VerificationError("audience_mismatch", f"the grant is for {', '.join(leaf.aud)}, not {audience}")
        if audience is None and leaf.aud is not None and len(leaf.aud) == 1:
            audience = leaf.aud[0]
        grant_exp = min(h.exp for h in chain.hops)
        if grant_exp <= now:  # within the leeway preflight allows: an action must still be valid when signed
            from .clock import rfc3339

            raise VerificationError("expired", f"the grant expired at {rfc3339(grant_exp)}")
        ttl = min(ttl, grant_exp - now)
        sub = leaf.sub
    signer = signer_for(ctx, as_)
    if grant is not None and signer.public != chain.leaf.cnf:
        raise UsageError(f"the key of {as_} here is not the key the grant was given to", hint="was it rotated after the grant was minted?")
    claims = action_claims(iss=as_, sub=sub, action=action, resource=resource, data=data, embed=embed, now=now,
                           ttl=ttl, audience=audience, grant=grant.strip() if grant else None)
    return jws.encode(jws.ACTION, claims, signer.seed)
