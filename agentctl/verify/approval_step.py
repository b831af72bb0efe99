"""Step 10, approval (SPEC "Approvals"): whenever a verification names an action, every approval that
travels is verified, and one the verifier's rules require must be there.

An approval holds when, in this order (the detail of an ``approval_invalid`` names the check):
key (a trusted, unrevoked key of its ``iss``, and its signature), approver (allowed by ``approvers``),
four eyes (not the agent, the user, or anyone in the chain; no key the approver has had here is the
action's signing key, the root's key or a hop's ``cnf`` key; with ``same_person``, equal attributes are
one person), binding (agent, action, resource, payload digest, grant), audience, time (``nbf``/``exp``
with the leeway, ``exp − iat`` ≤ ``max_ttl``, ``iat`` not after the action's), revocation (its ``jti``).
"""

from __future__ import annotations

from ..clock import rfc3339
from ..errors import VerificationError

__all__ = ["check_approval", "approval_doc"]


def _invalid(check: str, detail: str) -> VerificationError:
    return VerificationError("approval_invalid", f"{check}: {detail}")


def check_approval(v, c) -> None:
    """Run step 10 on ``c`` (a :class:`~agentctl.verify.steps.Check`); on success an accepted approval
    is left on ``c.accepted``."""
    act = c.act
    action = act.action if act is not None else c.asked_action
    resource = act.resource if act is not None else c.asked_resource
    if action is None or resource is None:
        return  # nothing named: step 9 decided what a grant alone means
    rules = v.approvals
    required = rules.requires(action, resource) if rules is not None else None
    approval = c.approval
    if approval is None:
        if required is not None:
            what = "an action" if act is not None else "a grant alone (it never carries one)"
            raise VerificationError("approval_required", f"{action} on {resource} needs an approval ({required}) and "
                                    f"{what} brings none")
        return
    if rules is None:
        raise _invalid("audience", "this verifier has no audience (config.toml: audience), so no approval can name it")
    _key(v, approval)
    _approver(v, rules, approval)
    if rules.four_eyes:
        _four_eyes(v, rules, approval, act, c.chain)
    _binding(approval, act)
    if rules.audience not in approval.aud:
        raise _invalid("audience", f"the approval is for {', '.join(approval.aud)}, not {rules.audience}")
    _time(v, rules, approval, act, c.now)
    if v._revoked("grant", approval.jti):
        raise _invalid("revocation", f"approval {approval.jti} is revoked")
    c.accepted = approval


def _key(v, approval) -> None:
    from .trust import key_for

    try:
        key = key_for(v.trust, approval.iss, approval.kid, approval.iat)
    except VerificationError as e:
        raise _invalid("key", e.detail) from None
    if v._revoked("principal", approval.iss):
        raise _invalid("key", f"approver {approval.iss} is revoked")
    if v._revoked("key", approval.kid):
        raise _invalid("key", f"key {approval.kid} of {approval.iss} is revoked")
    if not approval.token.verifies_with(key.public):
        raise _invalid("signature", f"the signature of {approval.iss} on the approval does not verify")


def _approver(v, rules, approval) -> None:
    p = v.trust.principal(approval.iss)
    roles = tuple(p.roles) if p is not None else ()
    if not rules.allows_approver(approval.iss, roles):
        raise _invalid("approver", f"{approval.iss} is not one of this verifier's approvers ({', '.join(rules.approvers)})")


def _four_eyes(v, rules, approval, act, chain) -> None:
    by = approval.iss
    people = {act.iss: "the agent", act.sub: "the user on whose behalf it acts"}
    if chain is not None:
        for name in chain.principals:
            people.setdefault(name, "in the chain")
    if by in people:
        raise _invalid("four eyes", f"the approver {by} is {people[by]}")
    approver = v.trust.principal(by)
    mine = {k.kid for k in approver.keys} if approver is not None else {approval.kid}
    used = {act.kid: "the action's signing key"}
    if chain is not None:
        used.setdefault(chain.root.kid, "the root grant's key")
        for i, hop in enumerate(chain.hops):
            used.setdefault(hop.cnf_kid, f"the key hop {i + 1} was given to")
    for name in people:
        p = v.trust.principal(name)
        for k in p.keys if p is not None else ():
            used.setdefault(k.kid, f"a key of {name}")
    for kid, what in used.items():
        if kid in mine:
            raise _invalid("four eyes", f"the approver {by} has held {what} ({kid}): one person cannot approve their own action")
    if rules.same_person:
        attr = rules.same_person
        mine_value = dict(approver.attrs).get(attr) if approver is not None else None
        if mine_value:
            for name in people:
                p = v.trust.principal(name)
                if p is not None and dict(p.attrs).get(attr) == mine_value:
                    raise _invalid("four eyes", f"the approver {by} and {name} have the same {attr}: one person")


def _binding(approval, act) -> None:
    for what, mine, theirs in (("agent", approval.agent, act.iss), ("action", approval.action, act.action),
                               ("resource", approval.resource, act.resource),
                               ("payload", approval.sha256, act.sha256), ("grant", approval.grant, act.grant)):
        if mine != theirs:
            raise _invalid("binding", f"the approval is for another {what} than this action's")


def _time(v, rules, approval, act, now: float) -> None:
    if now + v.leeway < approval.nbf:
        raise _invalid("time", f"the approval is valid only from {rfc3339(approval.nbf)}")
    if now - v.leeway >= approval.exp:
        raise _invalid("time", f"the approval expired at {rfc3339(approval.exp)}")
    if approval.exp - approval.iat > rules.max_ttl:
        raise _invalid("time", f"the approval is valid for {approval.exp - approval.iat}s, longer than this verifier's "
                       f"max_ttl of {rules.max_ttl}s")
    if approval.iat > act.iat:
        raise _invalid("time", f"the approval was issued at {rfc3339(approval.iat)}, after the action "
                       f"({rfc3339(act.iat)})")


def approval_doc(approval) -> dict | None:
    """The verdict's ``approval`` field."""
    if approval is None:
        return None
    return {"by": approval.iss, "jti": approval.jti, "exp": rfc3339(approval.exp)}
