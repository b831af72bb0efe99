"""Minting grants: a root grant signed by a local principal, or a narrower re-delegation of a parent
grant signed by the parent's holder. Everything is checked before anything is signed."""

from __future__ import annotations

from typing import Any

from . import crypto, jws
from .clock import Clock, rfc3339, system_clock
from .context import Context
from .durations import format_duration
from .errors import DeniedError, UsageError, VerificationError
from .events import Event
from .grants import MAX_CHAIN, Chain, grant_claims, parse_chain
from .identity import Signer, signer_for
from .names import check_name
from .store import Store
from .verify import VerifiedGrant

__all__ = ["delegate", "delegate_with", "default_issuer"]

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
        raise UsageError("no local principal can sign here", hint="create one with 'agentctl keygen', or give issuer NAME", param="issuer")
    shown = ", ".join(candidates[:5]) + (", …" if len(candidates) > 5 else "")
    raise UsageError(f"several principals could sign ({shown})", hint="name one: give issuer NAME", param="issuer")


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
    recorder: Any = None,
) -> tuple[str, Chain]:
    """Mint a grant and return its presentation (with ``parent``: the parent's presentation extended by
    the new grant) and its parsed chain. Raises before signing anything that a
    verifier would refuse: a scope beyond the signer's authority (``--from``), a wider scope, a longer
    life or a deeper chain than the parent allows. Given a ``recorder``, records the outcome."""
    try:
        token, chain = _delegate(ctx, to, scopes, ttl, issuer, parent, audience, max_depth)
    except VerificationError as e:
        _record(recorder, Event("delegate", "deny", principal=issuer, resource=None, reason=e.reason,
                                metadata={"to": to, "scope": " ".join(scopes), "detail": e.detail, "redelegation": parent is not None}))
        raise
    _record(recorder, _minted_event(chain))
    return token, chain


def delegate_with(
    signer: Signer,
    *,
    to: str,
    to_public: bytes,
    scopes: list[str] | tuple[str, ...],
    ttl: int = DEFAULT_TTL,
    parent: str | None = None,
    audience: str | None = None,
    max_depth: int | None = None,
    clock: Clock = system_clock,
    trust: Any = None,
    recorder: Any = None,
) -> tuple[str, Chain]:
    """Mint a grant with a key held in memory, no home needed: a root grant from ``signer`` to ``to``
    (whose public key is ``to_public``), or, with ``parent``, a re-delegation that ``signer`` (the
    parent's holder) signs. The parent's checks run against ``trust`` (default: trusting no one)."""
    from .scopes import parse_scopes
    from .verify import NO_AUDIT, StaticTrust, Verifier

    try:
        check_name(to)
        to_public = crypto.check_public_key(bytes(to_public))
        if not scopes:
            raise UsageError("give at least one scope")
        wanted = parse_scopes(list(scopes))
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise UsageError("ttl must be a positive number of seconds")
        _check_common(max_depth, audience)
        verifier = Verifier(trust if trust is not None else StaticTrust({}), recorder=NO_AUDIT, clock=clock)
        token, chain = _mint(signer, to, to_public, wanted, ttl, ttl, parent, audience, max_depth, int(clock()), verifier, signer.name if parent is None else None)
    except VerificationError as e:
        _record(recorder, Event("delegate", "deny", principal=signer.name, reason=e.reason,
                                metadata={"to": to, "scope": " ".join(map(str, scopes)), "detail": e.detail, "redelegation": parent is not None}))
        raise
    _record(recorder, _minted_event(chain))
    return token, chain


def _check_common(max_depth: int | None, audience: str | None) -> None:
    from .actions import check_audience

    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or not (0 <= max_depth < MAX_CHAIN)):
        raise UsageError(f"max_depth must be between 0 and {MAX_CHAIN - 1}", param="max_depth")
    if audience is not None:
        check_audience(audience)


def _minted_event(chain: Chain) -> Event:
    leaf = chain.leaf
    return Event("delegate", "ok", principal=leaf.iss, on_behalf_of=leaf.sub, chain=chain.principals,
                 jtis=tuple(h.jti for h in chain.hops), metadata={
                     "to": leaf.delegate, "scope": leaf.scope_text, "expires_at": rfc3339(leaf.exp),
                     "max_depth": leaf.max_depth, "aud": list(leaf.aud) if leaf.aud else None})


def _record(recorder: Any, event: Event) -> None:
    if recorder is not None:
        recorder.record(event)


