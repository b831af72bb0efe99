"""Delegation commands: delegate, inspect, and verify (of grants; actions join in sign/verify)."""

from __future__ import annotations

from ..clock import rfc3339
from ..durations import format_duration, parse_duration, parse_when
from ..errors import UsageError, VerificationError
from ..events import Event
from .common import State, guarded, make_context, read_input, write_output
from .record import Recorder
from .output import Output


def parse_leeway(text: str | None, default: int) -> int:
    if text is None:
        return default
    if text.strip() in ("0", "0s"):
        return 0
    return parse_duration(text, what="--leeway")


def do_delegate(state: State, out: Output, to: str, scopes: list[str], ttl: str | None, issuer: str | None,
                parent: str | None, audience: str | None, max_depth: int | None, output_file: str | None) -> int:
    def body() -> None:
        from ..delegation import delegate

        if issuer is not None and parent is not None:
            raise UsageError("--from and --parent do not go together: with --parent, the parent's holder signs")
        ctx = make_context(state, out)
        ttl_s = parse_duration(ttl, what="--ttl") if ttl is not None else None
        parent_token = read_input(parent, "parent grant").strip() if parent is not None else None
        rec = Recorder(ctx)
        try:
            token, chain = delegate(ctx, to=to, scopes=scopes, ttl=ttl_s, issuer=issuer, parent=parent_token,
                                    audience=audience, max_depth=max_depth)
        except VerificationError as e:
            rec.record(Event("delegate", "deny", principal=issuer, resource=None, reason=e.reason,
                             metadata={"to": to, "scope": " ".join(scopes), "detail": e.detail, "redelegation": parent is not None}))
            raise
        leaf = chain.leaf
        rec.record(Event("delegate", "ok", principal=leaf.iss, on_behalf_of=leaf.sub, chain=chain.principals,
                         jtis=tuple(h.jti for h in chain.hops), metadata={
                             "to": leaf.delegate, "scope": leaf.scope_text, "expires_at": rfc3339(leaf.exp),
                             "max_depth": leaf.max_depth, "aud": list(leaf.aud) if leaf.aud else None}))
        if output_file is not None:
            write_output(output_file, token + "\n")
        out.note(
            f"{leaf.iss} granted {leaf.delegate} {leaf.scope_text} on behalf of {leaf.sub} until {rfc3339(leaf.exp)}"
            f" ({len(chain.hops)} hop{'s' if len(chain.hops) > 1 else ''}, jti {leaf.jti})"
            + (f"; written to {output_file}" if output_file else "")
        )
        doc = {"ok": True, "grant": token, "jti": leaf.jti, "iss": leaf.iss, "sub": leaf.sub, "agent": leaf.delegate,
               "scope": leaf.scope_text, "expires_at": rfc3339(leaf.exp), "max_depth": leaf.max_depth, "hops": len(chain.hops)}
        out.result(doc, token if output_file is None else None)

    return guarded(out, body)


# --- inspect ----------------------------------------------------------------------------------


def _hop_docs(chain, trust, now: float) -> list[dict]:
    docs = []
    for i, hop in enumerate(chain.hops):
        if i == 0:
            p = trust.principal(hop.iss)
            key = p.key(hop.kid) if p else None
            if p is None:
                sig = f"unknown signer: {hop.iss} is not trusted here"
            elif key is None:
                sig = f"unknown key {hop.kid} for {hop.iss}"
            else:
                sig = "verifies" if hop.token.verifies_with(key.public) else "does not verify"
                if key.status == "retired" and hop.iat > key.retired:
                    sig = "does not verify: signed after the key was retired"
            signed_by = f"{hop.iss}, key {hop.kid}"
        else:
            parent = chain.hops[i - 1]
            if hop.kid != parent.cnf_kid:
                sig = "does not verify: not signed by the parent's holder key"
            else:
                sig = "verifies" if hop.token.verifies_with(parent.cnf) else "does not verify"
            signed_by = f"{hop.iss}, holder key of hop {i}"
        narrowed = None
        if i:
            prev = chain.hops[i - 1].scope_text
            narrowed = "unchanged" if prev == hop.scope_text else f"from {prev}"
        docs.append({
            "hop": i + 1, "iss": hop.iss, "delegate": hop.delegate, "on_behalf_of": hop.sub, "signed_by": signed_by,
            "kid": hop.kid, "signature": sig, "scope": hop.scope_text, "narrowed": narrowed,
            "not_before": rfc3339(hop.nbf), "expires_at": rfc3339(hop.exp), "time_left": format_duration(max(0, hop.exp - now)),
            "expired": now >= hop.exp, "max_depth": hop.max_depth, "aud": list(hop.aud) if hop.aud else None, "jti": hop.jti,
        })
    return docs


def do_inspect(state: State, out: Output, source: str) -> int:
    def body() -> int:
        from .. import jws
        from ..grants import parse_chain
        from ..store import Store
        from ..verify import StoreTrust, Verifier

        ctx = make_context(state, out)
        text = read_input(source, "token").strip()
        typ = jws.peek_typ(text)
        now = ctx.now()
        trust = StoreTrust(Store(ctx.home))
        if typ != jws.GRANT:
            token = jws.decode(text, typ)
            doc = {"ok": True, "type": typ.split("-")[1].split("+")[0], "valid": None, "header": token.header, "claims": token.claims}
            out.result(doc, lambda: _show_generic(out, doc))
            return 0
        chain = parse_chain(text)
        hops = _hop_docs(chain, trust, now)
        verdict: dict = {"valid": True, "reason": None, "detail": None}
        try:
            Verifier(trust, clock=ctx.clock, leeway=ctx.home.config.leeway).check_chain(chain, now, None)
        except VerificationError as e:
            verdict = {"valid": False, "reason": e.reason, "detail": e.detail}
        doc = {"ok": True, "type": "grant", **verdict, "agent": chain.leaf.delegate, "on_behalf_of": chain.root.sub,
               "chain": list(chain.principals), "hops": hops}

        def human() -> None:
            state_line = "valid" if verdict["valid"] else f"NOT VALID: {verdict['reason']}: {verdict['detail']}"
            out.line(f"grant: {' > '.join(chain.principals)}  ({len(hops)} hop{'s' if len(hops) > 1 else ''}; {state_line})")
            for h in hops:
                out.line()
                out.line(f"hop {h['hop']}: {h['iss']} -> {h['delegate']}")
                pairs = [
                    ("on behalf of", h["on_behalf_of"]),
                    ("signed by", h["signed_by"]),
                    ("signature", h["signature"]),
                    ("scope", h["scope"] + (f"  (narrowed {h['narrowed']})" if h["narrowed"] not in (None, "unchanged") else "")),
                    ("valid", f"{h['not_before']} to {h['expires_at']} ({'expired' if h['expired'] else h['time_left'] + ' left'})"),
                    ("re-delegation", f"{h['max_depth']} more hop(s) allowed"),
                    ("audience", ", ".join(h["aud"]) if h["aud"] else "any"),
                    ("jti", h["jti"]),
                ]
                width = max(len(k) for k, _ in pairs)
                for k, v in pairs:
                    out.line(f"  {k.ljust(width)}  {v}")

        out.result(doc, human)
        return 0

    return guarded(out, body)


def _show_generic(out: Output, doc: dict) -> None:
    import json

    out.line(f"{doc['type']} token (inspect shows its contents; it does not vouch for them)")
    out.line("header: " + json.dumps(doc["header"], indent=2))
    out.line("claims: " + json.dumps(doc["claims"], indent=2))
