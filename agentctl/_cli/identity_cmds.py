"""Identity commands: keygen, list, show, pubkey, import, rotate, revoke, role.

Each ``do_*`` function is the whole command behind its argument parsing, so the Typer commands and the
start-up fast path (``fast.py``) run the same code.
"""

from __future__ import annotations

import json

from ..clock import rfc3339
from ..errors import UsageError
from ..models import Principal, Revocations
from ..names import kind_of
from .common import State, command, make_context, read_file
from .target import Target
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
        by = krev or prev
        kd["revoked"] = rfc3339(by.at) if by else None
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


def _emit(out: Output, what: str, doc: dict, human: object) -> None:
    """Print a result that must not be lost (a secret, a rotation statement) and make sure it left:
    a failure here undoes the change, and the library records that (see :func:`agentctl.identity.keygen`)."""
    from ..errors import OperationalError

    try:
        out.result(doc, human)  # type: ignore[arg-type]
        out.stdout.flush()
    except (OSError, ValueError) as e:  # a closed stdout, a reader that went away, a full disk
        why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise OperationalError(f"cannot write {what} to stdout ({why}); nothing was changed") from None


@command
def do_keygen(state: State, out: Output, name: str, roles: list[str], attrs: list[str], export_secret: bool, no_store: bool,
              replace: bool = False) -> None:
    from ..identity import keygen
    from ..store import Store

    ctx = make_context(state, out)
    rec = Recorder(ctx)

    def then(principal: Principal, secret: str | None) -> None:
        doc = principal_doc(principal, Store(ctx.home).revocations())
        if secret is None:
            _emit(out, "the new principal", {"ok": True, "principal": doc}, doc["did"])
        else:
            _emit(out, "the exported secret", {"ok": True, "principal": doc, "secret": secret}, secret)

    principal, secret = keygen(ctx, name, roles=tuple(roles), attrs=tuple(attrs), store_secret=not no_store,
                               export_secret=export_secret, replace=replace, recorder=rec, then=then)
    where = f"in the {principal.keystore} keystore" if principal.keystore else "nowhere on this machine (exported only)"
    out.note(f"created {principal.name} with key {principal.current.kid}; secret key kept {where}")
    if replace:
        out.note(f"the old key of {name} is revoked: run 'agentctl revocations export' for machines that imported it")
    if secret is not None:
        out.note("the exported secret is on stdout: put it in your CI secret store, never in a file or a log")
        if no_store:
            out.note(f"no copy stays here: if it did not reach its destination, run: agentctl keygen {name} --replace --export-secret --no-store")


# --- list, show, pubkey -----------------------------------------------------------------------


@command
def do_list(state: State, out: Output) -> None:
    from ..store import Store

    ctx = make_context(state, out)
    store = Store(ctx.home)
    revs = store.revocations()
    docs = [principal_doc(p, revs) for p in store.all()]
    rule, authority = _authority(ctx.home, store, docs)

    def human() -> None:
        if not docs:
            out.note(f"no principals in {ctx.home.path}; create one with 'agentctl keygen NAME'")
            return
        rows = [
            (d["name"], d["status"], d["origin"], d["kid"][:12] + "…", ",".join(d["roles"]) or "-",
             _authority_text(authority[d["name"]]), d["created"])
            for d in docs
        ]
        out.table(("name", "status", "origin", "key", "roles", "authority", "created"), rows)
        out.note(f"authority rule in force: {rule} (config.toml)")

    out.result({"ok": True, "principals": docs, "authority_rule": rule, "authority": authority}, human)


def _authority(home, store, docs: list[dict]) -> tuple[str, dict]:
    """The rule in force and, by principal name, the authority its roles give here (SPEC: show and
    list name the rule in force)."""
    from ..verify import StoreTrust

    trust = StoreTrust(store)
    config = home.config
    defined = {name for name, _ in config.roles}
    out = {}
    for d in docs:
        a = trust.authority(d["name"])
        out[d["name"]] = {"rule": config.authority, "everything": a.everything,
                          "scopes": [] if a.everything else [str(s) for s in a.scopes],
                          "defined_roles": [r for r in d["roles"] if r in defined], "detail": a.rule}
    return config.authority, out


