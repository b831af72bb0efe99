"""The :class:`Verifier`: runs the declared pipelines of :mod:`.steps` against a :class:`~.trust.Trust`
at a clock's time, and records every decision (allow and deny) with its recorder."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Sequence

from .. import jws
from ..actions import check_action_name, check_audience, check_resource, param_error
from ..clock import Clock, system_clock
from ..errors import UsageError, VerificationError
from ..grants import Chain
from ..models import Revocations
from ..recording import NO_AUDIT
from ..seen import MAX_LEEWAY, SeenStore
from .pipeline import Memo
from .quick import quick_grant
from .revocation_step import nothing_revoked, revoked, revoked_among
from .results import VerifiedAction, VerifiedGrant, denial_doc, verdict_event
from .steps import ACTION_STEPS, GRANT_STEPS, INPUT_STEPS, PREFLIGHT_STEPS, Check
from .trust import StoreTrust, Trust

__all__ = ["Verifier", "NO_AUDIT", "DEFAULT_LEEWAY", "MAX_LEEWAY", "EXPECT"]

DEFAULT_LEEWAY = 60
EXPECT = ("action", "grant")
_CACHE_SIZE = 256  # active grants; a larger memo costs every new token cache misses (bench/verify.py)
_TYP_OF = {"grant": jws.GRANT, "action": jws.ACTION}
_KIND_OF = {jws.GRANT: "grant", jws.ACTION: "action"}


_REQUIRED: Any = object()
_scopes_allowed: Any = None  # agentctl.scopes.allowed, imported on first use


class Verifier:
    """Verifies grants and actions against a :class:`Trust` at a clock's time.

    ``recorder`` is any object with ``record(*events)`` (the home's audit log, a test's list) or
    :data:`NO_AUDIT`; it is required: no decision goes unrecorded by accident. ``once=True`` makes every
    action usable once (step 12) and then requires ``seen``, a :class:`~agentctl.seen.SeenStore`.
    ``leeway`` is the clock skew allowed, 0 to :data:`MAX_LEEWAY` seconds. ``policies`` are the
    policy sets of step 11 (:func:`agentctl.policy.load_sets`), every one of which must allow.
    """

    def __init__(
        self,
        trust: Trust,
        *,
        recorder: Any = _REQUIRED,
        clock: Clock = system_clock,
        leeway: int = DEFAULT_LEEWAY,
        revocations: Iterable[Revocations] = (),
        once: bool = False,
        seen: SeenStore | None = None,
        policies: Sequence[Any] = (),
        approvals: Any = None,
    ) -> None:
        if recorder is _REQUIRED or recorder is None or not callable(getattr(recorder, "record", None)):
            raise UsageError("a Verifier needs a recorder: pass recorder=(an object with record(*events)) or recorder=NO_AUDIT")
        if once and seen is None:
            raise UsageError("a Verifier with once=True needs a seen-store: pass seen=HomeSeenStore(home) or MemorySeenStore()")
        if approvals is not None and seen is None:
            raise UsageError("a Verifier with approval rules needs a seen-store (an approval is single use): pass "
                             "seen=HomeSeenStore(home) or MemorySeenStore()")
        if isinstance(leeway, bool) or not isinstance(leeway, int) or not 0 <= leeway <= MAX_LEEWAY:
            raise UsageError(f"leeway must be 0 to {MAX_LEEWAY} seconds")
        self.trust = trust
        self.recorder = recorder
        self._recording = recorder is not NO_AUDIT and getattr(recorder, "enabled", True) is not False
        self.clock = clock
        self.leeway = leeway
        self.extra_revocations = tuple(revocations)
        self.once = once
        self.seen = seen
        self.policies = tuple(policies)
        self.approvals = approvals  # agentctl.approvals.ApprovalRules, or None
        if not all(callable(getattr(p, "decide", None)) for p in self.policies):
            raise UsageError("policies are policy sets: build them with agentctl.policy.load_sets(...)")
        self._cache: OrderedDict = OrderedDict()
        self._typs: dict = {}
        self._live = type(trust).changed is not Trust.changed  # a trust that can change (a home's): asked at every check

    @classmethod
    def for_home(cls, home, *, recorder: Any = _REQUIRED, policy_files: Sequence[str] = (),
                 policy_query: str | None = None, **kw: Any) -> "Verifier":
        """A verifier of a home: its principals, revocations and authority, its seen-store, and its
        policies (``[policy] files`` of config.toml as one set, then each of ``policy_files`` as a set
        of its own, asked ``policy_query``; ``policies=`` adds sets already loaded)."""
        from ..seen import HomeSeenStore
        from ..store import Store
        from .policy_step import home_policy_sets

        kw.setdefault("leeway", home.config.leeway)
        kw["policies"] = [*home_policy_sets(home, policy_files, policy_query), *kw.get("policies", ())]
        kw.setdefault("approvals", home.config.approvals)
        if kw.get("once") or kw.get("approvals") is not None:
            kw.setdefault("seen", HomeSeenStore(home))
        return cls(StoreTrust(Store(home), refresh=True), recorder=recorder, **kw)

    # --- public ---------------------------------------------------------------------------------
    def verify(
        self, token: object, *, expect: str | None = None, action: str | None = None, resource: str | None = None,
        data: bytes | None = None, audience: str | None = None, at: float | None = None, once: bool | None = None,
        context: dict | None = None,
    ) -> VerifiedGrant | VerifiedAction:
        """Verify a grant or an action, whichever ``token`` is, and record the decision. A denial
        raises :class:`VerificationError` with its verdict document in ``.verdict``. ``context`` (a
        JSON object, ``--context``) goes into the policy input beside the verified fields."""
        if action is not None or resource is not None or audience is not None or (expect is not None and expect not in EXPECT):
            _check_request(action, resource, audience, expect)
        if context is not None:
            from ..policy.input import check_context

            check_context(context)
        once = self.once if once is None else once
        if self._live:
            self._fresh()
        kind = None
        try:
            # With an expected type, that type's pipeline parses the token (and refuses another type
            # in step 1, naming it); without, the header decides.
            typ = _TYP_OF[expect] if expect is not None else self._peek(token)
            kind = _KIND_OF.get(typ)
            if kind is None:
                raise VerificationError("malformed", f"a {typ} token is neither a grant nor an action")
            if kind == "grant":
                # The token comes from whoever asks; the flags from whoever verifies. A grant where an
                # action is required is a token of the wrong type (step 1): a denial, not a usage error.
                if data is not None:
                    raise VerificationError("malformed", "expected an action token (a payload is bound by an action), got a grant")
                if once:
                    raise VerificationError("malformed", "expected an action token (once remembers actions), got a grant")
                result: VerifiedGrant | VerifiedAction = self._grant(token, audience, at, action, resource, context)
            else:
                result = self._action(token, action, resource, data, audience, at, once, context)
        except VerificationError as e:
            doc = denial_doc(e, kind, action=action, resource=resource)
            e.verdict = doc  # type: ignore[attr-defined]
            if self._recording:
                self.recorder.record(verdict_event(doc, token if isinstance(token, str) else None))
            raise
        if self._recording:
            doc = result.verdict(action, resource) if kind == "grant" else result.verdict()  # type: ignore[call-arg]
            accepted = getattr(result, "approval", None)
            self.recorder.record(verdict_event(doc, token if isinstance(token, str) else None,
                                               approval_req=accepted.req if accepted is not None else None))
        return result

    def verify_grant(
        self, token: object, *, audience: str | None = None, at: float | None = None,
        action: str | None = None, resource: str | None = None, context: dict | None = None,
    ) -> VerifiedGrant:
        """Verify a grant; with ``action`` and ``resource``, also that it authorizes exactly that."""
        result = self.verify(token, expect="grant", audience=audience, at=at, action=action, resource=resource, once=False,
                             context=context)
        assert isinstance(result, VerifiedGrant)
        return result

    def verify_action(
        self, token: object, *, action: str | None = None, resource: str | None = None, data: bytes | None = None,
        audience: str | None = None, at: float | None = None, once: bool | None = None, context: dict | None = None,
    ) -> VerifiedAction:
        """Verify a signed action; with ``action``/``resource``/``data``, also that it is exactly that
        action on that resource with that payload."""
        result = self.verify(token, expect="action", action=action, resource=resource, data=data, audience=audience, at=at,
                             once=once, context=context)
        assert isinstance(result, VerifiedAction)
        return result

    def preflight(self, token: object, *, at: float | None = None) -> tuple[Chain, bool]:
        """What a grant's holder can check before using it: steps 1 to 6, except that the root's
        signature is checked only when the root is trusted here. Returns the chain and whether the
        root was checked. Not a decision: nothing is recorded."""
        if self._live:
            self._fresh()
        c = Check(token, self.clock() if at is None else at, "grant", root_optional=True)
        PREFLIGHT_STEPS.run(self, c)
        return c.chain, self.trust.principal(c.chain.root.iss) is not None

    def policy_input(
        self, token: object, *, expect: str | None = None, action: str | None = None, resource: str | None = None,
        data: bytes | None = None, audience: str | None = None, at: float | None = None, context: dict | None = None,
    ) -> dict:
        """The input document step 11 would ask the policies about, after every earlier step held (a
        failure raises :class:`VerificationError`). Not a decision: nothing is recorded, nothing is
        remembered."""
        from ..policy.input import check_context
        from .policy_step import input_document

        if action is not None or resource is not None or audience is not None or expect is not None:
            _check_request(action, resource, audience, expect)
        if context is not None:
            check_context(context)
        typ = _TYP_OF[expect] if expect is not None else self._peek(token)
        kind = _KIND_OF.get(typ)
        if kind is None:
            raise VerificationError("malformed", f"a {typ} token is neither a grant nor an action")
        if kind == "grant" and data is not None:
            raise VerificationError("malformed", "expected an action token (a payload is bound by an action), got a grant")
        if self._live:
            self._fresh()
        now = self.clock() if at is None else at
        c = Check(token, now, kind, action, resource, data, audience, False, self.clock(), context=context)
        INPUT_STEPS.run(self, c)
        return input_document(self, c)

    # --- the runs -------------------------------------------------------------------------------
    def _grant(self, token, audience, at, action, resource, context=None) -> VerifiedGrant:
        now = self.clock() if at is None else at
        if not self.policies and (self.approvals is None or action is None or resource is None):
            # nothing for steps 10 and 11 to decide: a usual grant that holds is verified in one pass
            quick = quick_grant(self, token, now, audience, action, resource)
            if quick is not None:
                return quick
        c = Check(token, now, "grant", action, resource, audience=audience, context=context)
        GRANT_STEPS.run(self, c)
        result = object.__new__(VerifiedGrant)  # every field set, as VerifiedGrant(...) would (frozen, built without its __init__)
        result.__dict__.update(chain=c.chain, at=c.now, agent_known=self._known(c.chain.leaf.delegate), scope=c.scope,
                               audience=audience, policy=c.policy)
        return result

    def _action(self, token, action, resource, data, audience, at, once, context=None) -> VerifiedAction:
        if once and self.seen is None:
            raise UsageError("once needs a seen-store: construct the Verifier with seen=…")
        if once and at is not None:
            raise UsageError("once records that an action was used now; it does not go with a verification time (at)")
        real_now = self.clock()
        c = Check(token, real_now if at is None else at, "action", action, resource, data, audience, once, real_now,
                  context=context)
        ACTION_STEPS.run(self, c)
        act = c.act
        grant = VerifiedGrant(c.chain, c.now, self._known(c.chain.leaf.delegate), c.scope, audience) if c.chain is not None else None
        return VerifiedAction(act, grant, c.scope, c.now, self._known(act.iss), audience, c.policy, c.accepted)

    def _fresh(self) -> None:
        """Forget what the timeless steps found out about every token when the trust changed (a key
        rotated, a role removed, a principal imported or dropped, config.toml edited): they are
        timeless only while the trust stands still."""
        if self.trust.changed():
            self._cache.clear()

    def _known(self, name: str) -> bool:
        return self.trust.principal(name) is not None

    def _seen_store(self) -> SeenStore:
        if self.seen is None:  # an approval travelled to a verifier built without rules: it is still used once
            raise UsageError("an approval is single use: construct the Verifier with seen=…")
        return self.seen

    def _peek(self, token: object) -> str:
        """The type of a presentation's last token, which decides grant or action."""
        if isinstance(token, (bytes, bytearray)) and len(token) <= 65536:
            token = bytes(token).strip().rpartition(b"~")[2]
        elif isinstance(token, str) and len(token) <= 65536:
            token = token.strip().rpartition("~")[2]
        header = token.partition(".")[0] if isinstance(token, str) else None
        typ = self._typs.get(header)
        if typ is None:  # dispatch only: the pipeline parses the whole token
            typ = jws.peek_typ(token)
            if header is not None and len(self._typs) < 64:
                self._typs[header] = typ
        return typ

    def _memo(self, token: object) -> Memo:
        """The memo of a grant token's timeless steps, by its exact bytes (a fresh one for a token too
        large or not text)."""
        key = token if isinstance(token, (str, bytes)) and len(token) <= 65536 else None
        if key is None:
            return Memo()
        memo = self._cache.get(key)
        if memo is None:
            memo = Memo()
            if len(self._cache) >= _CACHE_SIZE:
                try:  # the oldest, in O(1); a Verifier may serve several threads: another may evict it first
                    self._cache.popitem(last=False)
                except KeyError:
                    pass
            self._cache[key] = memo
        return memo

    def _allowed(self, chain: Chain, action: str | None, resource: str | None):
        global _scopes_allowed
        if _scopes_allowed is None:  # imported on first use, once
            from ..scopes import allowed as _scopes_allowed
        if action is None or resource is None:
            if action is None and resource is None:
                raise VerificationError("scope_denied", "a grant is checked against an action and a resource; neither is given")
            given, missing = ("action", "resource") if resource is None else ("resource", "action")
            raise VerificationError("scope_denied", f"a grant is checked against an action and a resource; only the {given} is given, not the {missing}")
        leaf = chain.leaf
        memo = leaf.__dict__.get("_allowed")  # a chain is cached and reused: remember its answers
        if memo is None:
            memo = {}
            object.__setattr__(leaf, "_allowed", memo)
        key = (action, resource)
        if key in memo:
            scope = memo[key]
        else:
            scope = _scopes_allowed(leaf.scopes, action, resource)
            if len(memo) < 4096:
                memo[key] = scope
        if scope is None:
            raise VerificationError("scope_denied", f"{leaf.delegate} may not {action} on {resource} (scope: {leaf.scope_text})")
        return scope

    _revoked_among = revoked_among
    _nothing_revoked = nothing_revoked
    _revoked = revoked


def _check_request(action, resource, audience, expect) -> None:
    """The verifier's own inputs: a bad one is a usage error (exit 2), never a verdict."""
    if action is not None:
        check_action_name(action)
    if resource is not None:
        check_resource(resource)
    if audience is not None:
        check_audience(audience)
    if expect is not None and expect not in EXPECT:
        raise param_error("expect", f"bad expect {expect!r}: use action or grant")
