"""Identity commands: keygen, list, show, pubkey, import, rotate, revoke.

Each ``do_*`` function is the whole command behind its argument parsing, so the Typer commands and the
start-up fast path (``fast.py``) run the same code.
"""

from __future__ import annotations

import json

from ..clock import rfc3339
from ..errors import UsageError
from ..models import Principal, Revocations
from ..errors import VerificationError
from ..events import Event
from ..names import kind_of
from .common import State, guarded, make_context, read_file, write_output
from .output import Output
from .record import Recorder

PUBKEY_FORMATS = ("did", "jwk", "jwks", "b64")


def principal_doc(p: Principal, revs: Revocations) -> dict:
    from ..encoding import did_key

    prev = revs.principal(p.name)
    keys = []
    for k in p.keys:
        krev = revs.key(k.kid)
        status = "revoked" if (prev or krev) else k.status
        kd = {"kid": k.kid, "status": status, "created": rfc3339(k.created), "retired": rfc3339(k.retired) if k.retired else None}
        kd["revoked"] = rfc3339((krev or prev).at) if (krev or prev) else None
        keys.append(kd)
    return {
        "name": p.name,
        "kind": kind_of(p.name),
        "origin": p.origin,
        "status": "revoked" if prev else "active",
        "created": rfc3339(p.created),
        "roles": list(p.roles),
        "attrs": dict(p.attrs),
        "keystore": None if prev else p.keystore,  # revocation removed the secret keys
        "kid": p.current.kid,
        "did": did_key(p.current.public),
        "keys": keys,
        "revoked": {"at": rfc3339(prev.at), "reason": prev.reason} if prev else None,
    }


# --- keygen -----------------------------------------------------------------------------------


def do_keygen(state: State, out: Output, name: str, roles: list[str], attrs: list[str], export_secret: bool, no_store: bool) -> int:
    def body() -> None:
        from ..identity import keygen
        from ..store import Store

        ctx = make_context(state, out)
        rec = Recorder(ctx)
        principal, secret = keygen(ctx, name, roles=tuple(roles), attrs=tuple(attrs), store_secret=not no_store, export_secret=export_secret)
        rec.record(Event("keygen", "ok", principal=principal.name, metadata={
            "kid": principal.current.kid, "keystore": principal.keystore, "exported": secret is not None,
            "roles": list(principal.roles), "attrs": dict(principal.attrs)}))
        doc = principal_doc(principal, Store(ctx.home).revocations())
        where = f"in the {principal.keystore} keystore" if principal.keystore else "nowhere on this machine (exported only)"
        out.note(f"created {principal.name} with key {principal.current.kid}; secret key kept {where}")
        if secret is not None:
            out.note("the exported secret is on stdout: put it in your CI secret store, never in a file or a log")
            out.result({"ok": True, "principal": doc, "secret": secret}, secret)
        else:
            out.result({"ok": True, "principal": doc}, doc["did"])

    return guarded(out, body)


# --- list, show, pubkey -----------------------------------------------------------------------


def do_list(state: State, out: Output) -> int:
    def body() -> None:
        from ..store import Store

        ctx = make_context(state, out)
        store = Store(ctx.home)
        revs = store.revocations()
        docs = [principal_doc(p, revs) for p in store.all()]

        def human() -> None:
            if not docs:
                out.note(f"no principals in {ctx.home.path}; create one with 'agentctl keygen NAME'")
                return
            rows = [
                (d["name"], d["status"], d["origin"], d["kid"][:12] + "…", ",".join(d["roles"]) or "-", d["created"])
                for d in docs
            ]
            out.table(("name", "status", "origin", "key", "roles", "created"), rows)

        out.result({"ok": True, "principals": docs}, human)

    return guarded(out, body)


def do_show(state: State, out: Output, name: str) -> int:
    def body() -> None:
        from ..store import Store

        ctx = make_context(state, out)
        store = Store(ctx.home)
        doc = principal_doc(store.require(name), store.revocations())

        def human() -> None:
            pairs = [
                ("name", doc["name"]),
                ("status", doc["status"] + (f" since {doc['revoked']['at']}" + (f" ({doc['revoked']['reason']})" if doc["revoked"]["reason"] else "") if doc["revoked"] else "")),
                ("origin", doc["origin"]),
                ("created", doc["created"]),
                ("roles", ", ".join(doc["roles"]) or "-"),
                ("attributes", ", ".join(f"{k}={v}" for k, v in doc["attrs"].items()) or "-"),
                ("secret key", doc["keystore"] + " keystore" if doc["keystore"] else ("removed when revoked" if doc["revoked"] else "not on this machine")),
                ("did", doc["did"]),
            ]
            out.fields(pairs)
            out.line()
            rows = [(k["kid"], k["status"], k["created"], k["retired"] or "-", k["revoked"] or "-") for k in reversed(doc["keys"])]
            out.table(("key id", "status", "created", "retired", "revoked"), rows, title="keys, newest first" if out.is_terminal else None)

        out.result({"ok": True, "principal": doc}, human)

    return guarded(out, body)


