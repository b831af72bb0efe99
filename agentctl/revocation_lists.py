"""Signed revocation lists that travel between machines (``agentctl-revocations+jwt``).

A list carries every revocation its signer's home holds and a ``version`` that only grows. Importing
verifies it against the signer's trusted key, refuses a list from an unknown or revoked signer, from a
signer that may not revoke here (SPEC "Who may revoke": the signer of one of this home's revocation
sources, or a principal with a defined role carrying ``revoke = true``), or signed by a retired key,
and refuses one older than the version already held from that signer (a rollback) or another list
under the same version (equivocation). The newest ``iat`` accepted from each signer is kept: it is
what a revocation source's freshness is judged by.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

from . import jws
from .changes import recording_denials, undoing
from .clock import parse_rfc3339, rfc3339
from .config import MAX_CONFIG_LEEWAY
from .context import Context
from .errors import DeniedError, StoreError, VerificationError
from .events import Event
from .home import atomic_write
from .identity import signer_for
from .models import Revocation, Revocations, check_jti, check_kid
from .names import is_name
from .store import Store
from .values import is_int, is_time

__all__ = ["export_list", "verify_list", "import_list", "check_version", "issued_at", "RevocationList"]

_KINDS = {"principals": "principal", "keys": "key", "grants": "grant"}


class RevocationList:
    def __init__(self, issuer: str, version: int, issued: int, revocations: Revocations, signing_kid: str = "",
                 digest: str = "") -> None:
        self.issuer = issuer
        self.version = version
        self.issued = issued
        self.revocations = revocations
        self.signing_kid = signing_kid
        self.digest = digest  # sha256 of the signed claims
        self.self_revoked = False  # set by import_list: the list revokes its own signer or signing key


def _versions_path(ctx: Context):
    return ctx.home.path / "revocation-lists.toml"


def _versions(ctx: Context) -> dict:
    import tomllib

    path = _versions_path(ctx)
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {"exported": {}, "imported": {}, "issued": {}, "digests": {}}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise StoreError(f"damaged store file {path}: {getattr(e, 'strerror', None) or e}", hint=_RESTORE) from None
    for part in _PARTS:
        doc.setdefault(part, {})
    for part in ("exported", "imported", "issued"):  # {signer name: version held, or newest iat}, nothing else
        table = doc[part]
        if not isinstance(table, dict) or not all(
            is_name(k) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**53 for k, v in table.items()
        ):
            raise StoreError(f"damaged store file {path}: [{part}] must map principal names to versions", hint=_RESTORE)
    if set(doc) - set(_PARTS) or not all(is_name(k) and isinstance(v, str) for k, v in doc["digests"].items()):
        raise StoreError(f"damaged store file {path}: [digests] must map principal names to digests", hint=_RESTORE)
    return doc


_PARTS = ("exported", "imported", "issued", "digests")


def issued_at(home, signer: str) -> int | None:
    """The ``iat`` of the newest list accepted here from ``signer`` (None: none yet)."""
    import tomllib

    try:
        doc = tomllib.loads((home.path / "revocation-lists.toml").read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise StoreError(f"damaged store file {home.path / 'revocation-lists.toml'}: {getattr(e, 'strerror', None) or e}", hint=_RESTORE) from None
    value = doc.get("issued", {}).get(signer) if isinstance(doc.get("issued"), dict) else None
    return value if is_int(value, low=0) else None


_RESTORE = "restore it from a backup; agentctl never rewrites a damaged file"


def _save_versions(ctx: Context, doc: dict) -> None:
    import tomli_w

    atomic_write(_versions_path(ctx), tomli_w.dumps(doc).encode("utf-8"))


def export_list(ctx: Context, sign_as: str, *, recorder: Any = None, then: Callable[[str, int, int], None] | None = None) -> tuple[str, int, int]:
    """A signed list of every revocation held here. Returns (token, version, entry count). Records a
    ``revocations.export`` event under the home lock once the new version is saved, then runs
    ``then(token, version, count)``; if either fails, the version held is put back."""
    signer = signer_for(ctx, sign_as)
    store = Store(ctx.home)
    with ctx.home.lock():
        versions = _versions(ctx)
        version = int(versions["exported"].get(sign_as, 0)) + 1
        now = int(ctx.now())
        body, count = _body(store.revocations().entries, now)
        claims = {"iss": sign_as, "iat": now, "jti": secrets.token_urlsafe(16), "version": version, "revoked": body}
        token = jws.encode(jws.REVOCATIONS, claims, signer.seed)
        if len(token) > jws.MAX_LIST_BYTES:
            raise StoreError(f"the revocation list would be {len(token)} bytes with {count} entries, over the limit of "
                             f"{jws.MAX_LIST_BYTES} bytes that every importer enforces",
                             hint="a list holds about 100,000 grant revocations (80,000 with exp); revoke a principal or key instead of many of its grants")
        before = store.saved(_versions_path(ctx))
        versions["exported"][sign_as] = version
        _save_versions(ctx, versions)
        event = Event("revocations.export", "ok", principal=sign_as, metadata={"version": version, "entries": count})
        undoing(lambda: store.restore(_versions_path(ctx), before), then, token, version, count, recorder=recorder, event=event)
    return token, version, count


def expired(entry: Revocation, now: float) -> bool:
    """Whether a revoked grant can never verify again: its ``exp`` plus the largest leeway has passed.
    Such an entry is left out of the lists made here and not stored by an import."""
    return entry.exp is not None and entry.exp + MAX_CONFIG_LEEWAY < now


def _body(entries, now: int) -> tuple[dict, int]:
    """The ``revoked`` claim of a list made at ``now``, and its entry count."""
    body: dict = {k: [] for k in _KINDS}
    plurals = {s: p for p, s in _KINDS.items()}
    count = 0
    for r in entries:
        if expired(r, now):
            continue
        entry: dict = {"id": r.id, "at": rfc3339(r.at)}
        if r.reason:
            entry["reason"] = r.reason
        if r.exp is not None:
            entry["exp"] = r.exp
        body[plurals[r.kind]].append(entry)
        count += 1
    return body, count


def verify_list(token: str, trust) -> RevocationList:
    """A revocation list, verified against its signer's key in ``trust`` (a
    :class:`~agentctl.verify.Trust`: a home's ``StoreTrust`` or a ``StaticTrust`` given in code), ready
    for ``Verifier(trust, revocations=[rl.revocations])``. Keeping out an older list than one already
    seen (a rollback) is the caller's part: :func:`check_version` in a home, else compare ``rl.version``."""
    t = jws.decode(token.strip() if isinstance(token, str) else token, jws.REVOCATIONS, limit=jws.MAX_LIST_BYTES)
    c = t.claims
    iss = c.get("iss")
    if not is_name(iss):
        raise VerificationError("malformed", "revocation list has no valid 'iss'")
    version = c.get("version")
    iat = c.get("iat")
    if not is_int(version, low=1):  # values.py: I-JSON, so it can be stored, recorded and exceeded
        raise VerificationError("malformed", "revocation list has no valid 'version'")
    if not is_time(iat):  # values.py: seconds, 0 to the year 9999
        raise VerificationError("malformed", "revocation list has no valid 'iat'")
    body = c.get("revoked")
    if not isinstance(body, dict) or set(body) - set(_KINDS):
        raise VerificationError("malformed", "revocation list has no valid 'revoked'")
    entries = []
    try:
        for plural, kind in _KINDS.items():
            items = body.get(plural, [])
            if not isinstance(items, list):
                raise ValueError(plural)
            for e in items:
                ident, at, reason, exp = e["id"], parse_rfc3339(e["at"]), e.get("reason", ""), e.get("exp")
                if exp is not None and (kind != "grant" or not is_time(exp)):
                    raise ValueError("exp")  # an expiry only on a grant's entry, whole seconds
                if kind == "principal" and not is_name(ident):
                    raise ValueError(ident)
                if kind == "key":
                    check_kid(ident)
                if kind == "grant":
                    check_jti(ident)
                if not isinstance(reason, str) or len(reason) > 500 or not reason.isprintable():
                    raise ValueError("reason")  # as a revocation's reason is taken: no control characters
                entries.append(Revocation(kind, ident, at, reason, exp))
    except Exception as e:  # any shape error in the list body is one answer: malformed
        raise VerificationError("malformed", f"revocation list entry is not valid ({type(e).__name__})") from None
    from .verify.trust import document_signer

    def may_revoke(name: str) -> str | None:
        if trust.may_revoke(name):
            return None
        return (f"the revocation list is signed by {name}, who may not revoke here: only the signer of a revocation "
                "source or a principal with a role carrying revoke = true may")

    digest = document_signer(t, trust, iss, "revocation list", may_sign=may_revoke)
    return RevocationList(iss, version, iat, Revocations(tuple(entries)), t.kid, digest)