def _authority_text(a: dict) -> str:
    if a["everything"]:
        return "every scope"
    return " ".join(a["scopes"]) or "none"


@command
def do_show(state: State, out: Output, name: str) -> None:
    from ..store import Store

    ctx = make_context(state, out)
    store = Store(ctx.home)
    doc = principal_doc(store.require(name), store.revocations())
    rule, by_name = _authority(ctx.home, store, [doc])
    authority = by_name[doc["name"]]

    def human() -> None:
        pairs = [
            ("name", doc["name"]),
            ("status", doc["status"] + (f" since {doc['revoked']['at']}" + (f" ({doc['revoked']['reason']})" if doc["revoked"]["reason"] else "") if doc["revoked"] else "")),
            ("origin", doc["origin"]),
            ("created", doc["created"]),
            ("roles", ", ".join(f"{r} ({'defined' if r in authority['defined_roles'] else 'label'})"
                                for r in doc["roles"]) or "-"),
            ("authority", _authority_text(authority)),
            ("rule", authority["detail"]),
            ("attributes", ", ".join(f"{k}={v}" for k, v in doc["attrs"].items()) or "-"),
            ("secret key", doc["keystore"] + " keystore" if doc["keystore"] else ("removed when revoked" if doc["revoked"] else "not on this machine")),
            ("did", doc["did"]),
        ]
        out.fields(pairs)
        out.line()
        rows = [(k["kid"], k["status"], k["created"], k["retired"] or "-", k["revoked"] or "-") for k in reversed(doc["keys"])]
        out.table(("key id", "status", "created", "retired", "revoked"), rows, title="keys, newest first" if out.is_terminal else None)

    out.result({"ok": True, "principal": doc, "authority_rule": rule, "authority": authority}, human)



@command
def do_pubkey(state: State, out: Output, name: str, fmt: str, all_keys: bool = False) -> None:
    from ..encoding import b64u_encode, did_key, jwk
    from ..home import Home
    from ..store import Store

    if fmt not in PUBKEY_FORMATS:
        raise UsageError(f"bad --format {fmt!r}: use one of {', '.join(PUBKEY_FORMATS)}")
    if all_keys and fmt != "jwks":
        raise UsageError("--all goes with --format jwks: one key set with every key and its validity")
    store = Store(Home.resolve(state.home))
    principal = store.require(name)
    public = principal.current.public
    if all_keys:
        value: object = {"keys": key_set(principal, store.revocations())}
    elif fmt == "did":
        value = did_key(public)
    elif fmt == "b64":
        value = b64u_encode(public)
    elif fmt == "jwk":
        value = jwk(public, kid=True)
    else:
        value = {"keys": [jwk(public, kid=True)]}
    text = value if isinstance(value, str) else json.dumps(value, indent=2)
    out.result({"ok": True, "name": name, "kid": principal.current.kid, "format": fmt, "key": value}, text)


def key_set(p: Principal, revs: Revocations) -> list[dict]:
    """Every key of ``p`` that still verifies something, newest first, each with its validity: ``iat``
    when it became current and, for a retired key, ``exp`` when it was retired (it verifies only what
    it signed before then). Revoked keys are left out: they verify nothing."""
    from ..encoding import jwk

    if revs.principal(p.name):
        return []
    keys = []
    for k in reversed(p.keys):
        if revs.key(k.kid):
            continue
        doc = jwk(k.public, kid=True)
        doc["iat"] = int(k.created)
        if k.retired is not None:
            doc["exp"] = int(k.retired)
        keys.append(doc)
    return keys


# --- import, rotate, revoke, role -------------------------------------------------------------


@command
def do_import(state: State, out: Output, name: str, key: str | None, rotation: str | None, roles: list[str]) -> None:
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
        principal = import_rotation(ctx, name, statement, recorder=rec)
        if principal.current.kid == before:
            out.note(f"{name} already trusts key {principal.current.kid}; nothing changed")
        else:
            out.note(f"{name} now trusts key {principal.current.kid}; key {before} is retired")
    else:
        assert key is not None
        principal = import_principal(ctx, name, key, roles=tuple(roles), recorder=rec)
        out.note(f"imported {name} with key {principal.current.kid}")
    doc = principal_doc(principal, Store(ctx.home).revocations())
    out.result({"ok": True, "principal": doc}, doc["did"])


