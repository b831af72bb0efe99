"""Verification: one declared pipeline of named steps, first failure wins (SPEC, "Verification").

A :class:`Verifier` holds what it trusts (a :class:`Trust`: principals, revocations and authority, from
a home or given in code), a clock, a recorder and, for ``once``, a seen-store. ``verify`` returns a
:class:`VerifiedGrant` or :class:`VerifiedAction`, or raises
:class:`~agentctl.errors.VerificationError` with a reason code; there is no ``ok`` flag to forget.

The steps are declared in :mod:`agentctl.verify.steps` (``GRANT_STEPS``, ``ACTION_STEPS``,
``PREFLIGHT_STEPS``) and run by :mod:`agentctl.verify.pipeline`.
"""

from __future__ import annotations

from .results import VerifiedAction, VerifiedGrant, claimed, denial_doc, verdict_doc, verdict_event
from .trust import Authority, Role, StaticTrust, StoreTrust, Trust, key_for
from .verifier import DEFAULT_LEEWAY, EXPECT, MAX_LEEWAY, NO_AUDIT, Verifier

for _cls in (Verifier, StaticTrust, StoreTrust, Trust, VerifiedGrant, VerifiedAction):
    _cls.__module__ = __name__  # documented as agentctl.verify.X

__all__ = [
    "Trust", "StoreTrust", "StaticTrust", "Authority", "Role", "key_for",
    "Verifier", "NO_AUDIT", "DEFAULT_LEEWAY", "MAX_LEEWAY", "EXPECT",
    "VerifiedGrant", "VerifiedAction", "verdict_doc", "denial_doc", "verdict_event", "claimed",
]
