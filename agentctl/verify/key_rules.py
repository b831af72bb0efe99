"""The key rules of principals this verifier knows (steps 2 and 3): a delegate's key must be one of
its keys, and a key retired here verifies only what it signed before its retirement."""

from __future__ import annotations

from ..clock import rfc3339
from ..errors import VerificationError
from .trust import _keys_by_kid

__all__ = ["known_key", "not_retired"]


def known_key(v, name: str, public_kid, signed_at: int, what: str) -> None:
    """Where ``name`` is known here, ``public_kid`` must be one of its keys, current or retired after
    ``signed_at`` (else chain_broken). An unknown name passes (marked agent_known: false), unless
    require_known_agents."""
    p = v.trust.principal(name)
    if p is None:
        if v.trust.require_known_agents:
            raise VerificationError("untrusted_root", f"{name} is not a principal known here, and require_known_agents is set")
        return
    if callable(public_kid):  # computed only for a known name: a kid is a hash
        public_kid = public_kid()
    key = _keys_by_kid(p).get(public_kid)
    if key is None:
        raise VerificationError("chain_broken", f"{what} names {name}, but key {public_kid} is not one of its keys here")
    if key.status == "retired" and signed_at > key.retired:
        raise VerificationError("chain_broken", f"{what} uses key {public_kid} of {name}, retired at {rfc3339(key.retired)}, before it was signed")


def not_retired(v, name: str, kid: str, iat: int, what: str) -> None:
    """A holder key that its principal has since retired here verifies only what it signed before."""
    principal = v.trust.principal(name)
    key = _keys_by_kid(principal).get(kid) if principal is not None else None
    if key is not None and key.status == "retired" and iat > key.retired:
        raise VerificationError("bad_signature", f"{what} is signed by key {kid} of {name} after it was retired at {rfc3339(key.retired)}")
