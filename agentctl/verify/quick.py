"""The grant pipeline in one pass, for a usual grant presentation that holds (SPEC, "Verification").

:func:`quick_grant` returns the :class:`~.results.VerifiedGrant` that :data:`~.steps.GRANT_STEPS`
would return, or None: then the declared pipeline runs and decides (the first failure wins, with its
reason and detail, as ever). It only ever accepts what the pipeline accepts:

- step 1 takes each token from :func:`agentctl.grants.quick_hop` (the full parse's result, or None),
  under a header met and checked before, with the presentation's grammar checked as
  :func:`agentctl.presentation.parse` checks it;
- the timeless steps (2, 3, 5, 8) run as the steps themselves (their own code), and their outcomes
  go into the token's memo as the pipeline would record them: a failure recorded here is the one the
  pipeline then raises, without checking a signature twice;
- the others (time, revocation, audience, the request's scope) are the steps' conditions, asked
  every time; approvals (10) and policies (11) are left to the pipeline (the verifier only comes here
  when neither has anything to decide).
"""

from __future__ import annotations

from typing import Any

from .. import jws
from ..errors import VerificationError
from ..grants import Chain, quick_hop
from ..presentation import MAX_GRANTS, MAX_PRESENTATION_BYTES
from .check import Check
from .revocation_step import chain_ids
from .results import VerifiedGrant

__all__ = ["quick_grant"]

_steps: Any = None  # .steps, imported on first use (it imports this module's neighbours)


def quick_grant(v, token: object, now: float, audience: str | None, action: str | None,
                resource: str | None) -> VerifiedGrant | None:
    global _steps
    if type(token) is not str or len(token) > MAX_PRESENTATION_BYTES:
        return None
    text = token.strip()
    if not text or not text.isascii() or len(text.split(None, 1)) != 1:
        return None
    parts = text.split("~")
    n = len(parts)
    if n > MAX_GRANTS or "" in parts:
        return None
    if n > 1 and (any(parts[i] == parts[j] for i in range(1, n) for j in range(i)) if n <= 4 else len(set(parts)) != n):
        return None  # a repeated token
    known = jws._HEADERS.get(parts[-1].partition(".")[0])
    if known is None or known[1] != jws.GRANT:
        return None
    memo = v._memo(text)
    outcomes = memo.outcomes
    chain = memo.chain
    if chain is None:
        if outcomes:
            return None
        hops: list = []
        for part in parts:
            hop = quick_hop(part)
            if hop is None or hop.prf != (hops[-1].digest if hops else None):
                return None
            hops.append(hop)
        chain = object.__new__(Chain)  # as Chain(...) would (a frozen dataclass, built without its __init__)
        chain.__dict__["hops"] = tuple(hops)
        memo.chain = chain
        outcomes["well_formed"] = None
    if _steps is None:
        from . import steps as _steps
    if len(outcomes) != 5 or any(o is not None for o in outcomes.values()):  # the timeless steps, not all passed yet
        if any(o is not None for o in outcomes.values()):
            return None  # a failure recorded: the pipeline raises it
        c = Check(text, now, "grant")
        c.chain = chain
        for step in _steps.TIMELESS_GRANT_STEPS:
            if step.name in outcomes:
                continue
            try:
                step.grant(v, c)
            except VerificationError as e:
                outcomes[step.name] = e  # as the pipeline records it, and then raises it
                return None
            outcomes[step.name] = None
    hops_ = chain.hops
    leeway = v.leeway
    exp = None
    for hop in hops_:  # step 4
        if now + leeway < hop.nbf or now - leeway >= hop.exp or (exp is not None and hop.exp > exp):
            return None
        exp = hop.exp
    trust = v.trust
    if trust.stale(now) is not None:  # step 6, asked every time
        return None
    if not v._nothing_revoked() and v._revoked_among(chain_ids(chain, memo)):
        return None
    for hop in hops_:  # step 7
        if hop.aud is not None and (audience is None or audience not in hop.aud):
            return None
    leaf = hops_[-1]
    if audience is not None and leaf.aud is None:
        return None
    scope = None
    if action is not None or resource is not None:  # step 9
        try:
            scope = v._allowed(chain, action, resource)
        except VerificationError:
            return None
    result = object.__new__(VerifiedGrant)  # as VerifiedGrant(...) would (frozen, built without its __init__)
    result.__dict__.update(chain=chain, at=now, agent_known=v._known(leaf.delegate), scope=scope, audience=audience,
                           policy=None)
    return result
