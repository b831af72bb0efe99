"""Signed trust bundles (``agentctl-trust+jwt``): the principals of one home, for others to trust.

A bundle carries ``iss``, ``iat``, ``jti``, a ``version`` that only grows, and ``principals`` sorted by
name, each ``{"name", "roles", "attrs", "keys": [{"jwk", "added", "retired"?}]}``. Importing one
replaces everything its signer's bundles held here: a principal no longer listed is no longer trusted
here (that is not a revocation). A lower version is ``replayed``; the same version with other content
is equivocation, refused. Only the signer of one of this home's trust sources may publish one, and only
names and roles that source allows; a name that is a local principal or another source's is refused,
never merged. What is held from each signer is kept in ``trust-bundles.toml`` in the home.

Export and import record their own audit events (``trust.export``, ``trust.import``, a refused import
as a deny) with the ``recorder`` given, as :mod:`agentctl.changes` describes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from . import crypto, jws
from .clock import parse_rfc3339, rfc3339
from .changes import recording_denials, undoing
from .context import Context
from .encoding import EncodingError, jwk, public_from_jwk
from .errors import DeniedError, StoreError, UsageError, VerificationError
from .events import Event
from .home import atomic_write
from .models import Key, Principal, check_attr, check_role
from .names import is_name
from .store import Store
from .values import is_int, is_time

if TYPE_CHECKING:
    from .recording import Recorder

__all__ = ["Bundle", "Changes", "export_bundle", "verify_bundle", "import_bundle", "held_bundles"]

_ENTRY_KEYS = {"name", "roles", "attrs", "keys"}
_RESTORE = "restore it from a backup; agentctl never rewrites a damaged file"


@dataclass(frozen=True)
class Bundle:
    issuer: str
    version: int
    issued: int
    digest: str  # sha256 of the signed claims: the same version must always have the same one
    principals: tuple = field(repr=False)  # Principal, sorted by name
    signing_kid: str = ""


@dataclass(frozen=True)
class Changes:
    """What importing a bundle changed here (names); ``unchanged`` when the version was already held."""

    added: tuple = ()
    removed: tuple = ()
    changed: tuple = ()
    unchanged: bool = False

    def describe(self) -> dict:
        return {"added": list(self.added), "removed": list(self.removed), "changed": list(self.changed)}


# --- the state file --------------------------------------------------------------------------------

def _path(home):
    return home.path / "trust-bundles.toml"


def _load(home) -> dict:
    import tomllib

    path = _path(home)
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {"exported": {}, "imported": {}}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise StoreError(f"damaged store file {path}: {getattr(e, 'strerror', None) or e}", hint=_RESTORE) from None
    doc.setdefault("exported", {})
    doc.setdefault("imported", {})
    ok = set(doc) == {"exported", "imported"} and all(is_name(k) and is_int(v, low=1) for k, v in doc["exported"].items())
    for k, v in doc["imported"].items() if ok else ():
        ok = ok and is_name(k) and isinstance(v, dict) and is_int(v.get("version"), low=1) and is_time(v.get("iat")) \
            and isinstance(v.get("sha256"), str) and isinstance(v.get("names"), list) and all(is_name(n) for n in v["names"])
    if not ok:
        raise StoreError(f"damaged store file {path}: not a record of trust bundles", hint=_RESTORE)
    return doc


def _save(home, doc: dict) -> None:
    import tomli_w

    home.ensure()
    atomic_write(_path(home), tomli_w.dumps(doc).encode("utf-8"))


def held_bundles(home) -> dict:
    """{signer: {"version", "iat", "sha256", "names"}} of the bundles imported here."""
    return _load(home)["imported"]


def source_names(home) -> dict:
    """{principal name: signer} for every principal held here from a trust source."""
    return {n: signer for signer, held in held_bundles(home).items() for n in held["names"]}


# --- export ----------------------------------------------------------------------------------------

def _entry(p: Principal) -> dict:
    keys = []
    for k in p.keys:
        kd = {"jwk": jwk(k.public), "added": rfc3339(k.created)}
        if k.retired is not None:
            kd["retired"] = rfc3339(k.retired)
        keys.append(kd)
    return {"name": p.name, "roles": list(p.roles), "attrs": dict(p.attrs), "keys": keys}


def export_bundle(ctx: Context, sign_as: str, *, recorder: Recorder | None = None,
                  then: Callable[[str, int, int], None] | None = None) -> tuple[str, int, int]:
    """A signed bundle of this home's principals: local and imported ones, every key with its validity;
    not the principals held from trust sources (they are their publisher's) nor revoked ones. Returns
    (token, version, principal count). Records a ``trust.export`` event under the home lock once the
    new version is saved, then runs ``then(token, version, count)``; if either fails, the version held
    is put back."""
    from .identity import signer_for

    signer = signer_for(ctx, sign_as)
    store = Store(ctx.home)
    with ctx.home.lock():
        doc = _load(ctx.home)
        from_sources = source_names(ctx.home)
        revs = store.revocations()
        principals = [p for p in store.all() if p.name not in from_sources and not revs.principal(p.name)]
        principals.sort(key=lambda p: p.name)
        version = int(doc["exported"].get(sign_as, 0)) + 1
        claims = {"iss": sign_as, "iat": int(ctx.now()), "jti": secrets.token_urlsafe(16), "version": version,
                  "principals": [_entry(p) for p in principals]}
        token = jws.encode(jws.TRUST, claims, signer.seed)
        before = store.saved(_path(ctx.home))
        doc["exported"][sign_as] = version
        _save(ctx.home, doc)
        event = Event("trust.export", "ok", principal=sign_as, metadata={"version": version, "principals": len(principals)})
        undoing(lambda: store.restore(_path(ctx.home), before), then, token, version, len(principals), recorder=recorder, event=event)
    return token, version, len(principals)


# --- verify ----------------------------------------------------------------------------------------

def _malformed(detail: str) -> VerificationError:
    return VerificationError("malformed", f"trust bundle: {detail}")


def _principal(e: object, i: int) -> Principal:
    if not isinstance(e, dict) or set(e) - _ENTRY_KEYS or "name" not in e or "keys" not in e:
        raise _malformed(f"principal {i + 1} is not {{name, roles, attrs, keys}}")
    name = e["name"]
    if not is_name(name):
        raise _malformed(f"principal {i + 1} has no valid name")
    try:
        roles = e.get("roles", [])
        attrs = e.get("attrs", {})
        if not isinstance(roles, list) or not isinstance(attrs, dict) or not isinstance(e["keys"], list) or not e["keys"]:
            raise ValueError("roles, attrs or keys")
        roles_t = tuple(check_role(r) if isinstance(r, str) else check_role("") for r in roles)
        attrs_t = tuple(sorted(check_attr(f"{k}={v}") if isinstance(k, str) and isinstance(v, str) else check_attr("") for k, v in attrs.items()))
        keys = []
        for kd in e["keys"]:
            if not isinstance(kd, dict) or set(kd) - {"jwk", "added", "retired"}:
                raise ValueError("a key is {jwk, added, retired?}")
            public = crypto.check_public_key(public_from_jwk(kd.get("jwk")))
            added = parse_rfc3339(kd["added"])  # a missing one is a KeyError: malformed, as every shape error here
            retired = parse_rfc3339(kd["retired"]) if "retired" in kd else None
            keys.append(Key(public, added, "retired" if retired is not None else "current", retired))
        return Principal(name=name, origin="imported", created=min(k.created for k in keys), keys=tuple(keys),
                         roles=roles_t, attrs=attrs_t)
    except (UsageError, EncodingError, crypto.InvalidKey, ValueError, TypeError, KeyError) as ex:
        why = ex.message if isinstance(ex, UsageError) else str(ex)
        raise _malformed(f"principal {name}: {why}") from None


def verify_bundle(token: str, trust) -> Bundle:
    """A bundle, well-formed and signed by the current, unrevoked key of ``iss`` in ``trust``. Whether
    ``iss`` may publish here, and what, is :func:`import_bundle`'s part (it knows the sources)."""
    t = jws.decode(token.strip() if isinstance(token, str) else token, jws.TRUST, limit=jws.MAX_LIST_BYTES)
    c = t.claims
    iss, iat, version, items = c.get("iss"), c.get("iat"), c.get("version"), c.get("principals")
    if not is_name(iss):
        raise _malformed("no valid 'iss'")
    if not is_time(iat):
        raise _malformed("no valid 'iat'")
    if not is_int(version, low=1):
        raise _malformed("no valid 'version'")
    if not isinstance(c.get("jti"), str) or not 16 <= len(c["jti"]) <= 128:
        raise _malformed("no valid 'jti'")
    if not isinstance(items, list):
        raise _malformed("no 'principals' list")
    principals = tuple(_principal(e, i) for i, e in enumerate(items))
    names = [p.name for p in principals]
    if any(a >= b for a, b in zip(names, names[1:])):
        raise _malformed("'principals' are not sorted by name, or a name appears twice")
    from .verify.trust import document_signer

    digest = document_signer(t, trust, iss, "trust bundle")
    return Bundle(iss, version, iat, digest, principals, t.kid)


# --- import ----------------------------------------------------------------------------------------

def _sources_of(ctx: Context, iss: str) -> list:
    return [s for s in ctx.home.config.sources if s.kind == "trust" and s.signer == iss]


def _check_allowed(ctx: Context, store: Store, b: Bundle, held: dict) -> tuple:
    """The principals to hold from ``b`` (its signer's own entry left out); refuse what the source may
    not define, and any name or key that is a local principal's or another source's."""
    sources = _sources_of(ctx, b.issuer)
    if not sources:
        raise VerificationError("untrusted_root", f"{b.issuer} is not the signer of a trust source here; only those may publish trust bundles")
    source = sources[0]
    mine = set(held.get(b.issuer, {}).get("names", []))
    others = {n: s for s, h in held.items() if s != b.issuer for n in h["names"]}
    kids = {k.kid: p.name for p in store.all() for k in p.keys}
    wanted, problems = [], []
    for p in b.principals:
        if p.name == b.issuer:
            continue  # its signer is trusted here already, by name or by pin: never from its own bundle
        if not source.allows_name(p.name):
            problems.append(f"{p.name} does not match the names source {source.url} may define ({', '.join(source.names) or 'none'})")
        bad_roles = [r for r in p.roles if r not in source.roles]
        if bad_roles:
            problems.append(f"{p.name} has role(s) {', '.join(bad_roles)}, which source {source.url} may not assign")
        if p.name in others:
            problems.append(f"{p.name} is held from another source (signed by {others[p.name]})")
        elif p.name not in mine and store.get(p.name) is not None:
            problems.append(f"{p.name} is a principal of this home; a source never replaces it")
        for k in p.keys:
            owner = kids.get(k.kid)
            if owner is not None and owner != p.name:
                problems.append(f"key {k.kid} of {p.name} already belongs to {owner}")
        wanted.append(p)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DeniedError(f"conflict: trust bundle version {b.version} from {b.issuer} refused: {'; '.join(problems[:3])}{more}",
                          hint="nothing was changed; the source's publisher or this home's config must change")
    return tuple(wanted)


def _check_version(b: Bundle, held: dict) -> bool:
    """True when this exact version is already held; raise for a rollback or an equivocation."""
    mine = held.get(b.issuer)
    if mine is None:
        return False
    if b.version < mine["version"]:
        raise VerificationError("replayed", f"trust bundle version {b.version} from {b.issuer} is older than the one held ({mine['version']}): a rollback")
    if b.version == mine["version"]:
        if b.digest != mine["sha256"]:
            raise DeniedError(f"equivocation: {b.issuer} signed two different trust bundles as version {b.version}",
                              hint="keep the one held; ask the publisher why, and publish a higher version")
        return True
    return False


def _import_denied(e: Exception, *_: object) -> Event:
    if isinstance(e, VerificationError):
        return Event("trust.import", "deny", reason=e.reason, metadata={"detail": e.detail})
    return Event("trust.import", "deny", metadata={"detail": e.message if isinstance(e, DeniedError) else str(e)})


def _import_event(b: Bundle, changes: Changes) -> Event:
    return Event("trust.import", "ok", principal=b.issuer, metadata={"version": b.version, **changes.describe(), "unchanged": changes.unchanged})


@recording_denials(_import_denied)
def import_bundle(ctx: Context, token: str, *, recorder: Recorder | None = None,
                  then: Callable[[Bundle, Changes], None] | None = None) -> tuple[Bundle, Changes]:
    """Apply a bundle: verify it, check its version and what it may define, then hold exactly its
    principals from its signer. Records a ``trust.import`` event under the home lock once applied (a
    refusal as a deny), then runs ``then(bundle, changes)``; if either fails, every file is put back."""
    from .verify import StoreTrust

    store = Store(ctx.home)
    b = verify_bundle(token, StoreTrust(store))
    with ctx.home.lock():
        doc = _load(ctx.home)
        held = doc["imported"]
        if _check_version(b, held):
            changes = Changes(unchanged=True)
            undoing(lambda: None, then, b, changes, recorder=recorder, event=_import_event(b, changes))
            return b, changes
        wanted = _check_allowed(ctx, store, b, held)
        old_names = list(held.get(b.issuer, {}).get("names", []))
        new_names = [p.name for p in wanted]
        touched = sorted(set(old_names) | set(new_names))
        saved = {n: store.saved(store.principal_path(n)) for n in touched}
        saved_state = store.saved(_path(ctx.home))
        added, changed = [], []
        try:
            for p in wanted:
                before = store.get(p.name)
                if before is None:
                    added.append(p.name)
                elif before != p:
                    changed.append(p.name)
                if before != p:
                    store.put(p)
            removed = [n for n in old_names if n not in new_names]
            for n in removed:
                store.delete(n)
            held[b.issuer] = {"version": b.version, "iat": b.issued, "sha256": b.digest, "names": new_names}
            _save(ctx.home, doc)
            changes = Changes(tuple(added), tuple(removed), tuple(changed))
            undoing(lambda: None, then, b, changes, recorder=recorder, event=_import_event(b, changes))
        except BaseException:
            for n, data in saved.items():
                store.restore(store.principal_path(n), data)
            store.restore(_path(ctx.home), saved_state)
            raise
    return b, changes
