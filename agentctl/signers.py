"""A principal's signing key: :class:`Signer` (a key held in memory), and :func:`signer_for`, which finds
the current secret key of a home's principal in ``AGENTCTL_SECRET_KEY`` or the keystore that holds it."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import crypto
from .context import Context
from .encoding import thumbprint
from .errors import DeniedError, KeystoreError, NotFoundError, UsageError
from .names import check_name
from .secret import decode_secret
from .store import Store

__all__ = ["Signer", "signer_for"]


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
