"""Revocation: of a principal (all its keys), of one key, or of one grant, action or approval by its
``jti``. Permanent. A revoked key's secret is removed from this machine under the home lock.

Each records a ``revoke`` event (also when the entry was already there, with ``new`` false) and takes
``then(revocation, new)``, as :func:`agentctl.identity.keygen` does: when either fails, nothing stays
revoked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .changes import Then, undoing
from .context import Context
from .errors import KeystoreError, NotFoundError, UsageError
from .events import Event
from .models import Revocation, check_jti, check_kid
from .store import Store
from .values import is_time

if TYPE_CHECKING:
    from .recording import Recorder

__all__ = ["revoke_principal", "revoke_key", "revoke_grant"]


def revoke_principal(ctx: Context, name: str, reason: str = "", *, recorder: Recorder | None = None, then: Then = None) -> tuple[Revocation, bool]:
    """Revoke a principal and all its keys. Returns the revocation and whether it is new."""
    Store(ctx.home).require(name)
    return _revoke(ctx, Revocation("principal", name, ctx.now(), _reason(reason)), recorder, then, name)


def revoke_key(ctx: Context, kid: str, reason: str = "", *, recorder: Recorder | None = None, then: Then = None) -> tuple[Revocation, bool]:
    """Revoke one key (its principal's other keys stay). Returns the revocation and whether it is new."""
    check_kid(kid)
    store = Store(ctx.home)
    if store.find_key(kid) is None:
        raise NotFoundError(f"no key {kid} among the principals in {ctx.home.path}", hint="see 'agentctl show NAME' for key ids")
    return _revoke(ctx, Revocation("key", kid, ctx.now(), _reason(reason)), recorder, then)


def revoke_grant(ctx: Context, jti: str, reason: str = "", *, exp: int | None = None, recorder: Recorder | None = None,
                 then: Then = None) -> tuple[Revocation, bool]:
    """Revoke a grant, action or approval by its ``jti``. ``exp``: its expiry, when the caller knows it
    (from the token itself); a list made after ``exp`` plus the largest leeway leaves the entry out.
    Without it the revocation travels in every list. Returns the revocation and whether it is new."""
    check_jti(jti)
    if exp is not None and not is_time(exp):
        raise UsageError("bad exp: seconds since 1970, an integer", param="exp")
    return _revoke(ctx, Revocation("grant", jti, ctx.now(), _reason(reason), exp), recorder, then)


def _reason(reason: str) -> str:
    if len(reason) > 500 or not reason.isprintable():
        raise UsageError("bad reason: printable text of at most 500 characters", param="reason")
    return reason


def _revoke(ctx: Context, entry: Revocation, recorder: Recorder | None, then: Then, name: str | None = None) -> tuple[Revocation, bool]:
    store = Store(ctx.home)
    with ctx.home.lock():
        existing = store.revocations().find(entry.kind, entry.id)
        if existing is not None:
            undoing(lambda: None, then, existing, False, recorder=recorder, event=_event(existing, False, name))
            return existing, False
        with store.revoking() as change:  # committed only once the audit event and ``then`` succeeded
            change.add([entry])
            undoing(lambda: None, then, entry, True, recorder=recorder, event=_event(entry, True, name))
        # A revoked key signs nothing again: remove its secret from this machine. Still under the lock,
        # and from the record as it is now, so a rotation cannot slip a new secret in meanwhile.
        _drop_secrets(ctx, store, entry)
    return entry, True


def _event(entry: Revocation, new: bool, name: str | None) -> Event:
    """The ``revoke`` event: ``principal`` is the principal revoked (None for a key or a jti)."""
    return Event("revoke", "ok", principal=name, jtis=(entry.id,) if entry.kind == "grant" else (),
                 reason=entry.reason or None, metadata={"kind": entry.kind, "id": entry.id, "new": new})


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