@command
def do_rotate(state: State, out: Output, name: str, output_file: str | None, export_secret: bool = False, no_store: bool = False) -> None:
    from ..identity import rotate
    from ..store import Store

    target = Target(output_file)
    to_file = not target.to_stdout
    if export_secret and not to_file:
        raise UsageError("with --export-secret the new secret goes to stdout, so the rotation statement needs -o FILE")
    ctx = make_context(state, out)
    target.check()  # before rotating: the statement must not be lost
    rec = Recorder(ctx)

    def then(principal: Principal, statement: str, secret: str | None) -> None:
        try:
            if to_file:
                target.write(statement + "\n")
            doc = principal_doc(principal, Store(ctx.home).revocations())
            if secret is not None:
                _emit(out, "the new exported secret", {"ok": True, "principal": doc, "rotation": statement, "secret": secret}, secret)
            else:
                _emit(out, "the rotation statement", {"ok": True, "principal": doc, "rotation": statement}, None if to_file else statement)
        except BaseException:
            target.undo()
            raise

    principal, _statement, secret = rotate(ctx, name, store_secret=not no_store, export_secret=export_secret, recorder=rec, then=then)
    old = [k for k in principal.keys if k.status == "retired"][-1]
    out.note(f"rotated {name}: new key {principal.current.kid}; key {old.kid} retired (it still verifies what it signed before now)")
    if to_file:
        out.note(f"rotation statement written to {target}; give it to every machine that trusts {name}: agentctl import {name} --rotation FILE")
    if secret is not None:
        out.note("the new exported secret is on stdout: replace the old one in your CI secret store")


@command
def do_revoke(state: State, out: Output, name: str | None, key: str | None, grant: str | None, reason: str) -> None:
    from ..identity import revoke_grant, revoke_key, revoke_principal

    if sum(x is not None for x in (name, key, grant)) != 1:
        raise UsageError("give exactly one of NAME, --key KID or --jti JTI")
    ctx = make_context(state, out)
    rec = Recorder(ctx)
    if name is not None:
        entry, new = revoke_principal(ctx, name, reason, recorder=rec)
    elif key is not None:
        entry, new = revoke_key(ctx, key, reason, recorder=rec)
    else:
        assert grant is not None
        entry, new = revoke_grant(ctx, grant, reason, recorder=rec)
    what = {"principal": "principal", "key": "key", "grant": "grant"}[entry.kind]
    if new:
        out.note(f"revoked {what} {entry.id}; this is permanent")
    else:
        out.note(f"{what} {entry.id} was already revoked at {rfc3339(entry.at)}")
    doc = {"ok": True, "revoked": {"kind": entry.kind, "id": entry.id, "at": rfc3339(entry.at), "reason": entry.reason}, "new": new}
    out.result(doc)


@command
def do_role(state: State, out: Output, op: str, name: str, roles: list[str]) -> None:
    """``role add|remove NAME ROLE…``: change a principal's roles, audited."""
    from ..identity import set_roles
    from ..store import Store

    if not roles:
        raise UsageError(f"give at least one ROLE to {op}")
    ctx = make_context(state, out)
    add, remove = (tuple(roles), ()) if op == "add" else ((), tuple(roles))
    principal, added, removed = set_roles(ctx, name, add=add, remove=remove, recorder=Recorder(ctx))
    changed = added or removed
    if changed:
        out.note(f"{'added' if op == 'add' else 'removed'} role {', '.join(changed)} {'to' if op == 'add' else 'from'} {name}; roles now: {', '.join(principal.roles) or '-'}")
    else:
        out.note(f"{name} {'already has' if op == 'add' else 'has none of'} these roles; nothing changed")
    doc = principal_doc(principal, Store(ctx.home).revocations())
    out.result({"ok": True, "principal": doc, "added": list(added), "removed": list(removed)})
