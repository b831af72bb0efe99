"""The steps of verification, one small class each, and the declared lists that run them
(SPEC, "Verification"; docs/token-format.md renders the same list).

Each step has a part for the grant chain (:meth:`Step.grant`, memoized per token when the step is
``timeless``) and a part for the action itself (:meth:`Step.action`). :data:`GRANT_STEPS`,
:data:`ACTION_STEPS` and :data:`PREFLIGHT_STEPS` are the declarations; nothing else decides the order.
"""

from __future__ import annotations


from ..clock import rfc3339
from ..errors import UsageError, VerificationError
from ..grants import MAX_CHAIN
from ..presentation import parse, parse_grants
from ..actions import payload_digest
from .approval_step import check_approval
from .check import Check
from .key_rules import known_key, not_retired
from .pipeline import Memo, Pipeline, Step
from .revocation_step import Revocation
from .trust import key_for

__all__ = ["Check", "GRANT_STEPS", "ACTION_STEPS", "PREFLIGHT_STEPS", "INPUT_STEPS", "STEPS"]


def _fail(reason: str, detail: str) -> VerificationError:
    return VerificationError(reason, detail)


class WellFormed(Step):
    number, name, title = 1, "well_formed", "Well-formed"
    reasons = ("malformed", "unsupported", "chain_broken")

    def run(self, v, c: Check) -> None:
        def chains(text: str, parts: list[str]):  # a grant prefix met before is not parsed again
            memo = v._memo(text) if not c.root_optional else Memo()
            c.memo = memo if not c.root_optional else None
            c.grant_token = text
            if memo.chain is None:
                error = memo.outcomes.get(self.name)
                if error is not None:
                    raise VerificationError(error.reason, error.detail)
                try:
                    memo.chain = parse_grants(parts)
                except VerificationError as e:
                    memo.outcomes[self.name] = e
                    raise
                memo.outcomes[self.name] = None
            return memo.chain

        p = parse(c.token, expect=c.kind, chains=chains)
        if p.approval is not None:  # its shape here; step 10 verifies it
            from ..approvals import approval_from

            c.approval = approval_from(p.approval)
        c.act, c.chain = p.action, p.chain


class Keys(Step):
    number, name, title = 2, "keys", "Keys"
    reasons = ("unknown_key", "untrusted_root", "chain_broken")
    timeless = True

    def grant(self, v, c: Check) -> None:
        chain = c.chain
        root = chain.root
        principal = v.trust.principal(root.iss)
        if principal is None and not c.root_optional:
            raise _fail("untrusted_root", f"{root.iss} is not a local or imported principal")
        if root.sub != root.iss:
            raise _fail("chain_broken", f"the root grant is signed by {root.iss} on behalf of {root.sub}; a root grant speaks for its signer")
        if len(root.actors) != 1:
            raise _fail("chain_broken", "the root grant's 'act' claim names earlier actors")
        if principal is not None:
            key_for(v.trust, root.iss, root.kid)
        for i in range(1, len(chain.hops)):
            parent, hop = chain.hops[i - 1], chain.hops[i]
            if hop.kid != parent.cnf_kid:
                raise _fail("chain_broken", f"hop {i + 1} is signed by key {hop.kid}, not by the holder key of its parent grant")
            if hop.iss != parent.delegate:
                raise _fail("chain_broken", f"hop {i + 1} is issued by {hop.iss}, but its parent grant was given to {parent.delegate}")
            if hop.actors[1:] != parent.actors:
                raise _fail("chain_broken", f"hop {i + 1}'s 'act' claim does not extend its parent's")
        for i, hop in enumerate(chain.hops):
            known_key(v, hop.delegate, lambda hop=hop: hop.cnf_kid, hop.iat, f"hop {i + 1}")

    def action(self, v, c: Check) -> None:
        act = c.act
        if c.chain is not None:
            leaf = c.chain.leaf
            if act.kid != leaf.cnf_kid:
                raise _fail("chain_broken", f"the action is signed by key {act.kid}, not by the key the grant was given to")
            if act.iss != leaf.delegate:
                raise _fail("chain_broken", f"the action is by {act.iss}, but the grant was given to {leaf.delegate}")
            if act.sub != leaf.sub:
                raise _fail("chain_broken", f"the action is on behalf of {act.sub}, the grant on behalf of {leaf.sub}")
            known_key(v, act.iss, act.kid, act.iat, "the action")
            return
        if v.trust.principal(act.iss) is None:
            raise _fail("untrusted_root", f"{act.iss} is not a local or imported principal, and the action carries no grant")
        if act.sub != act.iss:
            raise _fail("chain_broken", f"{act.iss} acts on behalf of {act.sub} without a grant")
        key_for(v.trust, act.iss, act.kid)


