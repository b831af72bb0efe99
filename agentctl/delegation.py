"""Minting grants: a root grant signed by a local principal, or a narrower re-delegation of a parent
grant signed by the parent's holder. Everything is checked before anything is signed."""

from __future__ import annotations

from . import jws
from .clock import rfc3339
from .context import Context
from .durations import format_duration
from .errors import DeniedError, UsageError, VerificationError
from .grants import MAX_CHAIN, Chain, grant_claims, parse_chain
from .identity import Signer, signer_for
from .names import check_name
from .store import Store
from .verify import StoreTrust, VerifiedGrant, Verifier

__all__ = ["delegate", "default_issuer"]

DEFAULT_TTL = 3600
AUDIT_PURPOSE = "audit-log"  # attribute purpose= of the host key that signs audit checkpoints


def default_issuer(ctx: Context, to: str | None = None) -> str:
    """The one local principal that could sign a grant to ``to`` (itself excluded), for ``delegate``
    without ``--from``."""
    from .secret import decode_secret

    store = Store(ctx.home)
    revs = store.revocations()
    candidates = [
        p.name for p in store.all()
        if p.origin == "local" and p.keystore and not revs.principal(p.name) and not revs.key(p.current.kid)
        and dict(p.attrs).get("purpose") != AUDIT_PURPOSE  # the host's audit key signs checkpoints only
    ]
    env_text = ctx.env.get("AGENTCTL_SECRET_KEY")
    if env_text:
        name = decode_secret(env_text).name
        if name not in candidates:
            candidates.append(name)
    if to in candidates:
        candidates.remove(to)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UsageError("no local principal can sign here", hint="create one with 'agentctl keygen', or name one with --from")
    shown = ", ".join(candidates[:5]) + (", …" if len(candidates) > 5 else "")
    raise UsageError(f"several principals could sign ({shown})", hint="name one with --from NAME")


def delegate(
    ctx: Context,
    *,
    to: str,
    scopes: list[str] | tuple[str, ...],
    ttl: int | None = None,
    issuer: str | None = None,
    parent: str | None = None,
    audience: str | None = None,
    max_depth: int | None = None,
) -> tuple[str, Chain]:
    """Mint a grant and return it with its parsed chain. Raises before signing anything that a
    verifier would refuse: a wider scope, a longer life or a deeper chain than the parent allows."""
    from .scopes import parse_scopes, witness

    check_name(to)
    if not scopes:
        raise UsageError("give at least one --scope", hint="e.g. --scope 'pull_request.create:acme/*'")
    wanted = parse_scopes(list(scopes))
    config = ctx.home.config
    asked_ttl = ttl
    ttl = min(DEFAULT_TTL, config.max_ttl) if ttl is None else ttl  # the default is capped, not refused
    if ttl > config.max_ttl:
        raise UsageError(
            f"--ttl {format_duration(ttl)} is longer than max_ttl ({format_duration(config.max_ttl)})",
            hint=f"ask for less, or raise max_ttl in {ctx.home.config_file}",
        )
    if max_depth is not None and not (0 <= max_depth < MAX_CHAIN):
        raise UsageError(f"--max-depth must be between 0 and {MAX_CHAIN - 1}")
    if audience is not None and (not audience or not audience.isprintable() or " " in audience or len(audience) > 256):
        raise UsageError("--audience must be printable text without spaces")
    store = Store(ctx.home)
    delegate_p = store.require(to)
    revs = store.revocations()
    if revs.principal(to) or revs.key(delegate_p.current.kid):
        raise DeniedError(f"{to} is revoked; it cannot receive a grant")
    now = int(ctx.now())

    if parent is None:
        iss = issuer if issuer is not None else default_issuer(ctx, to)  # --from '' is a bad name, not "any"
        check_name(iss)
        if iss == to:
            raise UsageError(f"{iss} cannot delegate to itself")
        signer = signer_for(ctx, iss)
        claims = grant_claims(
            iss=iss, sub=iss, delegate=to, delegate_public=delegate_p.current.public, scopes=wanted,
            now=now, ttl=ttl, max_depth=0 if max_depth is None else max_depth,
            audience=(audience,) if audience else None, parent=None,
        )
    else:
        chain, _root_checked = Verifier(StoreTrust(store), clock=ctx.clock, leeway=config.leeway).preflight(parent)
        verified = VerifiedGrant(chain, now)
        leaf = chain.leaf
        iss = leaf.delegate
        if issuer is not None and issuer != iss:
            raise UsageError(f"--from {issuer} does not hold the parent grant; its holder is {iss}", hint="leave out --from with --parent")
        if iss == to:
            raise UsageError(f"{iss} cannot re-delegate to itself")
        if len(verified.chain.hops) >= MAX_CHAIN:
            raise VerificationError("chain_broken", f"the parent chain already has {MAX_CHAIN} hops")
        if leaf.max_depth == 0:
            raise VerificationError("chain_broken", "the parent grant allows no further delegation (max_depth 0)")
        if max_depth is None:
            max_depth = leaf.max_depth - 1
        elif max_depth > leaf.max_depth - 1:
            raise VerificationError("chain_broken", f"--max-depth {max_depth} is more than the parent allows ({leaf.max_depth - 1})")
        for s in wanted:
            w = witness(s, leaf.scopes)
            if w is not None:
                raise VerificationError(
                    "scope_escalation",
                    f"scope {s} is wider than the parent's ({leaf.scope_text}): it would allow {w[0]} on {w[1]}",
                )
        if asked_ttl is None:  # by default a child lives as long as it may, up to the default
            ttl = min(ttl, verified.expires_at - now)
            if ttl <= 0:
                raise VerificationError("expired", f"the parent grant expired at {rfc3339(verified.expires_at)}")
        if now + ttl > verified.expires_at:
            left = verified.expires_at - now
            raise VerificationError(
                "chain_broken",
                f"--ttl {format_duration(ttl)} would outlive the parent grant, which expires at {rfc3339(verified.expires_at)} (in {format_duration(left)})",
            )
        aud = leaf.aud
        if audience is not None:
            if aud is not None and audience not in aud:
                raise VerificationError("scope_escalation", f"--audience {audience} is not among the parent's ({', '.join(aud)})")
            aud = (audience,)
        signer = signer_for(ctx, iss)
        if signer.public != leaf.cnf:
            raise UsageError(f"the key of {iss} here is not the key the parent grant was given to", hint="was it rotated after the grant was minted?")
        claims = grant_claims(
            iss=iss, sub=leaf.sub, delegate=to, delegate_public=delegate_p.current.public, scopes=wanted,
            now=now, ttl=ttl, max_depth=max_depth, audience=aud, parent=leaf,
        )
    token = _sign(signer, claims)
    return token, parse_chain(token)


def _sign(signer: Signer, claims: dict) -> str:
    return jws.encode(jws.GRANT, claims, signer.seed)
