"""Identity operations: keygen, import, rotate, revoke, and finding a principal's signing key.

Each operation validates everything before it writes, holds the home lock while it writes, and leaves
the store unchanged when it fails.

Each one that changes state takes ``then``: a callback run under the home lock once the change is
written (the CLI records the audit event there, and prints what must not be lost). When ``then``
raises, the change is undone, no secret is lost, and the error propagates: a change and its audit
event succeed or fail together.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from . import crypto, jws
from .context import Context
from .encoding import EncodingError, b64u_decode, did_key, jwk, loads_strict, public_from_did_key, public_from_jwk, thumbprint
from .errors import DeniedError, ExistsError, KeystoreError, NotFoundError, UsageError, VerificationError
from .models import Key, Principal, Revocation, check_attr, check_jti, check_kid, check_role
from .names import check_name
from .secret import decode_secret, encode_secret
from .store import Store
from .values import is_time

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


@dataclass(frozen=True)
class Signer:
    """A principal's current secret key, ready to sign."""

    name: str
    seed: bytes = field(repr=False)
    source: str  # "env", "keyring" or "file"

    @property
    def public(self) -> bytes:
        return crypto.public_key(self.seed)

    @property
    def kid(self) -> str:
        return thumbprint(self.public)


def _checked_public(raw: bytes, what: str) -> bytes:
    try:
        return crypto.check_public_key(raw)
    except crypto.InvalidKey as e:
        raise UsageError(f"refused {what}: {e}") from None


def parse_public_key(text: str, base: Path | None = None) -> bytes:
    """A public key given as did:key, a JWK (inline or in a file) or base64url; validated as a point."""
    text = text.strip()
    if text.startswith("did:"):
        did, hash_, fragment = text.partition("#")
        # did:key:z6Mk…#z6Mk… (a verification method id) names the key of its DID, and only that
        if hash_ and fragment != did[len("did:key:"):]:
            raise UsageError("bad did:key: its #fragment names another key than the DID itself")
        try:
            return _checked_public(public_from_did_key(did), "did:key")
        except EncodingError as e:
            raise UsageError(f"bad did:key: {e}") from None
    if text.startswith("{"):
        data = text
    else:
        path = Path(text) if base is None else base / text
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except (OSError, ValueError):  # too long or a NUL: no file name, so the key itself
            is_dir = is_file = False
        if is_dir:
            raise UsageError(f"cannot read {path}: it is a directory")
        if path.suffix.lower() in (".json", ".jwk") or is_file:
            try:
                data = path.read_text("utf-8")
            except FileNotFoundError:
                raise NotFoundError(f"no such file: {path}") from None
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise UsageError(f"cannot read {str(path)[:200]}: {getattr(e, 'strerror', None) or e}") from None
            if not data.strip():
                raise UsageError(f"bad JWK: {path} is empty")
        else:
            try:
                raw = b64u_decode(text)
            except EncodingError as e:
                raise UsageError(f"bad public key: not a did:key, a JWK file or base64url ({e})") from None
            if len(raw) != 32:
                raise UsageError(f"bad public key: base64url of {len(raw)} bytes, an Ed25519 key is 32")
            return _checked_public(raw, "public key")
    try:
        doc = loads_strict(data)
        if isinstance(doc, dict) and "keys" in doc:  # a JWKS with one key
            keys = doc["keys"]
            if not isinstance(keys, list) or len(keys) != 1:
                raise EncodingError("a JWKS given to import must hold exactly one key")
            doc = keys[0]
        return _checked_public(public_from_jwk(doc), "JWK")
    except EncodingError as e:
        raise UsageError(f"bad JWK: {e}") from None


def public_formats(public: bytes) -> dict:
    return {"did": did_key(public), "jwk": jwk(public, kid=True), "b64": jwk(public)["x"], "kid": thumbprint(public)}


# --- keygen, import ---------------------------------------------------------------------------

Then = Callable[..., None] | None