def do_pubkey(state: State, out: Output, name: str, fmt: str) -> int:
    def body() -> None:
        from ..encoding import b64u_encode, did_key, jwk
        from ..home import Home
        from ..store import Store

        if fmt not in PUBKEY_FORMATS:
            raise UsageError(f"bad --format {fmt!r}: use one of {', '.join(PUBKEY_FORMATS)}")
        principal = Store(Home.resolve(state.home)).require(name)
        public = principal.current.public
        if fmt == "did":
            value: object = did_key(public)
        elif fmt == "b64":
            value = b64u_encode(public)
        elif fmt == "jwk":
            value = jwk(public, kid=True)
        else:
            value = {"keys": [jwk(public, kid=True)]}
        text = value if isinstance(value, str) else json.dumps(value, indent=2)
        out.result({"ok": True, "name": name, "kid": principal.current.kid, "format": fmt, "key": value}, text)

    return guarded(out, body)


# --- import, rotate, revoke -------------------------------------------------------------------


def do_import(state: State, out: Output, name: str, key: str | None, rotation: str | None, roles: list[str]) -> int:
    def body() -> None:
        from ..identity import import_principal, import_rotation
        from ..store import Store

        if (key is None) == (rotation is None):
            raise UsageError("give either a KEY or --rotation FILE", hint="agentctl import NAME KEY, or agentctl import NAME --rotation FILE")
        if rotation is not None and roles:
            raise UsageError("--role goes with a new principal, not with --rotation")
        ctx = make_context(state, out)
        rec = Recorder(ctx)
        if rotation is not None:
            before = Store(ctx.home).require(name).current.kid
            statement = read_file(rotation, "rotation statement")
            try:
                principal = import_rotation(ctx, name, statement)
            except VerificationError as e:
                rec.record(Event("import", "deny", principal=name, reason=e.reason, metadata={"rotation": True, "detail": e.detail}))
                raise
            rec.record(Event("import", "ok", principal=name, metadata={"rotation": True, "kid": principal.current.kid, "retired": before}))
            if principal.current.kid == before:
                out.note(f"{name} already trusts key {principal.current.kid}; nothing changed")
            else:
                out.note(f"{name} now trusts key {principal.current.kid}; key {before} is retired")
        else:
            principal = import_principal(ctx, name, key, roles=tuple(roles))
            rec.record(Event("import", "ok", principal=name, metadata={"kid": principal.current.kid, "roles": list(principal.roles)}))
            out.note(f"imported {name} with key {principal.current.kid}")
        doc = principal_doc(principal, Store(ctx.home).revocations())
        out.result({"ok": True, "principal": doc}, doc["did"])

    return guarded(out, body)


def do_rotate(state: State, out: Output, name: str, output_file: str | None, export_secret: bool = False, no_store: bool = False) -> int:
    def body() -> None:
        from ..identity import rotate
        from ..store import Store

        ctx = make_context(state, out)
        if export_secret and output_file is None:
            raise UsageError("with --export-secret the new secret goes to stdout, so the rotation statement needs -o FILE")
        if output_file is not None:  # check before rotating: the statement must not be lost
            from pathlib import Path

            if Path(output_file).is_dir():
                raise UsageError(f"cannot write {output_file}: it is a directory")
            if not Path(output_file).parent.is_dir():
                raise UsageError(f"cannot write {output_file}: no directory {Path(output_file).parent}")
        rec = Recorder(ctx)
        principal, statement, secret = rotate(ctx, name, store_secret=not no_store, export_secret=export_secret)
        old = [k for k in principal.keys if k.status == "retired"][-1]
        rec.record(Event("rotate", "ok", principal=name, metadata={
            "kid": principal.current.kid, "retired": old.kid, "exported": secret is not None}))
        out.note(f"rotated {name}: new key {principal.current.kid}; key {old.kid} retired (it still verifies what it signed before now)")
        if output_file is not None:
            write_output(output_file, statement + "\n")
            out.note(f"rotation statement written to {output_file}; give it to every machine that trusts {name}: agentctl import {name} --rotation FILE")
        doc = principal_doc(principal, Store(ctx.home).revocations())
        if secret is not None:
            out.note("the new exported secret is on stdout: replace the old one in your CI secret store")
            out.result({"ok": True, "principal": doc, "rotation": statement, "secret": secret}, secret)
        else:
            out.result({"ok": True, "principal": doc, "rotation": statement}, statement if output_file is None else None)

    return guarded(out, body)


def do_revoke(state: State, out: Output, name: str | None, key: str | None, grant: str | None, reason: str) -> int:
    def body() -> None:
        from ..identity import revoke_grant, revoke_key, revoke_principal

        if sum(x is not None for x in (name, key, grant)) != 1:
            raise UsageError("give exactly one of NAME, --key KID or --grant JTI")
        ctx = make_context(state, out)
        rec = Recorder(ctx)
        if name is not None:
            entry, new = revoke_principal(ctx, name, reason)
        elif key is not None:
            entry, new = revoke_key(ctx, key, reason)
        else:
            entry, new = revoke_grant(ctx, grant, reason)
        what = {"principal": "principal", "key": "key", "grant": "grant"}[entry.kind]
        rec.record(Event("revoke", "ok", principal=name, jtis=(entry.id,) if entry.kind == "grant" else (),
                         reason=entry.reason or None, metadata={"kind": entry.kind, "id": entry.id, "new": new}))
        if new:
            out.note(f"revoked {what} {entry.id}; this is permanent")
        else:
            out.note(f"{what} {entry.id} was already revoked at {rfc3339(entry.at)}")
        doc = {"ok": True, "revoked": {"kind": entry.kind, "id": entry.id, "at": rfc3339(entry.at), "reason": entry.reason}, "new": new}
        out.result(doc)

    return guarded(out, body)
