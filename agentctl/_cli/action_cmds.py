"""Action commands: sign, verify (single and --batch), and the travelling revocation lists."""

from __future__ import annotations

import json
import sys

from ..clock import rfc3339
from ..errors import UsageError, VerificationError
from ..events import Event
from .common import State, check_output, guarded, make_context, read_bytes, read_file, read_input, write_output
from .record import Recorder
from .grant_cmds import parse_leeway
from .output import Output


def _check_audience(audience: str) -> str:
    """An audience to verify for: what delegate and sign accept (printable, no spaces, 1-256 characters)."""
    if not isinstance(audience, str) or not audience or not audience.isprintable() or " " in audience or len(audience) > 256:
        raise UsageError("--audience must be printable text without spaces (at most 256 characters)")
    return audience


def do_sign(state: State, out: Output, as_: str, action: str, resource: str, grant: str | None, data: str | None,
            embed: bool, audience: str | None, ttl: str | None, output_file: str | None) -> int:
    output_file = None if output_file == "-" else output_file  # -o -: stdout, as usual
    def body() -> None:
        from ..durations import parse_duration
        from ..signing import sign_action

        if grant == "-" and data == "-":
            raise UsageError("--grant and --data cannot both read stdin")
        if output_file is not None:  # before anything is signed or recorded
            check_output(output_file)
        ctx = make_context(state, out)
        ttl_s = parse_duration(ttl, what="--ttl") if ttl is not None else None
        grant_text = read_input(grant, "grant").strip() if grant is not None else None
        payload = read_bytes(data, "--data") if data is not None else b""
        rec = Recorder(ctx)
        try:
            token = sign_action(ctx, as_=as_, action=action, resource=resource, grant=grant_text, data=payload,
                                embed=embed, audience=audience, ttl=ttl_s)
        except VerificationError as e:
            rec.record(Event("sign", "deny", principal=as_, action=action, resource=resource, reason=e.reason, metadata={"detail": e.detail}))
            if e.reason == "expired" and grant is not None:  # a CI job's grant ran out: say how to go on
                e.hint = (f"mint a new grant where its issuer's key is, e.g. 'agentctl delegate --to {as_} "
                          f"--scope {action}:{resource} --ttl 1h -o grant.jwt', and pass it to --grant")
            raise
        from ..actions import parse_action

        signed = parse_action(token)
        rec.record(Event("sign", "ok", principal=as_, on_behalf_of=signed.sub, action=action, resource=resource,
                         jtis=(signed.jti,), metadata={"sha256": signed.sha256, "embedded": embed, "grant": grant is not None}))
        if output_file is not None:
            write_output(output_file, token + "\n")
        out.note(f"{as_} signed {action} on {resource}" + (f"; written to {output_file}" if output_file else ""))
        out.result({"ok": True, "action": token}, token if output_file is None else None)

    return guarded(out, body)


