"""Identity operations: keygen, import, rotate, revoke, and finding a principal's signing key.

Each operation validates everything before it writes, holds the home lock while it writes, and leaves
the store unchanged when it fails.

Each one that changes state takes ``recorder`` (None records nothing) and records its own audit
event under the home lock once the change is written; it may also take ``then``, a callback run after
the event is recorded, still under the lock (the CLI prints there what must not be lost). When
recording or ``then`` fails, the change is undone, no secret is lost, and the error propagates: a
change and its audit event succeed or fail together (:mod:`agentctl.changes`).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from . import crypto, jws
from .context import Context
from .encoding import jwk, thumbprint
from .errors import DeniedError, ExistsError, KeystoreError, NotFoundError, UsageError
from .models import Key, Principal, Revocation, check_attr, check_role
from .names import check_name
from .secret import encode_secret
from .store import Store
from .changes import Then, undoing
from .events import Event
from .public_keys import parse_public_key, public_formats
from .revoking import revoke_grant, revoke_key, revoke_principal
from .rotation_import import import_rotation
from .signers import Signer, signer_for

if TYPE_CHECKING:
    from .recording import Recorder

__all__ = [
    "Signer",
    "keygen",
    "import_principal",
    "import_rotation",
    "rotate",
    "revoke_principal",
    "revoke_key",
    "revoke_grant",
    "set_roles",
    "signer_for",
    "parse_public_key",
    "public_formats",
]


# --- keygen, import ---------------------------------------------------------------------------

def _replaceable(p: Principal, revs) -> str | None:
    """Why ``keygen --replace`` may not replace ``p``, or None when it may."""
    if p.origin != "local":
        return f"principal {p.name!r} was imported; only its owner can replace its key"
    if p.keystore is not None:
        return f"the secret key of {p.name!r} is kept on this machine; rotate it instead: agentctl rotate {p.name}"
    if revs.principal(p.name):
        return f"principal {p.name!r} is revoked"
    return None


def keygen(
    ctx: Context,
    name: str,
    *,
    roles: tuple[str, ...] = (),
    attrs: tuple[str, ...] = (),
    store_secret: bool = True,
    export_secret: bool = False,
    replace: bool = False,
    recorder: Recorder | None = None,
    then: Then = None,
) -> tuple[Principal, str | None]:
    """Create a local principal with a fresh key. Returns it and, when asked, the exported secret.

    ``replace`` re-creates the key of a principal whose secret was exported and never kept here
    (``--export-secret --no-store``), when that secret never reached its destination: the old key is
    revoked (so nothing it may have signed is accepted), the new one is current, roles and attributes
    stay. Records a ``keygen`` event; ``then(principal, secret)`` runs under the lock once it is
    recorded. When either fails, nothing stays changed.
    """
    check_name(name)
    roles = tuple(dict.fromkeys(check_role(r) for r in roles))
    attr_pairs: dict[str, str] = {}
    for k, v in (check_attr(a) for a in attrs):
        if attr_pairs.setdefault(k, v) != v:
            raise UsageError(f"attribute {k!r} is given twice, as {attr_pairs[k]!r} and {v!r}; give it once")
    if not store_secret and not export_secret:
        raise UsageError("store_secret=False without export_secret would throw the secret key away", hint="add export_secret",
                         param=("store_secret=False", "export_secret"))
    if replace and (store_secret or not export_secret):
        raise UsageError("replace re-creates a key whose secret lives only elsewhere: give it with export_secret and store_secret=False",
                         param=("replace", "store_secret=False", "export_secret"))
    if replace and (roles or attrs):
        raise UsageError("replace keeps the principal's roles and attributes; leave out roles and attrs",
                         hint=f"change roles with: agentctl role add {name} ROLE", param=("replace", "roles", "attrs"))
    store = Store(ctx.home)
    _check_free(store, name, replace)
    keystore = ctx.keystore() if store_secret else None  # fail before generating anything
    seed = crypto.new_seed()
    now = ctx.now()
    public = crypto.public_key(seed)
    with ctx.home.lock():
        existing = _check_free(store, name, replace)  # again: another process may have won a race
        added: list[Revocation] = []
        if existing is not None:
            principal = existing.rotated(public, now, None)
        else:
            principal = Principal(
                name=name,
                origin="local",
                created=now,
                keys=(Key(public, now),),
                roles=roles,
                attrs=tuple(sorted(attr_pairs.items())),
                keystore=keystore.name if keystore else None,
            )
        secret = encode_secret(name, seed) if export_secret else None

        def undo() -> None:
            if existing is not None:
                store.put(existing)
                store.remove_revocations(added)
            else:
                store.delete(name)
            if keystore is not None:
                keystore.delete(name, principal.current.kid)

        if keystore is not None:
            keystore.put(name, principal.current.kid, seed)
        try:
            store.put(principal)
            if existing is not None:
                reason = "replaced by keygen --replace: its exported secret was never delivered"
                added += store.add_revocations([Revocation("key", existing.current.kid, now, reason)])
        except BaseException:
            undo()
            raise
        meta = {"kid": principal.current.kid, "keystore": principal.keystore, "exported": secret is not None,
                "roles": list(principal.roles), "attrs": dict(principal.attrs)}
        if existing is not None:
            meta["replaced"] = existing.current.kid
        undoing(undo, then, principal, secret, recorder=recorder, event=Event("keygen", "ok", principal=name, metadata=meta))
    return principal, secret


def _check_free(store: Store, name: str, replace: bool) -> Principal | None:
    """None when ``name`` is free; the principal to replace under ``replace``; else an error."""
    existing = store.get(name)
    if existing is None:
        if replace:
            raise NotFoundError(f"no principal {name!r} to replace", hint=f"create it: agentctl keygen {name}")
        return None
    why = _replaceable(existing, store.revocations())
    if not replace:
        hint = f"to replace its key, run 'agentctl rotate {name}'"
        if why is None:
            hint = f"if its exported secret never reached its destination: agentctl keygen {name} --replace --export-secret --no-store"
        raise ExistsError(f"principal {name!r} already exists", hint=hint)
    if why is not None:
        raise UsageError(f"cannot replace the key of {name!r}: {why}")
    return existing


def import_principal(ctx: Context, name: str, key_text: str, *, roles: tuple[str, ...] = (), recorder: Recorder | None = None,
                     then: Then = None) -> Principal:
    """Trust a principal made elsewhere, by its public key. Records an ``import`` event;
    ``then(principal)`` as for :func:`keygen`."""
    check_name(name)
    roles = tuple(dict.fromkeys(check_role(r) for r in roles))
    public = parse_public_key(key_text)
    store = Store(ctx.home)
    with ctx.home.lock():
        existing = store.get(name)
        if existing is not None:
            if existing.current.public == public:
                raise ExistsError(f"principal {name!r} is already trusted with this key")
            raise ExistsError(
                f"principal {name!r} already exists with another key",
                hint=f"accept a new key only through its rotation statement: agentctl import {name} --rotation FILE",
            )
        _check_key_is_free(store, thumbprint(public))
        principal = Principal(name=name, origin="imported", created=ctx.now(), keys=(Key(public, ctx.now()),), roles=roles)
        store.put(principal)
        event = Event("import", "ok", principal=name, metadata={"kid": principal.current.kid, "roles": list(roles)})
        undoing(lambda: store.delete(name), then, principal, recorder=recorder, event=event)
    return principal


def _check_key_is_free(store: Store, kid: str) -> None:
    if store.revocations().key(kid):
        raise DeniedError(f"key {kid} is revoked")
    holder = store.find_key(kid)
    if holder is not None:  # one key, one identity: revoking one name must not leave the key trusted under another
        raise ExistsError(f"key {kid} already belongs to {holder[0].name!r}; one key cannot be two principals")


# --- roles ------------------------------------------------------------------------------------


def set_roles(ctx: Context, name: str, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = (), recorder: Recorder | None = None,
              then: Then = None) -> tuple[Principal, tuple[str, ...], tuple[str, ...]]:
    """Add and remove roles of a principal. Returns it and the roles actually added and removed.
    Records a ``role`` event; ``then(principal, added, removed)`` as for :func:`keygen`. A principal
    held from a trust source takes its roles from that source: changing them here is refused."""
    check_name(name)
    add = tuple(dict.fromkeys(check_role(r) for r in add))
    remove = tuple(dict.fromkeys(check_role(r) for r in remove))
    if set(add) & set(remove):
        raise UsageError(f"role {sorted(set(add) & set(remove))[0]!r} is both added and removed")
    store = Store(ctx.home)
    with ctx.home.lock():
        before = store.require(name)
        _check_not_from_source(ctx, name)
        added = tuple(r for r in add if r not in before.roles)
        removed = tuple(r for r in remove if r in before.roles)
        roles = tuple(r for r in before.roles if r not in removed) + added
        updated = replace(before, roles=roles)
        if added or removed:
            store.put(updated)
        op = "remove" if remove and not add else "add" if add and not remove else "change"
        event = Event("role", "ok", principal=name, metadata={"op": op, "added": list(added), "removed": list(removed), "roles": list(roles)})
        undoing(lambda: store.put(before) if (added or removed) else None, then, updated, added, removed, recorder=recorder, event=event)
    return updated, added, removed


def _check_not_from_source(ctx: Context, name: str) -> None:
    from .trust_bundles import source_names

    signer = source_names(ctx.home).get(name)
    if signer is not None:
        raise UsageError(f"principal {name!r} is held from the trust source signed by {signer}; its roles come from that source",
                         hint=f"change its roles where {signer} publishes its trust bundle")


# --- rotation ---------------------------------------------------------------------------------


def rotate(ctx: Context, name: str, *, store_secret: bool = True, export_secret: bool = False, recorder: Recorder | None = None,
           then: Then = None) -> tuple[Principal, str, str | None]:
    """Give a local principal a new current key; return it, the rotation statement (a token) and,
    when asked, the new exported secret. A principal whose secret is not kept here (``--no-store``,
    signing from AGENTCTL_SECRET_KEY) must export its new secret.

    A ``rotate`` event is recorded under the lock once the new key is saved, while the old secret is
    still there; then ``then(principal, statement, secret)`` runs (the caller writes the statement
    and the secret). If either fails, the old key stays current and usable, and the new one is
    forgotten. Only after both succeeded is the old secret removed."""
    store = Store(ctx.home)
    principal = store.require(name)
    if principal.origin != "local":
        raise UsageError(f"principal {name!r} was imported; only its owner can rotate it", hint=f"import its rotation statement: agentctl import {name} --rotation FILE")
    _check_not_revoked(store, name)
    if not store_secret and not export_secret:
        raise UsageError("store_secret=False without export_secret would throw the new secret key away", hint="add export_secret",
                         param=("store_secret=False", "export_secret"))
    old = signer_for(ctx, name)
    if principal.keystore is None and not export_secret:
        raise UsageError(
            f"the secret key of {name!r} is not kept on this machine, so its new one must be exported",
            hint=f"agentctl rotate {name} --export-secret --no-store -o rotation.jwt",
        )
    keystore = ctx.keystore() if store_secret else None
    seed = crypto.new_seed()
    public = crypto.public_key(seed)
    now = ctx.now()
    claims = {
        "iss": name,
        "sub": name,
        "iat": int(now),
        "jti": secrets.token_urlsafe(16),
        "old_kid": old.kid,
        "new_kid": thumbprint(public),
        "new_jwk": jwk(public),
    }
    statement = jws.encode(jws.ROTATION, claims, old.seed)
    with ctx.home.lock():
        current = store.require(name)
        if current.current.kid != old.kid:
            raise UsageError(f"principal {name!r} was rotated by another process meanwhile; try again")
        _check_not_revoked(store, name)  # again, under the lock: a revoke that won the race stands
        updated = current.rotated(public, now, keystore.name if keystore else None)

        def undo() -> None:
            store.put(current)
            if keystore is not None:
                keystore.delete(name, thumbprint(public))

        if keystore is not None:
            keystore.put(name, thumbprint(public), seed)
        try:
            store.put(updated)
        except BaseException:
            if keystore is not None:
                keystore.delete(name, thumbprint(public))
            raise
        secret = encode_secret(name, seed) if export_secret else None
        event = Event("rotate", "ok", principal=name, metadata={"kid": updated.current.kid, "retired": old.kid, "exported": secret is not None})
        undoing(undo, then, updated, statement, secret, recorder=recorder, event=event)
        if old.source != "env" and current.keystore:
            try:
                ctx.keystore(current.keystore).delete(name, old.kid)
            except KeystoreError as e:
                ctx.notify(f"the retired secret key could not be removed from the {current.keystore} keystore: {e.message}")
    return updated, statement, secret


def _check_not_revoked(store: Store, name: str) -> None:
    if store.revocations().principal(name):
        raise DeniedError(f"principal {name!r} is revoked; a revoked principal cannot rotate")