def _undoing(undo: Callable[[], None], then: Then, *result: object) -> None:
    """Run ``then(*result)``; when it raises, run ``undo`` and let the error go on."""
    if then is None:
        return
    try:
        then(*result)
    except BaseException:
        undo()
        raise


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
    then: Then = None,
) -> tuple[Principal, str | None]:
    """Create a local principal with a fresh key. Returns it and, when asked, the exported secret.

    ``replace`` re-creates the key of a principal whose secret was exported and never kept here
    (``--export-secret --no-store``), when that secret never reached its destination: the old key is
    revoked (so nothing it may have signed is accepted), the new one is current, roles and attributes
    stay. ``then(principal, secret)`` runs under the lock; if it raises, nothing stays changed.
    """
    check_name(name)
    roles = tuple(dict.fromkeys(check_role(r) for r in roles))
    attr_pairs: dict[str, str] = {}
    for k, v in (check_attr(a) for a in attrs):
        if attr_pairs.setdefault(k, v) != v:
            raise UsageError(f"attribute {k!r} is given twice, as {attr_pairs[k]!r} and {v!r}; give it once")
    if not store_secret and not export_secret:
        raise UsageError("--no-store without --export-secret would throw the secret key away", hint="add --export-secret")
    if replace and (store_secret or not export_secret):
        raise UsageError("--replace re-creates a key whose secret lives only elsewhere: give it with --export-secret --no-store")
    if replace and (roles or attrs):
        raise UsageError("--replace keeps the principal's roles and attributes; leave out --role and --attr", hint=f"change roles with: agentctl role add {name} ROLE")
    store = Store(ctx.home)
    _check_free(store, name, replace)
    keystore = ctx.keystore() if store_secret else None  # fail before generating anything
    seed = crypto.new_seed()
    now = ctx.now()
    public = crypto.public_key(seed)
    with ctx.home.lock():
        existing = _check_free(store, name, replace)  # again: another process may have won a race
        revs = store.revocations()
        revs_before = store.saved(ctx.home.revocations_file)
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
                store.restore(ctx.home.revocations_file, revs_before)
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
                store.put_revocations(revs.adding(Revocation("key", existing.current.kid, now, reason)))
        except BaseException:
            undo()
            raise
        _undoing(undo, then, principal, secret)
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


def import_principal(ctx: Context, name: str, key_text: str, *, roles: tuple[str, ...] = (), then: Then = None) -> Principal:
    """Trust a principal made elsewhere, by its public key. ``then(principal)`` as for :func:`keygen`."""
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
        _undoing(lambda: store.delete(name), then, principal)
    return principal


def _check_key_is_free(store: Store, kid: str) -> None:
    if store.revocations().key(kid):
        raise DeniedError(f"key {kid} is revoked")
    holder = store.find_key(kid)
    if holder is not None:  # one key, one identity: revoking one name must not leave the key trusted under another
        raise ExistsError(f"key {kid} already belongs to {holder[0].name!r}; one key cannot be two principals")


# --- roles ------------------------------------------------------------------------------------


def set_roles(ctx: Context, name: str, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = (), then: Then = None) -> tuple[Principal, tuple[str, ...], tuple[str, ...]]:
    """Add and remove roles of a principal. Returns it and the roles actually added and removed.
    ``then(principal, added, removed)`` as for :func:`keygen`."""
    check_name(name)
    add = tuple(dict.fromkeys(check_role(r) for r in add))
    remove = tuple(dict.fromkeys(check_role(r) for r in remove))
    if set(add) & set(remove):
        raise UsageError(f"role {sorted(set(add) & set(remove))[0]!r} is both added and removed")
    store = Store(ctx.home)
    with ctx.home.lock():
        before = store.require(name)
        added = tuple(r for r in add if r not in before.roles)
        removed = tuple(r for r in remove if r in before.roles)
        roles = tuple(r for r in before.roles if r not in removed) + added
        updated = replace(before, roles=roles)
        if added or removed:
            store.put(updated)
        _undoing(lambda: store.put(before) if (added or removed) else None, then, updated, added, removed)
    return updated, added, removed


# --- rotation ---------------------------------------------------------------------------------


def rotate(ctx: Context, name: str, *, store_secret: bool = True, export_secret: bool = False, then: Then = None) -> tuple[Principal, str, str | None]:
    """Give a local principal a new current key; return it, the rotation statement (a token) and,
    when asked, the new exported secret. A principal whose secret is not kept here (``--no-store``,
    signing from AGENTCTL_SECRET_KEY) must export its new secret.

    ``then(principal, statement, secret)`` runs under the lock once the new key is saved, while the
    old secret is still there: the caller writes the statement and the secret and records the event.
    If it raises, the old key stays current and usable, and the new one is forgotten. Only after it
    succeeded is the old secret removed."""
    store = Store(ctx.home)
    principal = store.require(name)
    if principal.origin != "local":
        raise UsageError(f"principal {name!r} was imported; only its owner can rotate it", hint=f"import its rotation statement: agentctl import {name} --rotation FILE")
    _check_not_revoked(store, name)
    if not store_secret and not export_secret:
        raise UsageError("--no-store without --export-secret would throw the new secret key away", hint="add --export-secret")
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
        _undoing(undo, then, updated, statement, secret)
        if old.source != "env" and current.keystore:
            try:
                ctx.keystore(current.keystore).delete(name, old.kid)
            except KeystoreError as e:
                ctx.notify(f"the retired secret key could not be removed from the {current.keystore} keystore: {e.message}")
    return updated, statement, secret