class _VerifyRun:
    """One verify invocation's settings, shared by the single and the batch mode."""

    batch = False  # messages name the JSON line's keys too

    def __init__(self, state: State, out: Output, audience, revocations, at, leeway, once) -> None:
        from ..store import Store
        from ..verify import StoreTrust, Verifier

        if audience is not None:
            _check_audience(audience)
        self.ctx = make_context(state, out)
        self.store = Store(self.ctx.home)
        trust = StoreTrust(self.store)
        extra = []
        if revocations is not None:
            from ..revocation_lists import check_version, verify_list

            rl = verify_list(read_file(revocations, "revocation list"), trust)
            check_version(self.ctx, rl)
            extra.append(rl.revocations)
        from ..durations import parse_when

        if once and at is not None:
            raise UsageError("--once records that an action was used now; it does not go with --at")
        now = self.ctx.now()
        self.at = parse_when(at, now) if at is not None else None
        self.verifier = Verifier(trust, clock=self.ctx.clock, leeway=parse_leeway(leeway, self.ctx.home.config.leeway), revocations=extra)
        self.audience = audience
        self.once = once
        self.last_type: str | None = None  # "grant" or "action" once the token's header was read
        self._typs: dict[str, str] = {}  # header segment -> typ: a batch repeats a few headers
        self.recorder = Recorder(self.ctx)

    @staticmethod
    def event(doc: dict, token: str | None = None) -> Event:
        """The audit event of one verdict: never the payload, only what was decided and why. A denial
        names whom the token claimed to be (marked ``claimed``: nothing about it was established), so
        ``audit --agent X`` shows attempts made in X's name too."""
        principal, behalf, jtis = doc.get("agent"), doc.get("on_behalf_of"), (doc["jti"],) if doc.get("jti") else ()
        metadata = {"type": doc.get("type"), "scope": doc.get("scope"), "detail": doc.get("detail")}
        if not doc["ok"] and token and principal is None:
            claims = _claimed(token)
            if claims:
                principal, behalf = claims.get("iss"), claims.get("sub")
                jtis = (claims["jti"],) if claims.get("jti") else ()
                metadata["claimed"] = True
        return Event(
            "verify", "allow" if doc["ok"] else "deny", principal=principal, on_behalf_of=behalf,
            chain=tuple(doc.get("chain") or ()), action=doc.get("action"), resource=doc.get("resource"),
            reason=doc.get("reason"), jtis=jtis, metadata=metadata,
        )

    def check(self, token: str, action=None, resource=None, data: bytes | None = None, audience=None) -> dict:
        from .. import jws
        from ..actions import check_action_name, check_resource

        self.last_type = None
        audience = audience if audience is not None else self.audience
        if audience is not None:
            _check_audience(audience)
        if action is not None:
            check_action_name(action)
        if resource is not None:
            check_resource(resource)
        header = token.partition(".")[0] if isinstance(token, str) else None
        typ = self._typs.get(header)
        if typ is None:  # dispatch only: verify_grant and verify_action parse the whole token again
            typ = jws.peek_typ(token)
            if header is not None and len(self._typs) < 64:
                self._typs[header] = typ
        self.last_type = {jws.GRANT: "grant", jws.ACTION: "action"}.get(typ)
        if typ == jws.GRANT:
            # The token comes from whoever asks; the flags from whoever verifies. A grant where an
            # action is required is a token of the wrong type (step 1): a denial, not a usage error.
            if data is not None:
                raise VerificationError("malformed", "expected an action token (--data binds an action's payload), got a grant")
            if self.once:
                raise VerificationError("malformed", "expected an action token (--once remembers actions), got a grant")
            if (action is None) != (resource is None):  # a grant answers for an action on a resource, both
                given, missing = ("action", "resource") if resource is None else ("resource", "action")
                where = f"--{missing}" + (f' or "{missing}" in a JSON line' if self.batch else "")
                raise VerificationError("scope_denied", f"a grant is checked against an action and a resource; only the {given} is given (add {where})")
            g = self.verifier.verify_grant(token, audience=audience, at=self.at, action=action, resource=resource)
            from ..scopes import allowed
            from ..verify import verdict_doc

            scope = allowed(g.scopes, action, resource) if action and resource else None
            return verdict_doc("grant", agent=g.agent, on_behalf_of=g.on_behalf_of, chain=g.chain.principals,
                               action=action, resource=resource,
                               scope=str(scope) if scope else " ".join(str(s) for s in g.scopes),
                               expires_at=g.expires_at, jti=g.jti)
        if typ == jws.ACTION:
            v = self.verifier.verify_action(token, action=action, resource=resource, data=data, audience=audience, at=self.at)
            if self.once:
                from ..replay import remember_once

                remember_once(self.ctx.home, v.action.jti, v.action.exp, self.ctx.now(), self.verifier.leeway, issuer=v.action.iss)
            return v.verdict()
        raise VerificationError("malformed", f"a {typ} token is neither a grant nor an action")