class Signatures(Step):
    number, name, title = 3, "signatures", "Signatures"
    reasons = ("bad_signature",)
    timeless = True

    def grant(self, v, c: Check) -> None:
        chain = c.chain
        root = chain.root
        if v.trust.principal(root.iss) is not None:  # else a preflight of a holder that does not know the root
            key = key_for(v.trust, root.iss, root.kid, root.iat)
            if not root.token.verifies_with(key.public):
                raise _fail("bad_signature", f"the signature of {root.iss} on the root grant does not verify")
        for i in range(1, len(chain.hops)):
            hop = chain.hops[i]
            not_retired(v, hop.iss, hop.kid, hop.iat, f"hop {i + 1}")
            if not hop.token.verifies_with(chain.hops[i - 1].cnf):
                raise _fail("bad_signature", f"the signature of {hop.iss} on hop {i + 1} does not verify")

    def action(self, v, c: Check) -> None:
        act = c.act
        if c.chain is not None:
            not_retired(v, act.iss, act.kid, act.iat, "the action")
            public = c.chain.leaf.cnf
        else:
            public = key_for(v.trust, act.iss, act.kid, act.iat).public
        if not act.token.verifies_with(public):
            raise _fail("bad_signature", f"the signature of {act.iss} on the action does not verify")


class Time(Step):
    number, name, title = 4, "time", "Time"
    reasons = ("expired", "not_yet_valid", "chain_broken")

    def grant(self, v, c: Check) -> None:
        hops, now, leeway = c.chain.hops, c.now, v.leeway
        for i, hop in enumerate(hops):
            if now + leeway < hop.nbf:
                raise _fail("not_yet_valid", f"hop {i + 1} is valid only from {rfc3339(hop.nbf)}")
            if now - leeway >= hop.exp:
                raise _fail("expired", f"hop {i + 1} ({hop.iss} to {hop.delegate}) expired at {rfc3339(hop.exp)}")
        for i in range(1, len(hops)):
            if hops[i].exp > hops[i - 1].exp:
                raise _fail("chain_broken", f"hop {i + 1} outlives its parent (expires {rfc3339(hops[i].exp)}, parent {rfc3339(hops[i - 1].exp)})")

    def action(self, v, c: Check) -> None:
        act = c.act
        if c.now + v.leeway < act.iat:
            raise _fail("not_yet_valid", f"the action is dated {rfc3339(act.iat)}, in the future")
        if c.now - v.leeway >= act.exp:
            raise _fail("expired", f"the action expired at {rfc3339(act.exp)}")


