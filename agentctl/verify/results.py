"""What verification returns, and the audit event each decision produces.

A :class:`VerifiedGrant` or :class:`VerifiedAction` is returned only when every step held; a denial
is a :class:`~agentctl.errors.VerificationError`. :func:`verdict_doc`/:func:`denial_doc` give the
SPEC's verdict document, and :func:`verdict_event` the audit event of one verdict, the same for the
CLI and for a tool server on the library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..clock import rfc3339
from ..errors import VerificationError
from ..events import Event
from ..frozen import dataclass
from ..grants import Chain

if TYPE_CHECKING:
    from ..actions import ActionToken

__all__ = ["VerifiedGrant", "VerifiedAction", "verdict_doc", "denial_doc", "verdict_event", "claimed"]


@dataclass(frozen=True)
class VerifiedGrant:
    """A grant chain that verified at ``at``."""

    chain: Chain
    at: float
    agent_known: bool = True
    scope: object | None = None  # the leaf scope that allowed the action asked for, if any
    audience: str | None = None
    policy: dict | None = None  # step 11's decision: digest, query, engine, result, input_sha256

    @property
    def agent(self) -> str:
        return self.chain.leaf.delegate

    @property
    def on_behalf_of(self) -> str:
        return self.chain.root.sub

    @property
    def scopes(self) -> tuple:
        return self.chain.leaf.scopes

    @property
    def expires_at(self) -> int:
        return min(h.exp for h in self.chain.hops)

    @property
    def jti(self) -> str:
        return self.chain.leaf.jti

    @property
    def holder_key(self) -> bytes:
        return self.chain.leaf.cnf

    def verdict(self, action: str | None = None, resource: str | None = None) -> dict:
        memo = self.__dict__.get("_verdict")  # recorded, then shown: built once
        if memo is not None and memo[0] == (action, resource):
            return dict(memo[1])
        doc = self._verdict(action, resource)
        object.__setattr__(self, "_verdict", ((action, resource), doc))
        return dict(doc)

    def _verdict(self, action: str | None, resource: str | None) -> dict:
        scope = str(self.scope) if self.scope is not None else " ".join(str(s) for s in self.scopes)
        return verdict_doc("grant", agent=self.agent, on_behalf_of=self.on_behalf_of, chain=self.chain.principals,
                           action=action, resource=resource, scope=scope, expires_at=self.expires_at, jti=self.jti,
                           agent_known=self.agent_known, audience=self.audience, policy=self.policy)


@dataclass(frozen=True)
class VerifiedAction:
    """An action that verified at ``at``: who acted, on whose behalf, under which grant and scope."""

    action: "ActionToken"
    grant: VerifiedGrant | None
    scope: object | None
    at: float
    agent_known: bool = True
    audience: str | None = None
    policy: dict | None = None  # step 11's decision: digest, query, engine, result, input_sha256
    approval: object | None = None  # the ApprovalToken step 10 accepted

    @property
    def agent(self) -> str:
        return self.action.iss

    @property
    def on_behalf_of(self) -> str:
        return self.action.sub

    @property
    def chain(self) -> tuple[str, ...]:
        return self.grant.chain.principals if self.grant else (self.action.iss,)

    @property
    def expires_at(self) -> int:
        return min(self.action.exp, self.grant.expires_at) if self.grant else self.action.exp

    def verdict(self) -> dict:
        doc = self.__dict__.get("_verdict")  # recorded, then shown: built once
        if doc is None:
            doc = self._verdict()
            object.__setattr__(self, "_verdict", doc)
        return dict(doc)

    def _verdict(self) -> dict:
        return verdict_doc(
            "action", agent=self.agent, on_behalf_of=self.on_behalf_of, chain=self.chain, action=self.action.action,
            resource=self.action.resource, scope=str(self.scope) if self.scope is not None else None,
            expires_at=self.expires_at, jti=self.action.jti, agent_known=self.agent_known, audience=self.audience,
            policy=self.policy, approval=self.approval,
        )


_approval_doc: Any = None  # .approval_step's, imported on first use


def verdict_doc(kind: str | None, *, agent=None, on_behalf_of=None, chain=None, action=None, resource=None, scope=None,
                expires_at=None, jti=None, agent_known=None, audience=None, policy=None, approval=None) -> dict:
    global _approval_doc
    if _approval_doc is None:  # imported on first use, once (.approval_step imports this module)
        from .approval_step import approval_doc as _approval_doc
    doc = {
        "ok": True,
        "reason": None,
        "detail": None,
        "type": kind,
        "agent": agent,
        "agent_known": agent_known,
        "on_behalf_of": on_behalf_of,
        "chain": list(chain) if chain is not None else None,
        "action": action,
        "resource": resource,
        "scope": scope,
        "audience": audience,
        "expires_at": rfc3339(expires_at) if expires_at is not None else None,
        "jti": jti,
        "approval": _approval_doc(approval),
        "policy": dict(policy) if policy is not None else None,
    }
    return doc


def denial_doc(e: VerificationError, kind: str | None = None, action=None, resource=None) -> dict:
    doc = verdict_doc(kind, action=action, resource=resource, policy=getattr(e, "policy", None))
    doc.update(ok=False, reason=e.reason, detail=e.detail)
    return doc


def verdict_event(doc: dict, token: str | None = None, *, approval_req: str | None = None) -> Event:
    """The audit event of one verdict: never the payload, only what was decided and why. A denial
    names whom the token claimed to be (marked ``claimed``: nothing about it was established), so
    ``audit --agent X`` shows attempts made in X's name too. Given the presentation, the event carries
    its SHA-256 (``presentation_sha256``, of the text without outer whitespace), so a disputed event can
    be settled by producing the token."""
    principal, behalf, jtis = doc.get("agent"), doc.get("on_behalf_of"), (doc["jti"],) if doc.get("jti") else ()
    metadata = {"type": doc.get("type"), "scope": doc.get("scope"), "detail": doc.get("detail")}
    if isinstance(token, str):
        import hashlib

        metadata["presentation_sha256"] = hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).hexdigest()
    if doc.get("policy") is not None:  # digest, query, engine, result, input_sha256: reproducible
        metadata["policy"] = doc["policy"]
    if doc.get("approval") is not None:  # who approved, and which request
        metadata["approval"] = {**doc["approval"], "req": approval_req}
    if not doc["ok"] and token and principal is None:
        claims = claimed(token)
        if claims:
            principal, behalf = claims.get("iss"), claims.get("sub")
            jtis = (claims["jti"],) if claims.get("jti") else ()
            metadata["claimed"] = True
    return Event(
        "verify", "allow" if doc["ok"] else "deny", principal=principal, on_behalf_of=behalf,
        chain=tuple(doc.get("chain") or ()), action=doc.get("action"), resource=doc.get("resource"),
        reason=doc.get("reason"), jtis=jtis, metadata=metadata,
    )


def claimed(token: str) -> dict:
    """What an unverified token says of itself (iss, sub, jti), for the record of a denial; {} if unreadable."""
    from ..encoding import EncodingError, b64u_decode, loads_strict
    from ..jws import MAX_TOKEN_BYTES
    from ..names import is_name

    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:  # refused before parsing, and not parsed for the record either
        return {}
    try:
        claims = loads_strict(b64u_decode(token.strip().rpartition("~")[2].split(".")[1]))  # the last token's
    except (EncodingError, IndexError, ValueError):
        return {}
    if not isinstance(claims, dict):
        return {}
    out = {k: claims[k] for k in ("iss", "sub") if is_name(claims.get(k))}
    act = claims.get("act")  # a grant: the agent is its holder (act.sub), not its signer
    if isinstance(act, dict) and is_name(act.get("sub")):
        out["iss"] = act["sub"]
    jti = claims.get("jti")
    if isinstance(jti, str) and 16 <= len(jti) <= 128 and jti.replace("-", "").replace("_", "").isalnum() and jti.isascii():
        out["jti"] = jti
    if "iss" not in out:
        return {}
    return out
