"""Step 6, revocation: every principal, key id and jti a presentation names, looked up in the
verifier's revocation sources (the trust's and any given beside it) at every check, never memoized.
The functions are the :class:`~.verifier.Verifier`'s ``_revoked_among``, ``_nothing_revoked`` and
``_revoked`` (``self``: the verifier)."""

from __future__ import annotations

from ..errors import VerificationError
from ..models import Revocations
from .check import Check
from .pipeline import Memo, Step

__all__ = ["Revocation", "chain_ids", "revoked_among", "nothing_revoked", "revoked"]


def _fail(reason: str, detail: str) -> VerificationError:
    return VerificationError(reason, detail)


class Revocation(Step):
    """Every principal, key id and jti the presentation names (its chain's and its action's), looked up
    in one query a source. Not memoized: a revocation made while a verifier runs is seen at its next
    check."""

    number, name, title = 6, "revocation", "Revocation"
    reasons = ("revoked", "stale_revocations", "stale_trust")

    def run(self, v, c: Check) -> None:
        stale = v.trust.stale(c.real_now or c.now)  # freshness changes with time: never memoized
        if stale is not None:
            raise _fail(stale.reason, stale.detail)
        chain, act = c.chain, c.act
        if v._nothing_revoked():  # every source asked, and none holds an entry: no ids to look up
            return
        ids: tuple = chain_ids(chain, c.memo) if chain is not None else ()
        if act is not None:  # a grant's chain covers the action's signer
            ids += ((("principal", act.iss), ("key", act.kid), ("grant", act.jti)) if chain is None else (("grant", act.jti),))
        hits = v._revoked_among(ids)
        if not hits:
            return
        in_chain = len(ids) - (0 if act is None else 1 if chain is not None else 3)
        for n, (kind, ident) in enumerate(ids):  # the chain's first, in order, then the action's
            if (kind, ident) not in hits:
                continue
            if kind != "grant":
                raise _fail("revoked", f"{kind} {ident} is revoked")
            if n >= in_chain:
                raise _fail("revoked", f"action {ident} is revoked")
            i = next(i for i, h in enumerate(chain.hops) if h.jti == ident)
            raise _fail("revoked", f"grant {ident} (hop {i + 1}) is revoked")


def chain_ids(chain, memo: Memo | None) -> tuple:
    """What a chain names that can be revoked, in the order it is checked: principals, key ids, jtis
    (kept in the chain's memo: a chain is fixed)."""
    ids = memo.extra.get("revocation_ids") if memo is not None else None
    if ids is None:
        hops = chain.hops
        root = hops[0]
        principals = [("principal", root.iss)]
        keys = [("key", root.token.kid)]
        for h in hops:
            principals.append(("principal", h.delegate))
            keys.append(("key", h.cnf_kid))
        ids = (*dict.fromkeys(principals), *dict.fromkeys(keys), *[("grant", h.jti) for h in hops])
        if memo is not None:
            memo.extra["revocation_ids"] = ids
    return ids


def revoked_among(self, pairs: tuple[tuple[str, str], ...]) -> set:
    """Which of the (kind, id) ``pairs`` any source holds revoked: one query a source (a source
    with ``found``, as :class:`~agentctl.revocation_store.StoredRevocations`), none for an empty one."""
    hits: set = set()
    for revs in (self.trust.revocations(), *self.extra_revocations):
        found = getattr(revs, "found", None)
        if found is not None:
            hits |= found(pairs)
        elif type(revs) is Revocations and not revs.entries:
            continue
        else:
            hits.update(p for p in pairs if revs.find(*p) is not None)
    return hits

def nothing_revoked(self) -> bool:
    """Whether every revocation source is an in-memory list without an entry (a trust given in code
    with none): then no id can be revoked. Asked at every check; an indexed store always answers no."""
    for revs in (self.trust.revocations(), *self.extra_revocations):
        if type(revs) is not Revocations or revs.entries:
            return False
    return True

def revoked(self, kind: str, ident: str):
    for revs in (self.trust.revocations(), *self.extra_revocations):
        r = revs.find(kind, ident)
        if r is not None:
            return r
    return None
