"""Delegation commands: delegate, inspect, and verify (of grants; actions join in sign/verify)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ..clock import rfc3339
from ..durations import format_duration, parse_duration
from ..errors import UsageError, VerificationError
from .common import State, command, make_context, read_input
from .target import Target
from .record import Recorder
from .output import Output

if TYPE_CHECKING:
    from ..actions import ActionToken
    from ..grants import Chain


def parse_leeway(text: str | None, default: int) -> int:
    """``--leeway``: a duration of at most 10m (SPEC); more is a usage error."""
    from ..verify import MAX_LEEWAY

    if text is None:
        return default
    if text.strip() in ("0", "0s"):
        return 0
    leeway = parse_duration(text, what="--leeway")
    if leeway > MAX_LEEWAY:
        raise UsageError(f"--leeway {text} is more than 10m", hint="a leeway covers clock skew; it is at most 10m")
    return leeway


@command
def do_delegate(state: State, out: Output, to: str, scopes: list[str], ttl: str | None, issuer: str | None,
                parent: str | None, audience: str | None, max_depth: int | None, output_file: str | None) -> None:
    from ..delegation import delegate

    if issuer is not None and parent is not None:
        raise UsageError("--from and --parent do not go together: with --parent, the parent's holder signs")
    if audience is not None:
        from ..actions import check_audience
        from .params import flag_check

        flag_check(check_audience, audience, "audience")
    target = Target.of(output_file)  # before anything is minted or recorded
    ctx = make_context(state, out)
    ttl_s = parse_duration(ttl, what="--ttl") if ttl is not None else None
    parent_token = read_input(parent, "parent grant").strip() if parent is not None else None
    try:
        token, chain = delegate(ctx, to=to, scopes=scopes, ttl=ttl_s, issuer=issuer, parent=parent_token,
                                audience=audience, max_depth=max_depth, recorder=Recorder(ctx))
    except VerificationError as e:
        if e.reason == "expired" and parent is not None:
            e.hint = "the parent grant ran out: get a new one from its issuer ('agentctl delegate' on their machine), then re-delegate"
        raise
    leaf = chain.leaf
    if not target.to_stdout:
        target.write(token + "\n")
    out.note(
        f"{leaf.iss} granted {leaf.delegate} {leaf.scope_text} on behalf of {leaf.sub} until {rfc3339(leaf.exp)}"
        f" ({len(chain.hops)} hop{'s' if len(chain.hops) > 1 else ''}, jti {leaf.jti})"
        + ("" if target.to_stdout else f"; written to {target}")
    )
    doc = {"ok": True, "grant": token, "jti": leaf.jti, "iss": leaf.iss, "sub": leaf.sub, "agent": leaf.delegate,
           "scope": leaf.scope_text, "expires_at": rfc3339(leaf.exp), "max_depth": leaf.max_depth, "hops": len(chain.hops)}
    out.result(doc, token if target.to_stdout else None)


# --- inspect ----------------------------------------------------------------------------------


def _root_signature(hop, trust) -> tuple[bool | None, str]:
    from ..verify import key_for

    if trust.principal(hop.iss) is None:
        return None, f"unknown: {hop.iss} is not trusted here"
    try:
        key = key_for(trust, hop.iss, hop.kid)
    except VerificationError:
        return False, f"unknown key {hop.kid} for {hop.iss}"
    if not hop.token.verifies_with(key.public):
        return False, "does not verify"
    try:
        key_for(trust, hop.iss, hop.kid, hop.iat)
    except VerificationError:
        when = f" at {rfc3339(key.retired)}" if key.retired is not None else ""
        return False, f"does not count: signed after the key was retired{when}"
    return True, "verifies"


def _narrowing(parent, hop) -> list[dict]:
    """How each of a hop's scopes stands to its parent's: unchanged, narrowed from one of them, or wider."""
    from ..scopes import covers, witness

    docs = []
    for s in hop.scopes:
        doc = {"scope": str(s), "from": None, "how": "unchanged"}
        if parent is None:
            doc["how"] = "granted"
        elif s not in parent.scopes:
            try:  # the verifier's decision first; then, when covered, one parent scope that covers it alone
                w = witness(s, parent.scopes)
                doc["from"] = None if w else next((str(p) for p in parent.scopes if covers(p, s)), None)
            except UsageError:
                doc["how"] = "not comparable with the parent's (too complex)"
            else:
                if w is not None:
                    doc["how"] = f"WIDER than the parent's: would allow {w[0]} on {w[1]}"
                else:
                    doc["how"] = "narrowed" if doc["from"] else "narrowed (covered by several of the parent's)"
        else:
            doc["from"] = str(s)
        docs.append(doc)
    return docs


def _hop_docs(chain, trust, now: float) -> list[dict]:
    docs = []
    for i, hop in enumerate(chain.hops):
        parent = chain.hops[i - 1] if i else None
        if parent is None:
            ok, sig = _root_signature(hop, trust)
            signed_by = f"{hop.iss}, key {hop.kid}"
        else:
            if hop.kid != parent.cnf_kid:
                ok, sig = False, "does not verify: not signed by the parent's holder key"
            else:
                ok = hop.token.verifies_with(parent.cnf)
                sig = "verifies" if ok else "does not verify"
            signed_by = f"{hop.iss}, holder key of hop {i}"
        narrowed = None
        if parent is not None:
            narrowed = "unchanged" if parent.scope_text == hop.scope_text else f"from {parent.scope_text}"
        docs.append({
            "hop": i + 1, "iss": hop.iss, "delegate": hop.delegate, "on_behalf_of": hop.sub, "signed_by": signed_by,
            "kid": hop.kid, "signature": sig, "signature_verifies": ok, "scope": hop.scope_text, "narrowed": narrowed,
            "scopes": _narrowing(parent, hop),
            "not_before": rfc3339(hop.nbf), "expires_at": rfc3339(hop.exp), "time_left": format_duration(max(0, hop.exp - now)),
            "expired": now >= hop.exp, "max_depth": hop.max_depth, "aud": list(hop.aud) if hop.aud else None, "jti": hop.jti,
        })
    return docs


def _show_hops(out: Output, hops: list[dict]) -> None:
    for h in hops:
        out.line()
        out.line(f"hop {h['hop']}: {h['iss']} -> {h['delegate']}")
        scopes = [f"{d['scope']}  ({d['how']}{' from ' + d['from'] if d['how'] == 'narrowed' else ''})" for d in h["scopes"]]
        pairs = [
            ("on behalf of", h["on_behalf_of"]),
            ("signed by", h["signed_by"]),
            ("signature", h["signature"]),
            *(("scope" if i == 0 else "", text) for i, text in enumerate(scopes)),
            ("valid", f"{h['not_before']} to {h['expires_at']} ({'expired' if h['expired'] else h['time_left'] + ' left'})"),
            ("re-delegation", f"{h['max_depth']} more hop(s) allowed"),
            ("audience", ", ".join(h["aud"]) if h["aud"] else "any"),
            ("jti", h["jti"]),
        ]
        width = max(len(k) for k, _ in pairs)
        for k, v in pairs:
            out.line(f"  {k.ljust(width)}  {v}")


@command
def do_inspect(state: State, out: Output, source: str) -> int | None:
    """Show a token. Its verdict is the one ``verify TOKEN`` gives (the same Verifier call, at the same
    time), so inspect never calls a token valid that verify would refuse."""

    from .. import jws
    from ..grants import parse_chain
    from ..store import Store
    from ..verify import NO_AUDIT, StoreTrust, Verifier

    ctx = make_context(state, out)
    text = read_input(source, "token").strip()
    now = ctx.now()
    trust = StoreTrust(Store(ctx.home))
    verifier = Verifier(trust, recorder=NO_AUDIT, clock=ctx.clock, leeway=ctx.home.config.leeway)  # shows, decides nothing
    action: ActionToken | None = None
    chain: Chain | None = None
    try:
        typ = jws.peek_typ(text.rpartition("~")[2])  # a presentation: its last token says what it is
        if typ == jws.GRANT:
            chain = parse_chain(text)
        elif typ == jws.ACTION:
            from ..presentation import parse

            shown = parse(text, expect="action")  # each token of the presentation, parsed once
            action, chain = cast("ActionToken", shown.action), cast("Chain | None", shown.chain)
        else:
            token = jws.decode(text, typ)
    except VerificationError as e:
        out.stderr.write(f"agentctl: denied: {e.reason}: {e.detail}\n")
        out.verdict({"ok": False, "type": None, "valid": False, "reason": e.reason, "detail": e.detail, "hops": []}, e)
        return 1
    if typ not in (jws.GRANT, jws.ACTION):  # shown as it is; verify takes only grants and actions
        doc = {"ok": True, "type": typ.split("-")[1].split("+")[0], "valid": False, "reason": "malformed",
               "detail": f"a {typ} token is neither a grant nor an action", "header": token.header, "claims": token.claims}
        out.result(doc, lambda: _show_generic(out, doc))
        return 0
    verdict: dict = {"valid": True, "reason": None, "detail": None}
    try:
        if action is None:
            verifier.verify_grant(text, at=now)
        else:
            verifier.verify_action(text, at=now)
    except VerificationError as e:
        verdict = {"valid": False, "reason": e.reason, "detail": e.detail}
    hops = _hop_docs(chain, trust, now) if chain is not None else []
    state_line = "valid" if verdict["valid"] else f"NOT VALID: {verdict['reason']}: {verdict['detail']}"
    if action is None:
        assert chain is not None  # a grant: parsed above
        doc = {"ok": True, "type": "grant", **verdict, "agent": chain.leaf.delegate, "on_behalf_of": chain.root.sub,
               "chain": list(chain.principals), "hops": hops}
        title = f"grant: {' > '.join(chain.principals)}  ({len(hops)} hop{'s' if len(hops) > 1 else ''}; {state_line})"
    else:
        doc = {"ok": True, "type": "action", **verdict, "agent": action.iss, "on_behalf_of": action.sub,
               "chain": list(chain.principals) if chain is not None else [action.iss], "action": action.action,
               "resource": action.resource, "issued_at": rfc3339(action.iat), "expires_at": rfc3339(action.exp),
               "aud": list(action.aud) if action.aud else None, "payload_sha256": action.sha256, "jti": action.jti,
               "hops": hops}
        via = f"under a grant of {len(hops)} hop{'s' if len(hops) > 1 else ''}" if chain is not None else "on its own authority"
        title = (f"action: {action.iss} does {action.action} on {action.resource} on behalf of {action.sub}, {via}"
                 f"  ({state_line})\n  valid {doc['issued_at']} to {doc['expires_at']}; jti {action.jti}")

    def human() -> None:
        out.line(title)
        _show_hops(out, hops)

    out.result(doc, human)
    return 0


def _show_generic(out: Output, doc: dict) -> None:
    import json

    out.line(f"{doc['type']} token (inspect shows its contents; it does not vouch for them)")
    out.line("header: " + json.dumps(doc["header"], indent=2))
    out.line("claims: " + json.dumps(doc["claims"], indent=2))
