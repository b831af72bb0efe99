"""Verification: one pipeline of steps, first failure wins (SPEC, "Verification").

A :class:`Verifier` holds what it trusts (a :class:`Trust`: principals and revocations, from a home
or given in code) and a clock. ``verify_grant`` returns a :class:`VerifiedGrant` or raises
:class:`~agentctl.errors.VerificationError` with a reason code; there is no ``ok`` flag to forget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from .clock import Clock, rfc3339, system_clock
from .errors import UsageError, VerificationError
from .grants import MAX_CHAIN, Chain, parse_chain
from .models import Principal, Revocations

if TYPE_CHECKING:
    from .actions import ActionToken

__all__ = ["Trust", "StoreTrust", "StaticTrust", "Verifier", "VerifiedGrant", "VerifiedAction", "verdict_doc", "denial_doc"]

DEFAULT_LEEWAY = 60


class Trust(ABC):
    """What a verifier trusts: principals by name, and what is revoked."""

    @abstractmethod
    def principal(self, name: str) -> Principal | None: ...

    @abstractmethod
    def revocations(self) -> Revocations: ...


class StoreTrust(Trust):
    """The principals and revocations of a home (read once per verifier)."""

    def __init__(self, store) -> None:
        self.store = store
        self._principals: dict[str, Principal | None] = {}
        self._revocations: Revocations | None = None

    def principal(self, name: str) -> Principal | None:
        if name not in self._principals:
            self._principals[name] = self.store.get(name)
        return self._principals[name]

    def revocations(self) -> Revocations:
        if self._revocations is None:
            self._revocations = self.store.revocations()
        return self._revocations


class StaticTrust(Trust):
    """Trust given in code: ``StaticTrust({"user:alice": public_key_bytes_or_Principal}, revocations)``."""

    def __init__(self, principals: Mapping[str, "Principal | bytes"], revocations: Revocations | None = None) -> None:
        from . import crypto
        from .models import Key

        self._principals: dict[str, Principal] = {}
        for name, value in principals.items():
            if isinstance(value, (bytes, bytearray)):
                value = Principal(name=name, origin="imported", created=0.0, keys=(Key(crypto.check_public_key(bytes(value)), 0.0),))
            self._principals[name] = value
        self._revocations = revocations or Revocations()

    def principal(self, name: str) -> Principal | None:
        return self._principals.get(name)

    def revocations(self) -> Revocations:
        return self._revocations


@dataclass(frozen=True)
class VerifiedGrant:
    """A grant chain that verified at ``at``."""

    chain: Chain
    at: float

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


@dataclass(frozen=True)
class VerifiedAction:
    """An action that verified at ``at``: who acted, on whose behalf, under which grant and scope."""

    action: "ActionToken"
    grant: VerifiedGrant | None
    scope: object | None
    at: float

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
        return verdict_doc(
            "action", agent=self.agent, on_behalf_of=self.on_behalf_of, chain=self.chain, action=self.action.action,
            resource=self.action.resource, scope=str(self.scope) if self.scope is not None else None,
            expires_at=self.expires_at, jti=self.action.jti,
        )


def verdict_doc(kind: str, *, agent=None, on_behalf_of=None, chain=None, action=None, resource=None, scope=None, expires_at=None, jti=None) -> dict:
    return {
        "ok": True,
        "reason": None,
        "detail": None,
        "type": kind,
        "agent": agent,
        "on_behalf_of": on_behalf_of,
        "chain": list(chain) if chain is not None else None,
        "action": action,
        "resource": resource,
        "scope": scope,
        "expires_at": rfc3339(expires_at) if expires_at is not None else None,
        "jti": jti,
    }


def denial_doc(e: VerificationError, kind: str | None = None, action=None, resource=None) -> dict:
    doc = verdict_doc(kind, action=action, resource=resource) if kind else verdict_doc(None, action=action, resource=resource)
    doc.update(ok=False, reason=e.reason, detail=e.detail)
    return doc


def _fail(reason: str, detail: str) -> VerificationError:
    return VerificationError(reason, detail)


class Verifier:
    """Verifies grants (and, in later steps, actions) against a :class:`Trust` at a clock's time."""

    def __init__(
        self,
        trust: Trust,
        *,
        clock: Clock = system_clock,
        leeway: int = DEFAULT_LEEWAY,
        revocations: Iterable[Revocations] = (),
    ) -> None:
        self.trust = trust
        self.clock = clock
        self.leeway = leeway
        self.extra_revocations = tuple(revocations)
        self._cache: dict = {}

    # --- public ---------------------------------------------------------------------------------
    def verify_grant(
        self, token: object, *, audience: str | None = None, at: float | None = None,
        action: str | None = None, resource: str | None = None,
    ) -> VerifiedGrant:
        """Verify a grant; with ``action`` and ``resource``, also that it authorizes exactly that."""
        now = self.clock() if at is None else at
        chain = self._chain(token, now)  # 1-6
        self._audience(chain, audience)  # 7
        verified = VerifiedGrant(chain, now)
        if action is not None or resource is not None:
            self._allowed(chain, action, resource)
        return verified

    def verify_action(
        self, token: object, *, action: str | None = None, resource: str | None = None, data: bytes | None = None,
        audience: str | None = None, at: float | None = None,
    ) -> VerifiedAction:
        """Verify a signed action (steps 1-8); with ``action``/``resource``/``data``, also that it is
        exactly that action on that resource with that payload."""
        from .actions import parse_action, payload_digest

        now = self.clock() if at is None else at
        act = parse_action(token)  # 1
        grant: VerifiedGrant | None = None
        deferred: VerificationError | None = None
        if act.grant is not None:
            chain, deferred = self._cached(act.grant)  # 1-3 of the grant raise now; 5-6 wait their turn
            leaf = chain.leaf
            if act.kid != leaf.cnf_kid:
                raise _fail("chain_broken", f"the action is signed by key {act.kid}, not by the key the grant was given to")
            if act.iss != leaf.delegate:
                raise _fail("chain_broken", f"the action is by {act.iss}, but the grant was given to {leaf.delegate}")
            if act.sub != leaf.sub:
                raise _fail("chain_broken", f"the action is on behalf of {act.sub}, the grant on behalf of {leaf.sub}")
            self._not_retired(leaf.delegate, leaf.cnf_kid, act.iat, "the action")  # 3
            if not act.token.verifies_with(leaf.cnf):
                raise _fail("bad_signature", f"the signature of {act.iss} on the action does not verify")
            self._times(chain, now)  # 4
            grant = VerifiedGrant(chain, now)
        else:
            principal = self.trust.principal(act.iss)  # 2
            if principal is None:
                raise _fail("untrusted_root", f"{act.iss} is not a local or imported principal, and the action carries no grant")
            if act.sub != act.iss:
                raise _fail("chain_broken", f"{act.iss} acts on behalf of {act.sub} without a grant")
            key = principal.key(act.kid)
            if key is None:
                raise _fail("unknown_key", f"key {act.kid} is not a key of {act.iss}")
            if key.status == "retired" and act.iat > key.retired:  # 3
                raise _fail("bad_signature", f"signed by key {act.kid} of {act.iss} after it was retired at {rfc3339(key.retired)}")
            if not act.token.verifies_with(key.public):
                raise _fail("bad_signature", f"the signature of {act.iss} on the action does not verify")
        if now + self.leeway < act.iat:  # 4
            raise _fail("not_yet_valid", f"the action is dated {rfc3339(act.iat)}, in the future")
        if now - self.leeway >= act.exp:
            raise _fail("expired", f"the action expired at {rfc3339(act.exp)}")
        if deferred is not None:  # 5-6 of the grant
            raise VerificationError(deferred.reason, deferred.detail)
        if grant is None:  # 6 (a grant's chain was checked when cached)
            if self._revoked("principal", act.iss):
                raise _fail("revoked", f"principal {act.iss} is revoked")
            if self._revoked("key", act.kid):
                raise _fail("revoked", f"key {act.kid} is revoked")
        if self._revoked("grant", act.jti):
            raise _fail("revoked", f"action {act.jti} is revoked")
        if grant is not None:  # 7
            self._audience(grant.chain, audience)
        if act.aud is not None:
            if audience is None:
                raise _fail("audience_mismatch", f"the action is only for audience {', '.join(act.aud)}; verify with --audience")
            if audience not in act.aud:
                raise _fail("audience_mismatch", f"the action is for {', '.join(act.aud)}, not {audience}")
        scope = None  # 8
        if grant is not None:
            scope = self._allowed(grant.chain, act.action, act.resource)
        if action is not None and action != act.action:
            raise _fail("scope_denied", f"the token is for action {act.action}, not {action}")
        if resource is not None and resource != act.resource:
            raise _fail("scope_denied", f"the token is for resource {act.resource}, not {resource}")
        if act.data is not None and payload_digest(act.data) != act.sha256:
            raise _fail("payload_mismatch", "the embedded payload does not match its digest")
        if data is not None and payload_digest(data) != act.sha256:
            raise _fail("payload_mismatch", "the payload does not match the digest the agent signed")
        return VerifiedAction(act, grant, scope, now)

    def _chain(self, token: object, now: float | None = None) -> Chain:
        """Steps 1-3, 5 and 6 of a grant, which do not depend on the time: cached by exact bytes. Given
        ``now``, step 4 runs in its place, after 3 and before 5 (first failure wins)."""
        chain, error = self._cached(token)
        if now is not None:
            self._times(chain, now)  # 4
        if error is not None:
            raise VerificationError(error.reason, error.detail)
        return chain

    def _cached(self, token: object) -> tuple[Chain, VerificationError | None]:
        """The grant's chain and its step 5-6 error, if any; a step 1-3 error is raised."""
        key = token if isinstance(token, (str, bytes)) and len(token) <= 65536 else None
        cached = self._cache.get(key) if key is not None else None
        if cached is None:
            cached = self._timeless(token)
            if key is not None:
                self._remember(key, cached)
        chain, error = cached
        if chain is None:
            raise VerificationError(error.reason, error.detail)
        return chain, error

    def _timeless(self, token: object) -> tuple[Chain | None, VerificationError | None]:
        try:
            chain = parse_chain(token)  # 1
            root_key = self._keys(chain)  # 2
            self._signatures(chain, root_key)  # 3
        except VerificationError as e:
            return None, e
        try:
            self._shape(chain)  # 5
            self._revocation(chain)  # 6
        except VerificationError as e:
            return chain, e
        return chain, None

    def preflight(self, token: object, *, at: float | None = None) -> tuple[Chain, bool]:
        """What a grant's holder can check before using it: everything, except that the root's
        signature is checked only when the root is trusted here. Returns the chain and whether the
        root was checked."""
        now = self.clock() if at is None else at
        chain = parse_chain(token)
        root_key = self._keys(chain, root_optional=True)
        self._signatures(chain, root_key)
        self._times(chain, now)
        self._shape(chain)
        self._revocation(chain)
        return chain, root_key is not None

    def _remember(self, key, value) -> None:
        if len(self._cache) >= 1024:
            try:  # a Verifier may serve several threads (a tool server): another may evict the same entry
                self._cache.pop(next(iter(self._cache)), None)
            except (RuntimeError, StopIteration):
                pass
        self._cache[key] = value

    def _allowed(self, chain: Chain, action: str | None, resource: str | None):
        from .scopes import allowed

        if action is None or resource is None:
            raise _fail("scope_denied", "give both an action and a resource to check")
        leaf = chain.leaf
        memo = leaf.__dict__.get("_allowed")  # a chain is cached and reused: remember its answers
        if memo is None:
            memo = {}
            object.__setattr__(leaf, "_allowed", memo)
        key = (action, resource)
        if key in memo:
            scope = memo[key]
        else:
            scope = allowed(leaf.scopes, action, resource)
            if len(memo) < 4096:
                memo[key] = scope
        if scope is None:
            raise _fail("scope_denied", f"{chain.leaf.delegate} may not {action} on {resource} (scope: {chain.leaf.scope_text})")
        return scope

    # --- the pipeline -----------------------------------------------------------------------------
    def _keys(self, chain: Chain, *, root_optional: bool = False):
        root = chain.root
        principal = self.trust.principal(root.iss)
        if principal is None and not root_optional:
            raise _fail("untrusted_root", f"{root.iss} is not a local or imported principal")
        if root.sub != root.iss:
            raise _fail("chain_broken", f"the root grant is signed by {root.iss} on behalf of {root.sub}; a root grant speaks for its signer")
        if len(root.actors) != 1:
            raise _fail("chain_broken", "the root grant's 'act' claim names earlier actors")
        key = principal.key(root.kid) if principal is not None else None
        if key is None and principal is not None:
            raise _fail("unknown_key", f"key {root.kid} is not a key of {root.iss}")
        for i in range(1, len(chain.hops)):
            parent, hop = chain.hops[i - 1], chain.hops[i]
            if hop.kid != parent.cnf_kid:
                raise _fail("chain_broken", f"hop {i + 1} is signed by key {hop.kid}, not by the holder key of its parent grant")
            if hop.iss != parent.delegate:
                raise _fail("chain_broken", f"hop {i + 1} is issued by {hop.iss}, but its parent grant was given to {parent.delegate}")
            if hop.actors[1:] != parent.actors:
                raise _fail("chain_broken", f"hop {i + 1}'s 'act' claim does not extend its parent's")
        return key

    def _signatures(self, chain: Chain, root_key) -> None:
        root = chain.root
        if root_key is None:  # preflight of a holder that does not know the root: check the rest
            pass
        elif root_key.status == "retired" and root.iat > root_key.retired:
            raise _fail("bad_signature", f"signed by key {root.kid} of {root.iss} after it was retired at {rfc3339(root_key.retired)}")
        if root_key is not None and not root.token.verifies_with(root_key.public):
            raise _fail("bad_signature", f"the signature of {root.iss} on the root grant does not verify")
        for i in range(1, len(chain.hops)):
            hop = chain.hops[i]
            self._not_retired(hop.iss, hop.kid, hop.iat, f"hop {i + 1}")
            if not hop.token.verifies_with(chain.hops[i - 1].cnf):
                raise _fail("bad_signature", f"the signature of {hop.iss} on hop {i + 1} does not verify")

    def _not_retired(self, name: str, kid: str, iat: int, what: str) -> None:
        """A holder key that its principal has since retired here verifies only what it signed before."""
        principal = self.trust.principal(name)
        key = principal.key(kid) if principal is not None else None
        if key is not None and key.status == "retired" and iat > key.retired:
            raise _fail("bad_signature", f"{what} is signed by key {kid} of {name} after it was retired at {rfc3339(key.retired)}")

    def _times(self, chain: Chain, now: float) -> None:
        for i, hop in enumerate(chain.hops):
            if now + self.leeway < hop.nbf:
                raise _fail("not_yet_valid", f"hop {i + 1} is valid only from {rfc3339(hop.nbf)}")
            if now - self.leeway >= hop.exp:
                raise _fail("expired", f"hop {i + 1} ({hop.iss} to {hop.delegate}) expired at {rfc3339(hop.exp)}")
        for i in range(1, len(chain.hops)):
            if chain.hops[i].exp > chain.hops[i - 1].exp:
                raise _fail("chain_broken", f"hop {i + 1} outlives its parent (expires {rfc3339(chain.hops[i].exp)}, parent {rfc3339(chain.hops[i - 1].exp)})")

    def _shape(self, chain: Chain) -> None:
        from .scopes import uncovered

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
                wider = uncovered(hop.scopes, parent.scopes)
            except UsageError as e:  # undecidable within the allowance: fail closed
                raise _fail("scope_escalation", f"hop {i + 1}: {e.message}") from None
            if wider is not None:
                s, action, resource = wider
                raise _fail("scope_escalation", f"hop {i + 1} widens scope {s}: it allows {action} on {resource}, which its parent does not")
            if parent.aud is not None and (hop.aud is None or not set(hop.aud) <= set(parent.aud)):
                raise _fail("scope_escalation", f"hop {i + 1} widens the audience of its parent")

    def _revoked(self, kind: str, ident: str):
        for revs in (self.trust.revocations(), *self.extra_revocations):
            r = revs.find(kind, ident)
            if r is not None:
                return r
        return None

    def _revocation(self, chain: Chain) -> None:
        for name in dict.fromkeys(chain.principals):
            if self._revoked("principal", name):
                raise _fail("revoked", f"principal {name} is revoked")
        kids = [chain.root.kid] + [h.cnf_kid for h in chain.hops]
        for kid in kids:
            if self._revoked("key", kid):
                raise _fail("revoked", f"key {kid} is revoked")
        for i, hop in enumerate(chain.hops):
            if self._revoked("grant", hop.jti):
                raise _fail("revoked", f"grant {hop.jti} (hop {i + 1}) is revoked")

    def _audience(self, chain: Chain, audience: str | None) -> None:
        for i, hop in enumerate(chain.hops):
            if hop.aud is None:
                continue
            if audience is None:
                raise _fail("audience_mismatch", f"the grant is only for audience {', '.join(hop.aud)}; verify with --audience")
            if audience not in hop.aud:
                raise _fail("audience_mismatch", f"hop {i + 1} is for {', '.join(hop.aud)}, not {audience}")