class ChainShape(Step):
    number, name, title = 5, "chain", "Chain"
    reasons = ("chain_broken", "scope_escalation")
    timeless = True

    def grant(self, v, c: Check) -> None:
        chain = c.chain
        n = len(chain.hops)
        if n > MAX_CHAIN:
            raise _fail("chain_broken", f"the chain has {n} hops; at most {MAX_CHAIN}")
        for i, hop in enumerate(chain.hops):
            below = n - 1 - i
            if below > hop.max_depth:
                raise _fail("chain_broken", f"hop {i + 1} allows {hop.max_depth} further delegation(s), the chain has {below} below it")
            if i and hop.sub != chain.hops[i - 1].sub:
                raise _fail("chain_broken", f"hop {i + 1} acts on behalf of {hop.sub}, its parent on behalf of {chain.hops[i - 1].sub}")
        for i in range(1, n):
            parent, hop = chain.hops[i - 1], chain.hops[i]
            try:  # one decision per hop, under one work allowance
                wider = _uncovered(hop.scopes, parent.scopes)
            except UsageError as e:  # undecidable within the allowance: fail closed
                raise _fail("scope_escalation", f"hop {i + 1}: {e.message}") from None
            if wider is not None:
                s, action, resource = wider
                raise _fail("scope_escalation", f"hop {i + 1} widens scope {s}: it allows {action} on {resource}, which its parent does not")
            if parent.aud is not None and (hop.aud is None or not set(hop.aud) <= set(parent.aud)):
                raise _fail("scope_escalation", f"hop {i + 1} widens the audience of its parent")


def _uncovered(child: tuple, parent: tuple):
    """:func:`agentctl.scope_cover.uncovered` of two parsed scope claims, remembered by the claims
    themselves (parse_scopes gives the same tuple for the same text): the entry holds both, so their
    ids cannot be reused while it is kept."""
    known = _COVER.get((id(child), id(parent)))
    if known is not None and known[0] is child and known[1] is parent:
        return known[2]
    from ..scope_cover import uncovered  # on a miss only: a cold 1-hop verify never loads it

    wider = uncovered(child, parent)  # raises UsageError (undecidable): not remembered
    if len(_COVER) >= 4096:
        _COVER.clear()
    _COVER[(id(child), id(parent))] = (child, parent, wider)
    return wider


_COVER: dict = {}


class Audience(Step):
    number, name, title = 7, "audience", "Audience"
    reasons = ("audience_mismatch",)

    def grant(self, v, c: Check) -> None:
        audience = c.audience
        for i, hop in enumerate(c.chain.hops):
            if hop.aud is None:
                continue
            if audience is None:
                raise _fail("audience_mismatch", f"the grant is only for audience {', '.join(hop.aud)}; the verifier names no audience")
            if audience not in hop.aud:
                raise _fail("audience_mismatch", f"hop {i + 1} is for {', '.join(hop.aud)}, not {audience}")
        if c.act is None and audience is not None and c.chain.leaf.aud is None:
            raise _fail("audience_mismatch", f"the grant names no audience; this verifier requires {audience}")

    def action(self, v, c: Check) -> None:
        act, audience = c.act, c.audience
        if act.aud is not None:
            if audience is None:
                raise _fail("audience_mismatch", f"the action is only for audience {', '.join(act.aud)}; the verifier names no audience")
            if audience not in act.aud:
                raise _fail("audience_mismatch", f"the action is for {', '.join(act.aud)}, not {audience}")
        elif audience is not None:
            raise _fail("audience_mismatch", f"the action names no audience; this verifier requires {audience}")


class Authority(Step):
    number, name, title = 8, "authority", "Authority"
    reasons = ("scope_escalation", "scope_denied")
    timeless = True

    def grant(self, v, c: Check) -> None:
        if c.root_optional and v.trust.principal(c.chain.root.iss) is None:
            return  # preflight: the holder cannot judge a root it does not know
        root = c.chain.root
        authority = v.trust.authority(root.iss)
        try:
            wider = authority.covers(root.scopes)
        except UsageError as e:
            raise _fail("scope_escalation", f"the root grant's scope cannot be compared with the authority of {root.iss}: {e.message}") from None
        if wider is not None:
            s, action, resource = wider
            raise _fail("scope_escalation", f"{root.iss} has no authority for scope {s} (it would allow {action} on {resource}): {authority.rule}")

    def action(self, v, c: Check) -> None:
        act = c.act
        if c.chain is not None:
            return
        authority = v.trust.authority(act.iss)
        if authority.allows(act.action, act.resource) is None:
            raise _fail("scope_denied", f"{act.iss} has no authority of its own for {act.action} on {act.resource}, and the action carries no grant: {authority.rule}")