def _list_refused(state: State, out: Output, e: VerificationError, action, resource) -> dict:
    """The --revocations list was refused (a rollback, a bad or untrusted signature): no token is
    accepted without the revocations asked for. Say so, record it, and return the verdict."""
    from ..verify import denial_doc

    doc = denial_doc(e, action=action, resource=resource)
    out.stderr.write(f"agentctl: denied: {e.reason}: {e.detail}\n")
    Recorder(make_context(state, out)).record(_VerifyRun.event(doc))
    return doc


def _claimed(token: str) -> dict:
    """What an unverified token says of itself (iss, sub, jti), for the record of a denial; {} if unreadable."""
    from ..encoding import EncodingError, b64u_decode, loads_strict
    from ..jws import MAX_TOKEN_BYTES
    from ..names import is_name

    if len(token) > MAX_TOKEN_BYTES:  # refused before parsing, and not parsed for the record either
        return {}
    try:
        claims = loads_strict(b64u_decode(token.strip().split(".")[1]))
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


def _human_verdict(out: Output, doc: dict) -> None:
    if doc["type"] == "action":
        via = f" under {doc['scope']}" if doc["scope"] else " on its own authority"
        out.line(f"ok: {doc['agent']} may {doc['action']} on {doc['resource']} on behalf of {doc['on_behalf_of']}{via}"
                 f" (chain {' > '.join(doc['chain'])}; until {doc['expires_at']})")
    else:
        out.line(f"ok: grant to {doc['agent']} on behalf of {doc['on_behalf_of']}: {doc['scope']}"
                 f" (chain {' > '.join(doc['chain'])}; until {doc['expires_at']})")


def do_verify(state: State, out: Output, source: str | None, action, resource, audience, data, revocations, at,
              leeway, once, batch) -> int:
    if batch:
        return _batch(state, out, source, action, resource, audience, data, revocations, at, leeway, once)

    def body() -> int:
        from ..verify import denial_doc

        if source is None:
            raise UsageError("give a token, a file or - (stdin)", hint="or --batch to read one token per line")
        if [source, data, revocations].count("-") > 1:
            both = [n for n, v in (("the token", source), ("--data", data), ("--revocations", revocations)) if v == "-"]
            raise UsageError(f"{' and '.join(both[:2])} cannot both read stdin")
        try:
            run = _VerifyRun(state, out, audience, revocations, at, leeway, once)
        except VerificationError as e:
            out.result(_list_refused(state, out, e, action, resource))
            return 1
        token = read_input(source, "token").strip()
        payload = read_bytes(data, "--data") if data is not None else None
        try:
            doc = run.check(token, action, resource, payload)
        except VerificationError as e:
            doc = denial_doc(e, run.last_type, action=action, resource=resource)
            run.recorder.record(run.event(doc, token))
            out.stderr.write(f"agentctl: denied: {e.reason}: {e.detail}\n")
            out.result(doc)
            return 1
        run.recorder.record(run.event(doc))  # no decision goes unrecorded: a failed append exits 3
        out.result(doc, lambda: _human_verdict(out, doc))
        return 0

    return guarded(out, body)


_BATCH_KEYS = frozenset({"token", "action", "resource", "audience", "data", "data_b64"})


