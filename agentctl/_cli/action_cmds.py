"""Action commands: sign, verify (--batch in :mod:`.batch_cmds`), and the travelling revocation lists."""

from __future__ import annotations


from ..clock import rfc3339
from ..errors import UsageError, VerificationError
from .common import State, command, make_context, read_bytes, read_file, read_input
from .target import Target
from .record import Recorder
from .grant_cmds import parse_leeway
from .output import Output
from .params import flag_check


@command
def do_sign(state: State, out: Output, as_: str, action: str, resource: str, grant: str | None, data: str | None,
            embed: bool, audience: str | None, ttl: str | None, output_file: str | None,
            approval: str | None = None) -> None:
    from ..durations import parse_duration
    from ..signing import sign_action

    if [grant, data, approval].count("-") > 1:
        raise UsageError("--grant, --data and --approval cannot both read stdin: give the others a file")
    from ..actions import check_action_name, check_audience, check_resource

    flag_check(check_action_name, action, "action")
    flag_check(check_resource, resource, "resource")
    if audience is not None:
        flag_check(check_audience, audience, "audience")
    target = Target.of(output_file)  # before anything is signed or recorded
    ctx = make_context(state, out)
    ttl_s = parse_duration(ttl, what="--ttl") if ttl is not None else None
    grant_text = read_input(grant, "grant").strip() if grant is not None else None
    payload = read_bytes(data, "--data") if data is not None else b""
    approval_text = read_input(approval, "approval").strip() if approval is not None else None
    try:
        token = sign_action(ctx, as_=as_, action=action, resource=resource, grant=grant_text, data=payload,
                            embed=embed, audience=audience, ttl=ttl_s, recorder=Recorder(ctx), approval=approval_text)
    except VerificationError as e:
        if e.reason == "expired" and grant is not None:  # a CI job's grant ran out: say how to go on
            e.hint = (f"mint a new grant where its issuer's key is, e.g. 'agentctl delegate --to {as_} "
                      f"--scope {action}:{resource} --ttl 1h -o grant.jwt', and pass it to --grant")
        raise
    if not target.to_stdout:
        target.write(token + "\n")
    out.note(f"{as_} signed {action} on {resource}" + ("" if target.to_stdout else f"; written to {target}"))
    out.result({"ok": True, "action": token}, token if target.to_stdout else None)


class _Buffered:
    """A recorder that holds a batch's events until :meth:`flush` records them in one append, before
    the verdicts they belong to are printed."""

    def __init__(self, recorder) -> None:
        self.recorder = recorder
        self.enabled = getattr(recorder, "enabled", True)
        self.events: list = []

    def record(self, *events) -> None:
        self.events.extend(events)

    def flush(self) -> None:
        if self.events:
            self.recorder.record(*self.events)
            self.events.clear()


class _VerifyRun:
    """One verify invocation's settings, shared by the single and the batch mode."""

    def __init__(self, state: State, out: Output, audience, revocations, at, leeway, once, expect, batch=False,
                 policies=(), query=None, context=None) -> None:
        from ..actions import check_audience
        from ..seen import HomeSeenStore
        from ..store import Store
        from ..verify import EXPECT, StoreTrust, Verifier

        if audience is not None:
            flag_check(check_audience, audience, "audience")
        if expect is not None and expect not in EXPECT:
            raise UsageError(f"bad --expect {expect!r}: use action or grant")
        if once and at is not None:
            raise UsageError("--once records that an action was used now; it does not go with --at")
        self.ctx = make_context(state, out)
        leeway_s = parse_leeway(leeway, self.ctx.home.config.leeway)
        self.store = Store(self.ctx.home)
        trust = StoreTrust(self.store, refresh=True)
        self.recorder = Recorder(self.ctx, keep_open=not batch)  # opened before anything is decided: a broken log fails now
        extra = []
        if revocations is not None:
            from ..revocation_lists import check_version, verify_list

            rl = verify_list(read_file(revocations, "revocation list"), trust)
            check_version(self.ctx, rl)
            extra.append(rl.revocations)
        from ..durations import parse_when

        self.at = parse_when(at, self.ctx.now()) if at is not None else None
        self._buffer = _Buffered(self.recorder) if batch else None
        from ..verify.policy_step import home_policy_sets

        sets = home_policy_sets(self.ctx.home, policies or (), query)  # compiled before anything is decided
        self.context = read_context(context) if context is not None else None
        rules = self.ctx.home.config.approvals  # step 10; an approval is single use, so a seen-store with rules
        self.verifier = Verifier(trust, recorder=self._buffer or self.recorder, clock=self.ctx.clock, leeway=leeway_s,
                                 revocations=extra, once=once,
                                 seen=HomeSeenStore(self.ctx.home) if once or rules is not None else None,
                                 policies=sets, approvals=rules)
        self.audience = audience
        self.expect = expect

    @property
    def buffer(self) -> _Buffered:
        """A batch run's recorder: it keeps a chunk's verdicts until they are recorded together."""
        if self._buffer is None:
            raise RuntimeError("only a batch run buffers its events")
        return self._buffer

    def check(self, token: str, action=None, resource=None, data: bytes | None = None, context=None) -> dict:
        """The verdict of one token; a denial raises VerificationError with ``.verdict``. The library
        records the decision."""
        try:
            result = self.verifier.verify(token, expect=self.expect, action=action, resource=resource, data=data,
                                          audience=self.audience, at=self.at,
                                          context=self.context if context is None else context)
        except VerificationError as e:
            if e.reason == "scope_denied" and (action is None) != (resource is None):
                missing = "resource" if resource is None else "action"
                e.hint = f'add --{missing} (in --batch, --{missing} or "{missing}" in the JSON line)'
            raise
        from ..verify import VerifiedGrant

        return result.verdict(action, resource) if isinstance(result, VerifiedGrant) else result.verdict()


