"""Accepting a rotation statement made on another machine (``agentctl import NAME --rotation FILE``):
the new key of a principal trusted here, signed by the key now trusted for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import crypto, jws
from .changes import Then, recording_denials, undoing
from .context import Context
from .encoding import EncodingError, public_from_jwk, thumbprint
from .errors import UsageError, VerificationError
from .events import Event
from .models import Principal
from .store import Store
from .values import is_time

if TYPE_CHECKING:
    from .recording import Recorder

__all__ = ["import_rotation"]


def _rotation_denied(e: Exception, ctx: Context, name: str, *_: object) -> Event | None:
    if not isinstance(e, VerificationError):
        return None
    return Event("import", "deny", principal=name, reason=e.reason, metadata={"rotation": True, "detail": e.detail})


@recording_denials(_rotation_denied)
def import_rotation(ctx: Context, name: str, statement: str, *, recorder: Recorder | None = None, then: Then = None) -> Principal:
    """Accept a rotation statement that verifies against the key now trusted for ``name``. Records an
    ``import`` event (also when the statement was applied before), or its refusal as a deny;
    ``then(principal)`` as for :func:`keygen`."""
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
        undoing(lambda: None, then, principal, recorder=recorder, event=_rotation_event(principal, new_kid))
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
        undoing(lambda: store.put(current), then, updated, recorder=recorder, event=_rotation_event(updated, current.current.kid))
    return updated


def _rotation_event(p: Principal, retired: str) -> Event:
    return Event("import", "ok", principal=p.name, metadata={"rotation": True, "kid": p.current.kid, "retired": retired})
