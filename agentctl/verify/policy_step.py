"""Step 11, policy (SPEC "Policy"): the input document built from what steps 1 to 10 verified, and the
policy sets asked about it, every one of which must allow.

Nothing in the input document comes from what a caller claims except ``context`` (checked by
:func:`agentctl.policy.input.check_context`), which lands beside the verified fields and never replaces
one. The decision, allowed or denied, is described by :func:`policy_doc` for the verdict's ``policy``
field and the audit event: digest, query, engine, result and the input document's SHA-256, so that
``agentctl policy input`` and ``agentctl policy eval`` reproduce it.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from ..errors import VerificationError

__all__ = ["input_document", "run_policies", "policy_doc", "home_policy_sets"]


def _principal_facts(v, name: str) -> tuple[bool, tuple[str, ...], dict]:
    p = v.trust.principal(name)
    if p is None:
        return False, (), {}
    return True, tuple(p.roles), dict(p.attrs)


def input_document(v, c) -> dict:
    """The input document of one verified check ``c`` (a :class:`~agentctl.verify.steps.Check` that
    passed steps 1 to 10)."""
    from ..policy.input import Delegation, Hop, build_input

    chain, act = c.chain, c.act
    delegation = None
    if chain is not None:
        root = chain.root
        _, user_roles, user_attrs = _principal_facts(v, root.sub)
        hops = tuple(Hop(h.iss, h.delegate, tuple(str(s) for s in h.scopes), h.iat, h.exp, h.jti) for h in chain.hops)
        delegation = Delegation(user=root.sub, chain=hops, user_roles=user_roles, user_attrs=user_attrs)
    if act is not None:
        agent, kid = act.iss, act.kid
        action, resource = act.action, act.resource
        token = {"type": "action", "jti": act.jti, "iat": act.iat, "exp": act.exp,
                 "aud": list(act.aud) if act.aud is not None else None}
        payload: dict | None = {"sha256": act.sha256}
    else:
        leaf = chain.leaf
        agent, kid = leaf.delegate, leaf.cnf_kid
        action, resource = c.asked_action, c.asked_resource  # a grant alone: what was asked (null if none)
        token = {"type": "grant", "jti": leaf.jti, "iat": leaf.iat, "exp": leaf.exp,
                 "aud": list(leaf.aud) if leaf.aud is not None else None}
        payload = None
    known, roles, attrs = _principal_facts(v, agent)
    accepted = getattr(c, "accepted", None)  # only an approval step 10 accepted, never one that merely travels
    approval = None
    if accepted is not None:
        from ..policy.input import Approval

        approval = Approval(accepted.iss, accepted.iat, accepted.jti, accepted.note)
    return build_input(
        agent_id=agent, agent_kid=kid, agent_known=known, agent_roles=roles, agent_attrs=attrs,
        action=action, resource_id=resource, delegation=delegation, approval=approval, token=token,
        payload=payload, context=c.context, now=int(c.now),
    )


def _short(value: object) -> object:
    """An engine's result as the verdict shows it: a long non-boolean value is cut to a string."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def policy_doc(sets: Sequence[Any], decisions: Sequence[Any], input_sha: str) -> dict:
    """The verdict's ``policy`` field: the digest of every set asked (in evaluation order), and the
    query, engine and result of the set that decided (the one that denied, else the last), and the
    input document's SHA-256. With several sets, ``sets`` lists each one's own."""
    from ..policy import sets_digest

    asked = list(sets[:len(decisions)])
    last = decisions[-1]
    doc: dict = {"digest": sets_digest(asked), "query": last.query, "engine": last.engine,
                 "result": _short(last.result), "input_sha256": input_sha}
    if len(sets) > 1:
        doc["sets"] = [{"files": list(s.files), "digest": d.digest, "query": d.query, "engine": d.engine,
                        "result": _short(d.result), "allowed": d.allowed} for s, d in zip(asked, decisions)]
    return doc


def run_policies(v, c) -> None:
    """Step 11: ask every set; the first that does not allow denies with ``policy_denied``. The policy
    field is left on ``c.policy`` for the verdict (and on the error, for a denial's verdict)."""
    from ..policy import decide_all, input_sha256

    doc = input_document(v, c)
    digest = input_sha256(doc)
    decisions = decide_all(v.policies, doc)
    c.policy = policy_doc(v.policies, decisions, digest)
    last = decisions[-1]
    if not last.allowed:
        e = VerificationError("policy_denied", last.detail)
        e.policy = c.policy  # type: ignore[attr-defined]
        raise e


def home_policy_sets(home, policies: Sequence[str] = (), query: str | None = None) -> list:
    """The sets a home's verifier asks: ``[policy] files`` of its config.toml as one set (paths
    relative to the home), then each of ``policies`` (``verify --policy FILE``) as a set of its own,
    asked ``query`` (default: the config's query). Compiled once per process."""
    cfg = home.config
    files = [str(home.path / f) for f in cfg.policy_files]
    if not files and not policies:
        return []
    from ..policy import load_sets

    return load_sets(files, cfg.policy_query, cfg.policy_timeout, policies=list(policies), policy_query=query)
