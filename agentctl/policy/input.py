"""The policy input document (SPEC "Policy"), built only from facts the verifier has already checked.

Nothing here verifies anything: the caller passes verified facts as keyword arguments. What a caller
*claims* arrives only through ``context`` (``--context``), which is checked by :func:`check_context`
and can never replace a verified field: its ``resource`` members land beside the verified
``resource.id`` (an ``id`` among them is refused) and everything else under ``context``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import UsageError

__all__ = ["Hop", "Delegation", "Approval", "check_context", "build_input", "user_role"]


@dataclass(frozen=True)
class Hop:
    """One verified grant of a chain, root first."""

    iss: str
    holder: str
    scope: tuple[str, ...]
    iat: int
    exp: int
    jti: str

    def doc(self) -> dict:
        return {"iss": self.iss, "holder": self.holder, "scope": list(self.scope), "iat": self.iat, "exp": self.exp, "jti": self.jti}


@dataclass(frozen=True)
class Delegation:
    """On whose behalf, through which verified chain; ``user_roles``/``user_attrs`` from the verifier's home."""

    user: str
    chain: tuple[Hop, ...]
    user_roles: tuple[str, ...] = ()
    user_attrs: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("a delegation has at least one hop")


@dataclass(frozen=True)
class Approval:
    """An approval that verification step 10 accepted."""

    by: str
    at: int
    jti: str
    note: str | None = None

    def doc(self) -> dict:
        return {"by": self.by, "at": self.at, "note": self.note, "jti": self.jti}


def user_role(roles: Sequence[str], attrs: Mapping[str, object]) -> str | None:
    """The ``primary_role`` attribute when set, else the only role, else none."""
    primary = attrs.get("primary_role")
    if isinstance(primary, str) and primary:
        return primary
    return roles[0] if len(roles) == 1 else None


def check_context(context: object) -> dict:
    """A ``--context`` document: a JSON object whose ``resource``, if present, is an object without
    ``id``. Anything else is a usage error (exit 2)."""
    if not isinstance(context, dict):
        raise UsageError("the context must be a JSON object")
    if "resource" in context:
        res = context["resource"]
        if not isinstance(res, dict):
            raise UsageError('the context\'s "resource" must be a JSON object')
        if "id" in res:
            raise UsageError('the context\'s "resource" must not hold "id": the resource id is the verified one',
                             hint="give the id as resource; put only the other attributes in the context", param="resource")
    return context


def build_input(
    *,
    agent_id: str,
    agent_kid: str,
    agent_known: bool,
    agent_roles: Sequence[str] = (),
    agent_attrs: Mapping[str, object] | None = None,
    action: str | None,
    resource_id: str | None,
    delegation: Delegation | None,
    approval: Approval | None,
    token: Mapping[str, object],
    payload: Mapping[str, object] | None,
    context: Mapping[str, object] | None,
    now: int,
) -> dict:
    """The input document exactly as SPEC "Policy" shows it. An unknown agent has no roles and no attrs,
    whatever the caller passes."""
    ctx = dict(check_context(dict(context)) if context is not None else {})
    resource_members = dict(ctx.pop("resource", {}) or {})
    resource = {**resource_members, "id": resource_id}  # the verified id last: nothing replaces it
    doc: dict = {
        "agent": {
            "id": agent_id,
            "kid": agent_kid,
            "known": bool(agent_known),
            "roles": sorted(agent_roles) if agent_known else [],
            "attrs": dict(agent_attrs or {}) if agent_known else {},
        },
        "action": action,
        "resource": resource,
        "delegation": _delegation_doc(delegation) if delegation is not None else None,
        "approval": approval.doc() if approval is not None else None,
        "token": dict(token),
        "payload": dict(payload) if payload is not None else None,
        "context": ctx,
        "now": now,
    }
    return doc


def _delegation_doc(d: Delegation) -> dict:
    roles = sorted(d.user_roles)
    attrs = dict(d.user_attrs)
    doc: dict = {"user": d.user}
    role = user_role(roles, attrs)
    if role is not None:
        doc["user_role"] = role
    doc.update({
        "user_roles": roles,
        "user_attrs": attrs,
        "chain": [h.doc() for h in d.chain],
        "depth": len(d.chain),
        "issued_at": d.chain[0].iat,
        "expires_at": min(h.exp for h in d.chain),
    })
    return doc