def _check_not_revoked(store: Store, name: str) -> None:
    if store.revocations().principal(name):
        raise DeniedError(f"principal {name!r} is revoked; a revoked principal cannot rotate")


def import_rotation(ctx: Context, name: str, statement: str, *, then: Then = None) -> Principal:
    """Accept a rotation statement that verifies against the key now trusted for ``name``.
    ``then(principal)`` as for :func:`keygen` (also when the statement was applied before)."""
    store = Store(ctx.home)
    principal = store.require(name)
    token = jws.decode(statement, jws.ROTATION)
    c = token.claims
    if c.get("iss") != name or c.get("sub") != name:
        raise VerificationError("chain_broken", f"the rotation statement is for {c.get('iss')!r}, not {name!r}")
    try:
        new_public = crypto.check_public_key(public_from_jwk(c.get("new_jwk")))
    except (EncodingError, crypto.InvalidKey) as e:
        raise VerificationError("malformed", f"rotation statement's new key: {e}") from None
    new_kid = thumbprint(new_public)
    if c.get("new_kid") != new_kid or c.get("old_kid") != token.kid:
        raise VerificationError("malformed", "rotation statement's key ids do not match its keys")
    iat = c.get("iat")
    if not is_time(iat):  # values.py: seconds, 0 to the year 9999, so the key history can store it
        raise VerificationError("malformed", "rotation statement has no valid iat")
    if principal.current.kid == new_kid:
        _undoing(lambda: None, then, principal)
        return principal  # already applied
    if principal.key(new_kid) is not None:
        raise VerificationError("chain_broken", f"the rotation statement names key {new_kid}, which {name} already used and retired")
    signing_key = principal.key(token.kid)
    if signing_key is None:
        raise VerificationError("unknown_key", f"the rotation statement is signed by key {token.kid}, which is not a key of {name}")
    if signing_key.status != "current":
        raise VerificationError("chain_broken", f"the rotation statement is signed by retired key {token.kid}; import the newer statements in order")
    if not token.verifies_with(signing_key.public):
        raise VerificationError("bad_signature", "the rotation statement's signature does not verify")
    revs = store.revocations()
    if revs.principal(name) or revs.key(token.kid):
        raise VerificationError("revoked", f"{name} or its key {token.kid} is revoked")
    if revs.key(new_kid):
        raise VerificationError("revoked", f"the rotation statement's new key {new_kid} is revoked")
    if iat > ctx.now() + ctx.home.config.leeway:
        raise VerificationError("not_yet_valid", "the rotation statement is dated in the future")
    with ctx.home.lock():
        current = store.require(name)
        if current.current.kid != token.kid:
            raise UsageError(f"principal {name!r} changed meanwhile; try again")
        holder = store.find_key(new_kid)
        if holder is not None:  # one key, one identity, as plain import keeps it
            raise VerificationError("chain_broken", f"the rotation statement's new key {new_kid} already belongs to {holder[0].name!r}; one key cannot be two principals")
        updated = current.rotated(new_public, float(iat), current.keystore)
        store.put(updated)
        _undoing(lambda: store.put(current), then, updated)
    return updated


# --- revocation -------------------------------------------------------------------------------


def revoke_principal(ctx: Context, name: str, reason: str = "", *, then: Then = None) -> tuple[Revocation, bool]:
    """Revoke a principal and all its keys. Returns the revocation and whether it is new.
    ``then(revocation, new)`` as for :func:`keygen`."""
    Store(ctx.home).require(name)
    return _revoke(ctx, Revocation("principal", name, ctx.now(), _reason(reason)), then)


def revoke_key(ctx: Context, kid: str, reason: str = "", *, then: Then = None) -> tuple[Revocation, bool]:
    check_kid(kid)
    store = Store(ctx.home)
    if store.find_key(kid) is None:
        raise NotFoundError(f"no key {kid} among the principals in {ctx.home.path}", hint="see 'agentctl show NAME' for key ids")
    return _revoke(ctx, Revocation("key", kid, ctx.now(), _reason(reason)), then)