class Request(Step):
    number, name, title = 9, "action", "Action"
    reasons = ("scope_denied", "payload_mismatch")

    def grant(self, v, c: Check) -> None:
        if c.act is not None:
            c.scope = v._allowed(c.chain, c.act.action, c.act.resource)
        elif c.asked_action is not None or c.asked_resource is not None:
            c.scope = v._allowed(c.chain, c.asked_action, c.asked_resource)

    def action(self, v, c: Check) -> None:
        act = c.act
        if c.asked_action is not None and c.asked_action != act.action:
            raise _fail("scope_denied", f"the token is for action {act.action}, not {c.asked_action}")
        if c.asked_resource is not None and c.asked_resource != act.resource:
            raise _fail("scope_denied", f"the token is for resource {act.resource}, not {c.asked_resource}")
        if act.data is not None and payload_digest(act.data) != act.sha256:
            raise _fail("payload_mismatch", "the embedded payload does not match its digest")
        if c.data is not None and payload_digest(c.data) != act.sha256:
            raise _fail("payload_mismatch", "the payload does not match the digest the agent signed")


class Approval(Step):
    """Whenever an action is named, every approval that travels is verified, and a required one must be
    there (SPEC, "Approvals"; :mod:`.approval_step`)."""

    number, name, title = 10, "approval", "Approval"
    reasons = ("approval_required", "approval_invalid")

    def run(self, v, c: Check) -> None:
        check_approval(v, c)


class Policy(Step):
    """Every policy set the verifier holds must allow, asked about the input document built from what
    the earlier steps verified (SPEC, "Policy"; :mod:`.policy_step`)."""

    number, name, title = 11, "policy", "Policy"
    reasons = ("policy_denied",)

    def run(self, v, c: Check) -> None:
        if v.policies:
            from .policy_step import run_policies

            run_policies(v, c)


class Once(Step):
    number, name, title = 12, "once", "Once"
    reasons = ("replayed",)

    def action(self, v, c: Check) -> None:
        if c.once:
            v._seen_store().remember(c.act.iss, c.act.jti, c.act.exp, c.real_now)
        approval = c.accepted
        if approval is not None:  # an approval is single use, with or without once
            try:
                v._seen_store().remember(approval.iss, approval.jti, approval.exp, c.real_now or c.now)
            except VerificationError as e:
                if e.reason != "replayed":
                    raise
                raise _fail("replayed", f"approval {approval.jti} by {approval.iss} was already used") from None


STEPS = (WellFormed(), Keys(), Signatures(), Time(), ChainShape(), Revocation(), Audience(), Authority(), Request(),
         Approval(), Policy(), Once())
_BY_NAME = {s.name: s for s in STEPS}

#: A grant, alone: every step but once (a grant is not used up).
GRANT_STEPS = Pipeline("grant", [s for s in STEPS if s.name != "once"])
#: The timeless steps of a grant, in order (what :mod:`.quick` runs as the steps themselves).
TIMELESS_GRANT_STEPS = tuple(s for s in GRANT_STEPS.steps if s.timeless)
#: An action, with the grant chain it carries: all twelve.
ACTION_STEPS = Pipeline("action", STEPS)
#: What ``policy input`` runs before it builds the input document: every step before the policy.
INPUT_STEPS = Pipeline("input", [s for s in STEPS if s.number < Policy.number])
#: What a grant's holder checks before using it (delegate --parent, sign --grant): steps 1 to 6 of the
#: chain, the root's key only where the root is known here. Authority is the verifier's to judge.
PREFLIGHT_STEPS = Pipeline("preflight", [_BY_NAME[n] for n in ("well_formed", "keys", "signatures", "time", "chain", "revocation")])