def parse_context(text: str, where: str = "--context") -> dict:
    """A ``--context`` document: strict JSON, an object, its ``resource`` an object without ``id``."""
    from ..encoding import EncodingError, loads_strict
    from ..policy.input import check_context

    try:
        doc = loads_strict(text)
    except (EncodingError, ValueError) as e:
        raise UsageError(f"{where} is not JSON: {e}") from None
    try:
        return check_context(doc)
    except UsageError as e:
        raise UsageError(f"{where}: {e.message}", hint=e.hint) from None


def read_context(source: str) -> dict:
    return parse_context(read_file(source, "context"), f"--context {source}")


def _list_refused(state: State, out: Output, e: VerificationError, action, resource) -> dict:
    """The --revocations list was refused (a rollback, a bad or untrusted signature): no token is
    accepted without the revocations asked for. Say so, record it, and return the verdict."""
    from ..verify import denial_doc, verdict_event

    doc = denial_doc(e, action=action, resource=resource)
    out.stderr.write(f"agentctl: denied: {e.reason}: {e.detail}\n")
    Recorder(make_context(state, out)).record(verdict_event(doc))
    return doc


_TOKEN_SHAPE = None


def _token_argument(source: str) -> str:
    """The token to verify: from stdin, a file, or the argument itself when it is token-shaped (one or
    more ``~``-joined tokens of three base64url segments). Anything else names no file and is no token:
    a usage error (exit 2), never a denial."""
    import re

    global _TOKEN_SHAPE
    text = read_input(source, "token")
    if source == "-" or text is not source:
        return text.strip()
    if _TOKEN_SHAPE is None:
        _TOKEN_SHAPE = re.compile(r"[^.~\s]*\.[^.~\s]*\.[^.~\s]*(?:~[^.~\s]*\.[^.~\s]*\.[^.~\s]*)*")
    if not _TOKEN_SHAPE.fullmatch(source.strip()):
        shown = source if len(source) <= 60 else source[:57] + "..."
        raise UsageError(f"{shown!r} is neither a file nor a token", hint="give the token itself, a file holding it, or - for stdin")
    return text.strip()


def _human_verdict(out: Output, doc: dict) -> None:
    if doc["type"] == "action":
        via = f" under {doc['scope']}" if doc["scope"] else " on its own authority"
        approved = f"; approved by {doc['approval']['by']}" if doc.get("approval") else ""
        out.line(f"ok: {doc['agent']} may {doc['action']} on {doc['resource']} on behalf of {doc['on_behalf_of']}{via}"
                 f" (chain {' > '.join(doc['chain'])}; until {doc['expires_at']}{approved})")
    else:
        out.line(f"ok: grant to {doc['agent']} on behalf of {doc['on_behalf_of']}: {doc['scope']}"
                 f" (chain {' > '.join(doc['chain'])}; until {doc['expires_at']})")


@command
def do_verify(state: State, out: Output, source: str | None, action, resource, audience, data, revocations, at,
              leeway, once, batch, expect=None, *, policies=(), query=None, context=None) -> int | None:
    if batch:
        from .batch_cmds import do_batch

        return do_batch(state, out, source, action, resource, audience, data, revocations, at, leeway, once, expect,
                        policies, query, context)

    from ..actions import check_action_name, check_resource

    if source is None:
        raise UsageError("give a token, a file or - (stdin)", hint="or --batch to read one token per line")
    if query is not None and not policies:
        raise UsageError("--query goes with --policy: it names the rule each --policy file is asked",
                         hint="set [policy] query in config.toml for the configured policy")
    if [source, data, revocations, context].count("-") > 1:
        both = [n for n, v in (("the token", source), ("--data", data), ("--revocations", revocations),
                               ("--context", context)) if v == "-"]
        raise UsageError(f"{' and '.join(both[:2])} cannot both read stdin")
    if action is not None:
        flag_check(check_action_name, action, "action")
    if resource is not None:
        flag_check(check_resource, resource, "resource")
    try:
        run = _VerifyRun(state, out, audience, revocations, at, leeway, once, expect, policies=policies, query=query,
                         context=context)
    except VerificationError as e:
        out.verdict(_list_refused(state, out, e, action, resource), e)
        return 1
    token = _token_argument(source)
    payload = read_bytes(data, "--data") if data is not None else None
    try:
        doc = run.check(token, action, resource, payload)  # the library records the decision
    except VerificationError as e:
        out.stderr.write(f"agentctl: denied: {e.reason}: {e.detail}\n")
        if e.hint:
            out.stderr.write(f"agentctl: hint: {e.hint}\n")
        out.verdict(e.verdict, e)  # type: ignore[attr-defined]
        return 1
    out.result(doc, lambda: _human_verdict(out, doc))
    return 0



@command
def do_revocations_export(state: State, out: Output, sign_as: str, output_file: str | None) -> None:
    from ..revocation_lists import export_list
    from .trust_cmds import signed_export

    signed_export(state, out, output_file, export_list, sign_as, "revocation list", "list", "entries")


@command
def do_revocations_import(state: State, out: Output, source: str) -> None:
    from ..revocation_lists import import_list

    ctx = make_context(state, out)
    rec = Recorder(ctx)
    rl, added = import_list(ctx, read_file(source, "revocation list").strip(), recorder=rec)
    out.note(f"imported revocation list version {rl.version} from {rl.issuer}: {added} new revocation(s)")
    out.result({"ok": True, "issuer": rl.issuer, "version": rl.version, "added": added, "issued": rfc3339(rl.issued)})
