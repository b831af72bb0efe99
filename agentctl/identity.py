"""Identity operations: keygen, import, rotate, revoke, and finding a principal's signing key.

Each operation validates everything before it writes, holds the home lock while it writes, and leaves
the store unchanged when it fails.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

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
        try:
            return _checked_public(public_from_did_key(text), "did:key")
        except EncodingError as e:
            raise UsageError(f"bad did:key: {e}") from None
    if text.startswith("{"):
        data = text
    else:
        path = Path(text) if base is None else base / text
        if path.is_dir():
            raise UsageError(f"cannot read {path}: it is a directory")
        if path.suffix.lower() in (".json", ".jwk") or path.is_file():
            try:
                data = path.read_text("utf-8")
            except FileNotFoundError:
                raise NotFoundError(f"no such file: {path}") from None
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
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


def keygen(
    ctx: Context,
    name: str,
    *,
    roles: tuple[str, ...] = (),
    attrs: tuple[str, ...] = (),
    store_secret: bool = True,
    export_secret: bool = False,
) -> tuple[Principal, str | None]:
    """Create a local principal with a fresh key. Returns it and, when asked, the exported secret."""
    check_name(name)
    roles = tuple(dict.fromkeys(check_role(r) for r in roles))
    attr_pairs: dict[str, str] = {}
    for k, v in (check_attr(a) for a in attrs):
        if attr_pairs.setdefault(k, v) != v:
            raise UsageError(f"attribute {k!r} is given twice, as {attr_pairs[k]!r} and {v!r}; give it once")
    if not store_secret and not export_secret:
        raise UsageError("--no-store without --export-secret would throw the secret key away", hint="add --export-secret")
    store = Store(ctx.home)
    if store.get(name) is not None:
        raise ExistsError(f"principal {name!r} already exists", hint=f"to replace its key, run 'agentctl rotate {name}'")
    keystore = ctx.keystore() if store_secret else None  # fail before generating anything
    seed = crypto.new_seed()
    now = ctx.now()
    principal = Principal(
        name=name,
        origin="local",
        created=now,
        keys=(Key(crypto.public_key(seed), now),),
        roles=roles,
        attrs=tuple(sorted(attr_pairs.items())),
        keystore=keystore.name if keystore else None,
    )
    with ctx.home.lock():
        if store.get(name) is not None:  # lost a race with another keygen
            raise ExistsError(f"principal {name!r} already exists", hint=f"to replace its key, run 'agentctl rotate {name}'")
        if keystore is not None:
            keystore.put(name, principal.current.kid, seed)
        try:
            store.put(principal)
        except BaseException:
            if keystore is not None:
                keystore.delete(name, principal.current.kid)
            raise
    return principal, (encode_secret(name, seed) if export_secret else None)


def import_principal(ctx: Context, name: str, key_text: str, *, roles: tuple[str, ...] = ()) -> Principal:
    """Trust a principal made elsewhere, by its public key."""
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
        if store.revocations().key(thumbprint(public)):
            raise DeniedError(f"key {thumbprint(public)} is revoked")
        holder = store.find_key(thumbprint(public))
        if holder is not None:  # one key, one identity: revoking one name must not leave the key trusted under another
            raise ExistsError(f"key {thumbprint(public)} already belongs to {holder[0].name!r}; one key cannot be two principals")
        principal = Principal(name=name, origin="imported", created=ctx.now(), keys=(Key(public, ctx.now()),), roles=roles)
        store.put(principal)
    return principal


# --- rotation ---------------------------------------------------------------------------------


def rotate(ctx: Context, name: str, *, store_secret: bool = True, export_secret: bool = False) -> tuple[Principal, str, str | None]:
    """Give a local principal a new current key; return it, the rotation statement (a token) and,
    when asked, the new exported secret. A principal whose secret is not kept here (``--no-store``,
    signing from AGENTCTL_SECRET_KEY) must export its new secret."""
    store = Store(ctx.home)
    principal = store.require(name)
    if principal.origin != "local":
        raise UsageError(f"principal {name!r} was imported; only its owner can rotate it", hint=f"import its rotation statement: agentctl import {name} --rotation FILE")
    if store.revocations().principal(name):
        raise DeniedError(f"principal {name!r} is revoked; a revoked principal cannot rotate")
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
        updated = current.rotated(public, now, keystore.name if keystore else None)
        if keystore is not None:
            keystore.put(name, thumbprint(public), seed)
        try:
            store.put(updated)
        except BaseException:
            if keystore is not None:
                keystore.delete(name, thumbprint(public))
            raise
        if old.source != "env" and current.keystore:
            try:
                ctx.keystore(current.keystore).delete(name, old.kid)
            except KeystoreError as e:
                ctx.notify(f"the retired secret key could not be removed from the {current.keystore} keystore: {e.message}")
    return updated, statement, (encode_secret(name, seed) if export_secret else None)


def import_rotation(ctx: Context, name: str, statement: str) -> Principal:
    """Accept a rotation statement that verifies against the key now trusted for ``name``."""
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
    if c.get("new_kid") != thumbprint(new_public) or c.get("old_kid") != token.kid:
        raise VerificationError("malformed", "rotation statement's key ids do not match its keys")
    iat = c.get("iat")
    if not is_time(iat):  # values.py: seconds, 0 to the year 9999, so the key history can store it
        raise VerificationError("malformed", "rotation statement has no valid iat")
    if principal.current.kid == thumbprint(new_public):
        return principal  # already applied
    if principal.key(thumbprint(new_public)) is not None:
        raise VerificationError("chain_broken", f"the rotation statement names key {thumbprint(new_public)}, which {name} already used and retired")
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
    if iat > ctx.now() + ctx.home.config.leeway:
        raise VerificationError("not_yet_valid", "the rotation statement is dated in the future")
    with ctx.home.lock():
        current = store.require(name)
        if current.current.kid != token.kid:
            raise UsageError(f"principal {name!r} changed meanwhile; try again")
        updated = current.rotated(new_public, float(iat), current.keystore)
        store.put(updated)
    return updated


# --- revocation -------------------------------------------------------------------------------


def revoke_principal(ctx: Context, name: str, reason: str = "") -> tuple[Revocation, bool]:
    """Revoke a principal and all its keys. Returns the revocation and whether it is new."""
    store = Store(ctx.home)
    principal = store.require(name)
    return _revoke(ctx, Revocation("principal", name, ctx.now(), _reason(reason)), principal)


def revoke_key(ctx: Context, kid: str, reason: str = "") -> tuple[Revocation, bool]:
    check_kid(kid)
    store = Store(ctx.home)
    found = store.find_key(kid)
    if found is None:
        raise NotFoundError(f"no key {kid} among the principals in {ctx.home.path}", hint="see 'agentctl show NAME' for key ids")
    return _revoke(ctx, Revocation("key", kid, ctx.now(), _reason(reason)), found[0] if found[1].status == "current" else None)


def revoke_grant(ctx: Context, jti: str, reason: str = "") -> tuple[Revocation, bool]:
    check_jti(jti)
    return _revoke(ctx, Revocation("grant", jti, ctx.now(), _reason(reason)), None)


def _reason(reason: str) -> str:
    if len(reason) > 500 or not reason.isprintable():
        raise UsageError("bad --reason: printable text of at most 500 characters")
    return reason


def _revoke(ctx: Context, entry: Revocation, drop_secret_of: Principal | None) -> tuple[Revocation, bool]:
    store = Store(ctx.home)
    with ctx.home.lock():
        revs = store.revocations()
        existing = revs.find(entry.kind, entry.id)
        if existing is not None:
            return existing, False
        store.put_revocations(revs.adding(entry))
    # A revoked key signs nothing again: remove its secret from this machine.
    if drop_secret_of is not None and drop_secret_of.origin == "local" and drop_secret_of.keystore:
        try:
            ks = ctx.keystore(drop_secret_of.keystore)
            for k in drop_secret_of.keys if entry.kind == "principal" else (drop_secret_of.current,):
                ks.delete(drop_secret_of.name, k.kid)
        except KeystoreError as e:
            ctx.notify(f"revoked, but its secret key could not be removed from the keystore: {e.message}")
    return entry, True


# --- signing keys -----------------------------------------------------------------------------


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
    if principal is None:
        raise NotFoundError(f"no principal {name!r} in {ctx.home.path}", hint="see 'agentctl list', or set AGENTCTL_SECRET_KEY to its exported secret")
    if revs.principal(name) or revs.key(principal.current.kid):
        raise DeniedError(f"principal {name!r} or its current key is revoked; it cannot sign")
    if principal.origin != "local" or not principal.keystore:
        why = "it was imported" if principal.origin != "local" else "its secret was exported and not stored (--no-store)"
        raise NotFoundError(f"no secret key for {name!r} on this machine: {why}", hint="set AGENTCTL_SECRET_KEY to its exported secret")
    seed = ctx.keystore(principal.keystore).get(name, principal.current.kid)
    if seed is None:
        raise KeystoreError(f"the secret key of {name!r} is missing from the {principal.keystore} keystore")
    if crypto.public_key(seed) != principal.current.public:
        raise KeystoreError(f"the secret key of {name!r} in the {principal.keystore} keystore does not match its public key")
    return Signer(name, seed, principal.keystore)