def _batch(state: State, out: Output, source, action, resource, audience, data, revocations, at, leeway, once) -> int:
    def body() -> int:
        from ..encoding import EncodingError, b64u_decode, loads_strict
        from ..verify import denial_doc

        if source not in (None, "-"):
            raise UsageError("--batch reads stdin; give no token argument (or -)")
        if data is not None:
            raise UsageError("--data does not go with --batch; put \"data\" in each JSON line")
        if revocations == "-":
            raise UsageError("--batch and --revocations cannot both read stdin; give --revocations a file")
        from ..actions import check_action_name, check_resource

        if action is not None:  # the verifier's own flags: a usage error, not a verdict on every line
            check_action_name(action)
        if resource is not None:
            check_resource(resource)
        try:
            run = _VerifyRun(state, out, audience, revocations, at, leeway, once)
        except VerificationError as e:
            _list_refused(state, out, e, action, resource)
            return 1
        run.batch = True
        all_ok, count = True, 0
        recording = run.recorder.enabled
        write = out.stdout.write
        pending: list[str] = []
        events: list = []

        def flush() -> None:  # record a chunk of verdicts before any of them is printed
            run.recorder.record(*events)
            write("".join(pending))
            pending.clear()
            events.clear()
        for lineno, line in enumerate(sys.stdin, 1):
            line = line.strip()
            if not line:
                continue
            count += 1
            run.last_type = None
            a, r, payload, aud, token = action, resource, None, None, None
            try:
                if line.startswith("{"):
                    try:
                        req = loads_strict(line)
                        if set(req) - _BATCH_KEYS or ("data" in req and "data_b64" in req):
                            raise KeyError  # a misspelt key would drop a check: refuse it
                        token = req["token"]
                        # a line may add or change a check, never drop one: null means "as the flag says"
                        a = req["action"] if req.get("action") is not None else a
                        r = req["resource"] if req.get("resource") is not None else r
                        aud = req.get("audience")
                        if "data" in req:
                            payload = req["data"].encode("utf-8")
                        elif "data_b64" in req:
                            payload = b64u_decode(req["data_b64"])
                        if not all(isinstance(x, (str, type(None))) for x in (token, a, r, aud)):
                            raise TypeError
                    except (EncodingError, KeyError, TypeError, AttributeError, UnicodeError):
                        raise VerificationError("malformed", f"line {lineno}: not a token nor a {{\"token\": …}} object") from None
                else:
                    token = line
                doc = run.check(token, a, r, payload, aud)
            except VerificationError as e:
                all_ok = False
                doc = denial_doc(e, run.last_type, action=a, resource=r)
            except UsageError as e:
                all_ok = False
                doc = denial_doc(VerificationError("malformed", e.message), run.last_type, action=a, resource=r)
            doc["line"] = lineno
            if recording:
                events.append(run.event(doc, token if isinstance(token, str) else None))
            pending.append(json.dumps(doc, separators=(",", ":")) + "\n")
            if len(pending) >= 1000:
                flush()
        flush()
        out.stdout.flush()
        if count == 0:
            out.note("no tokens on stdin")
            return 1
        if not all_ok:
            out.note("denied: at least one line did not verify (see its verdict)")
        return 0 if all_ok else 1

    return guarded(out, body)


def do_revocations_export(state: State, out: Output, sign_as: str, output_file: str | None) -> int:
    output_file = None if output_file == "-" else output_file  # -o -: stdout, as usual
    def body() -> None:
        from ..revocation_lists import export_list

        if output_file is not None:  # before the exported version is counted
            check_output(output_file)
        ctx = make_context(state, out)
        rec = Recorder(ctx)
        token, version, count = export_list(ctx, sign_as, then=lambda _t, version, count: rec.record(
            Event("revocations.export", "ok", principal=sign_as, metadata={"version": version, "entries": count})))
        if output_file is not None:
            write_output(output_file, token + "\n")
        out.note(f"revocation list version {version} signed by {sign_as} with {count} entr{'y' if count == 1 else 'ies'}"
                 + (f"; written to {output_file}" if output_file else ""))
        out.result({"ok": True, "list": token, "version": version, "entries": count}, token if output_file is None else None)

    return guarded(out, body)


def do_revocations_import(state: State, out: Output, source: str) -> int:
    def body() -> None:
        from ..revocation_lists import import_list

        ctx = make_context(state, out)
        rec = Recorder(ctx)
        try:
            rl, added = import_list(ctx, read_file(source, "revocation list").strip(), then=lambda rl, added: rec.record(
                Event("revocations.import", "ok", principal=rl.issuer, metadata={"version": rl.version, "added": added})))
        except VerificationError as e:
            rec.record(Event("revocations.import", "deny", reason=e.reason, metadata={"detail": e.detail}))
            raise
        out.note(f"imported revocation list version {rl.version} from {rl.issuer}: {added} new revocation(s)")
        out.result({"ok": True, "issuer": rl.issuer, "version": rl.version, "added": added, "issued": rfc3339(rl.issued)})

    return guarded(out, body)