def _delegate(ctx, to, scopes, ttl, issuer, parent, audience, max_depth) -> tuple[str, Chain]:
    from .scopes import parse_scopes
    from .verify import NO_AUDIT, StoreTrust, Verifier

    check_name(to)
    if not scopes:
        raise UsageError("give at least one scope in scopes", hint="e.g. scopes 'pull_request.create:acme/*'", param="scopes")
    wanted = parse_scopes(list(scopes))
    config = ctx.home.config
    asked_ttl = ttl
    ttl = min(DEFAULT_TTL, config.max_ttl) if ttl is None else ttl  # the default is capped, not refused
    if ttl > config.max_ttl:
        raise UsageError(
            f"--ttl {format_duration(ttl)} is longer than max_ttl ({format_duration(config.max_ttl)})",
            hint=f"ask for less, or raise max_ttl in {ctx.home.config_file}",
        )
    _check_common(max_depth, audience)
    store = Store(ctx.home)
    delegate_p = store.require(to)
    revs = store.revocations()
    if revs.principal(to) or revs.key(delegate_p.current.kid):
        raise DeniedError(f"{to} is revoked; it cannot receive a grant")
    now = int(ctx.now())
    trust = StoreTrust(store, config)
    verifier = Verifier(trust, recorder=NO_AUDIT, clock=ctx.clock, leeway=config.leeway)
    if parent is None:
        iss = issuer if issuer is not None else default_issuer(ctx, to)  # --from '' is a bad name, not "any"
        check_name(iss)
        if iss == to:
            raise UsageError(f"{iss} cannot delegate to itself")
        signer = signer_for(ctx, iss)
        if trust.principal(iss) is not None:  # nothing is minted beyond the signer's authority here; a
            _within_authority(trust, iss, wanted)  # signer known only by AGENTCTL_SECRET_KEY is judged by verifiers
        return _mint(signer, to, delegate_p.current.public, wanted, ttl, asked_ttl, None, audience, max_depth, now, verifier, iss)
    chain, _root_checked = verifier.preflight(parent)
    iss = chain.leaf.delegate
    if issuer is not None and issuer != iss:
        raise UsageError(f"issuer {issuer} does not hold the parent grant; its holder is {iss}",
                         hint="leave out issuer when re-delegating: the holder signs", param="issuer")
    if iss == to:
        raise UsageError(f"{iss} cannot re-delegate to itself")
    signer = signer_for(ctx, iss)
    return _mint(signer, to, delegate_p.current.public, wanted, ttl, asked_ttl, parent, audience, max_depth, now, verifier, None)


def _within_authority(trust, iss: str, wanted: tuple) -> None:
    """``delegate --from``: every scope within the signer's authority here (SPEC, "Authority and roles")."""
    authority = trust.authority(iss)
    try:
        wider = authority.covers(wanted)
    except UsageError as e:
        raise VerificationError("scope_escalation", f"the scope cannot be compared with the authority of {iss}: {e.message}") from None
    if wider is not None:
        s, action, resource = wider
        raise VerificationError("scope_escalation", f"{iss} has no authority for scope {s} (it would allow {action} on {resource}): {authority.rule}")


def _mint(signer: Signer, to: str, to_public: bytes, wanted: tuple, ttl: int, asked_ttl: int | None, parent: str | None,
          audience: str | None, max_depth: int | None, now: int, verifier, root_iss: str | None) -> tuple[str, Chain]:
    from .scopes import witness

    if parent is None:
        iss = signer.name
        if iss == to:
            raise UsageError(f"{iss} cannot delegate to itself")
        claims = grant_claims(
            iss=iss, sub=iss, delegate=to, delegate_public=to_public, scopes=wanted,
            now=now, ttl=ttl, max_depth=0 if max_depth is None else max_depth,
            audience=(audience,) if audience else None, parent=None,
        )
        token = _sign(signer, claims)
        return token, parse_chain(token)
    chain, _root_checked = verifier.preflight(parent)
    verified = VerifiedGrant(chain, now)
    leaf = chain.leaf
    iss = leaf.delegate
    if signer.name != iss:
        raise UsageError(f"{signer.name} does not hold the parent grant; its holder is {iss}")
    if iss == to:
        raise UsageError(f"{iss} cannot re-delegate to itself")
    if len(verified.chain.hops) >= MAX_CHAIN:
        raise VerificationError("chain_broken", f"the parent chain already has {MAX_CHAIN} hops")
    if leaf.max_depth == 0:
        raise VerificationError("chain_broken", "the parent grant allows no further delegation (max_depth 0)")
    if max_depth is None:
        max_depth = leaf.max_depth - 1
    elif max_depth > leaf.max_depth - 1:
        raise _naming(VerificationError("chain_broken", f"max_depth {max_depth} is more than the parent allows ({leaf.max_depth - 1})"), "max_depth")
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
            raise _naming(VerificationError("scope_escalation", f"audience {audience} is not among the parent's ({', '.join(aud)})"), "audience")
        aud = (audience,)
    if signer.public != leaf.cnf:
        raise UsageError(f"the key of {iss} here is not the key the parent grant was given to", hint="was it rotated after the grant was minted?")
    claims = grant_claims(
        iss=iss, sub=leaf.sub, delegate=to, delegate_public=to_public, scopes=wanted,
        now=now, ttl=ttl, max_depth=max_depth, audience=aud, parent=leaf,
    )
    presentation = f"{chain.text}~{_sign(signer, claims)}"  # the parent's, extended by the new grant
    return presentation, parse_chain(presentation)


def _sign(signer: Signer, claims: dict) -> str:
    return jws.encode(jws.GRANT, claims, signer.seed)


def _naming(e: VerificationError, param: str) -> VerificationError:
    e.param = param
    return e