def revoke_grant(ctx: Context, jti: str, reason: str = "", *, then: Then = None) -> tuple[Revocation, bool]:
    check_jti(jti)
    return _revoke(ctx, Revocation("grant", jti, ctx.now(), _reason(reason)), then)


def _reason(reason: str) -> str:
    if len(reason) > 500 or not reason.isprintable():
        raise UsageError("bad --reason: printable text of at most 500 characters")
    return reason


def _revoke(ctx: Context, entry: Revocation, then: Then) -> tuple[Revocation, bool]:
    store = Store(ctx.home)
    with ctx.home.lock():
        revs = store.revocations()
        existing = revs.find(entry.kind, entry.id)
        if existing is not None:
            _undoing(lambda: None, then, existing, False)
            return existing, False
        before = store.saved(ctx.home.revocations_file)
        store.put_revocations(revs.adding(entry))
        _undoing(lambda: store.restore(ctx.home.revocations_file, before), then, entry, True)
        # A revoked key signs nothing again: remove its secret from this machine. Still under the lock,
        # and from the record as it is now, so a rotation cannot slip a new secret in meanwhile.
        _drop_secrets(ctx, store, entry)
    return entry, True


def _drop_secrets(ctx: Context, store: Store, entry: Revocation) -> None:
    if entry.kind == "principal":
        p = store.get(entry.id)
        kids = [k.kid for k in p.keys] if p is not None else []
    elif entry.kind == "key":
        found = store.find_key(entry.id)
        p = found[0] if found is not None and found[1].status == "current" else None
        kids = [entry.id]
    else:
        return
    if p is None or p.origin != "local" or not p.keystore:
        return
    try:
        ks = ctx.keystore(p.keystore)
        for kid in kids:
            ks.delete(p.name, kid)
    except KeystoreError as e:
        ctx.notify(f"revoked, but its secret key could not be removed from the keystore: {e.message}")


# --- signing keys -----------------------------------------------------------------------------

_SIGNER_TRIES = 3  # a rotation between reading the record and reading the secret: read again


def signer_for(ctx: Context, name: str) -> Signer:
    """The current secret key of ``name``: from ``AGENTCTL_SECRET_KEY`` when it names ``name``, else
    from the keystore that holds it."""
    check_name(name)
    store = Store(ctx.home)
    principal = store.get(name)
    revs = store.revocations()
    env_text = ctx.env.get("AGENTCTL_SECRET_KEY")
    if env_text:
        secret = decode_secret(env_text)
        if secret.name == name:
            if principal is not None and principal.current.public != crypto.public_key(secret.seed):
                raise UsageError(
                    f"AGENTCTL_SECRET_KEY holds a key of {name} that is not its current key",
                    hint="export the secret again after a rotation",
                )
            if revs.principal(name) or revs.key(thumbprint(crypto.public_key(secret.seed))):
                raise DeniedError(f"principal {name!r} or its current key is revoked; it cannot sign")
            return Signer(name, secret.seed, "env")
    for attempt in range(_SIGNER_TRIES):
        if attempt:  # the key changed under us: read the record again
            principal, revs = store.get(name), store.revocations()
        if principal is None:
            raise NotFoundError(f"no principal {name!r} in {ctx.home.path}", hint="see 'agentctl list', or set AGENTCTL_SECRET_KEY to its exported secret")
        if revs.principal(name) or revs.key(principal.current.kid):
            raise DeniedError(f"principal {name!r} or its current key is revoked; it cannot sign")
        if principal.origin != "local" or not principal.keystore:
            why = "it was imported" if principal.origin != "local" else "its secret was exported and not stored (--no-store)"
            raise NotFoundError(f"no secret key for {name!r} on this machine: {why}", hint="set AGENTCTL_SECRET_KEY to its exported secret")
        seed = ctx.keystore(principal.keystore).get(name, principal.current.kid)
        if seed is not None:
            break
        again = store.get(name)
        if again is None or again.current.kid == principal.current.kid:
            raise KeystoreError(f"the secret key of {name!r} is missing from the {principal.keystore} keystore")
        # rotated (or replaced) meanwhile: the old secret is gone, the new key is current; try that one
    else:
        raise KeystoreError(f"principal {name!r} was rotated again and again while its key was read", hint="try again")
    if crypto.public_key(seed) != principal.current.public:
        raise KeystoreError(f"the secret key of {name!r} in the {principal.keystore} keystore does not match its public key")
    return Signer(name, seed, principal.keystore)