def check_version(ctx: Context, rl: RevocationList) -> int:
    """The version held from this signer; raise ``replayed`` for an older list."""
    versions = _versions(ctx)
    held = int(versions["imported"].get(rl.issuer, 0))
    if rl.version < held:
        raise VerificationError("replayed", f"revocation list version {rl.version} from {rl.issuer} is older than the one held ({held}): a rollback")
    digest = versions["digests"].get(rl.issuer)
    if rl.version == held and digest and rl.digest and digest != rl.digest:
        raise DeniedError(f"equivocation: {rl.issuer} signed two different revocation lists as version {rl.version}",
                          hint="keep the one held; ask the publisher why, and publish a higher version")
    return held


@recording_denials(lambda e, *_: Event("revocations.import", "deny", reason=e.reason, metadata={"detail": e.detail})
                   if isinstance(e, VerificationError) else None)
def import_list(ctx: Context, token: str, *, recorder: Any = None, then: Callable[[RevocationList, int], None] | None = None) -> tuple[RevocationList, int]:
    """Merge a verified list into this home's revocations. Returns the list and how many were new.
    Records a ``revocations.import`` event under the home lock once the list is applied (a refusal
    that does not verify as a deny), then runs ``then(list, added)``; if either fails, the
    revocations and versions held before are put back: a change and its audit event go together."""
    store = Store(ctx.home)
    from .verify import StoreTrust

    rl = verify_list(token, StoreTrust(store))
    with ctx.home.lock():
        held = check_version(ctx, rl)
        versions_before = store.saved(_versions_path(ctx))
        now = ctx.now()
        try:
            with store.revoking() as change:  # one transaction, committed only once ``then`` succeeded
                added = change.add(e for e in rl.revocations.entries if not expired(e, now))
                rl.self_revoked = change.holds("principal", rl.issuer) or change.holds("key", rl.signing_kid)
                if rl.version > held:  # the same version again refreshes nothing
                    versions = _versions(ctx)
                    versions["imported"][rl.issuer] = rl.version
                    versions["issued"][rl.issuer] = max(rl.issued, int(versions["issued"].get(rl.issuer, 0)))
                    if rl.digest:
                        versions["digests"][rl.issuer] = rl.digest
                    _save_versions(ctx, versions)
                event = Event("revocations.import", "ok", principal=rl.issuer, metadata={"version": rl.version, "added": added})
                undoing(lambda: None, then, rl, added, recorder=recorder, event=event)
        except BaseException:
            store.restore(_versions_path(ctx), versions_before)
            raise
    return rl, added
