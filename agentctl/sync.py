"""``agentctl sync``: fetch every source, verify what it serves, apply it, keep the last good copy.

Per source: a conditional request (ETag, Last-Modified), within its timeout and the size limit; a token
of the source's kind signed by its signer (whose key is already trusted here, or pinned by ``key``:
imported on first sync, any other key refused afterwards); no rollback, no equivocation. The outcome
of each is a :class:`SourceResult`: ``current`` (nothing new), ``updated``, ``refused`` (exit 1) or
``unreachable`` (exit 3). Nothing here decides freshness: that is signed time (:mod:`.sources`).

A source's outcome and its ``sync`` event succeed or fail together (SPEC, "Audit log"): what it changes
here (the bundle's principals or the list's revocations, the pinned signer, its state in
``sources.toml`` and its last good copy) is written under the home lock and the event recorded before
the lock is let go; when the event cannot be recorded, every file is put back and the recorder's error
goes on, as :mod:`.changes` describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .changes import record, undoing
from .context import Context
from .errors import DeniedError, Error, OperationalError, UsageError, VerificationError
from .events import Event
from .sources import Source, SourceStates

if TYPE_CHECKING:
    from .recording import Recorder

__all__ = ["SourceResult", "sync", "sync_source", "refresh_stale", "exit_code"]


@dataclass(frozen=True)
class SourceResult:
    source: Source
    status: str  # current | updated | refused | unreachable
    version: int | None = None
    iat: int | None = None
    reason: str | None = None  # a reason code, for a refusal that has one
    detail: str = ""
    self_revoked: bool = False
    changes: dict = field(default_factory=dict)

    def describe(self) -> dict:
        from .clock import rfc3339

        doc: dict = {"url": self.source.url, "kind": self.source.kind, "signer": self.source.signer, "status": self.status,
               "version": self.version, "iat": rfc3339(self.iat) if self.iat is not None else None}
        if self.reason:
            doc["reason"] = self.reason
        if self.detail:
            doc["detail"] = self.detail
        if self.source.kind == "revocations":
            doc["self_revoked"] = self.self_revoked
        if self.changes:
            doc["changes"] = self.changes
        return doc

    def event(self) -> Event:
        """The ``sync`` audit event of this outcome: ok (current, updated), deny (refused) or error
        (unreachable), by the source's signer."""
        outcome = {"current": "ok", "updated": "ok", "refused": "deny", "unreachable": "error"}[self.status]
        meta = {k: v for k, v in self.describe().items() if k != "signer"}
        return Event("sync", outcome, principal=self.source.signer, reason=self.reason if self.status == "refused" else None, metadata=meta)


def exit_code(results) -> int:
    """0 every source current or updated, 1 a source refused, 3 a source unreachable (refused wins)."""
    statuses = {r.status for r in results}
    return 1 if "refused" in statuses else 3 if "unreachable" in statuses else 0


def sync(ctx: Context, *, fetcher=None, progress: Callable[[Source], None] | None = None,
         recorder: Recorder | None = None) -> list[SourceResult]:
    """Sync every source of this home's config, in order, recording each outcome's ``sync`` event
    (:meth:`SourceResult.event`) together with it (:func:`sync_source`); ``progress(source)`` runs
    before each fetch. A failure to record stops the sync there and goes on: the source it concerns is
    left as it was (the sources before it are applied and recorded)."""
    sources = ctx.home.config.sources
    if not sources:
        raise UsageError(f"no [[sources]] in {ctx.home.config_file}", hint="see docs/fleet.md for a source's settings")
    results = []
    for s in sources:
        if progress is not None:
            progress(s)
        results.append(sync_source(ctx, s, fetcher=fetcher, recorder=recorder))
    return results


def sync_source(ctx: Context, s: Source, *, fetcher=None, recorder: Recorder | None = None) -> SourceResult:
    """Fetch, verify and apply one source, and record its ``sync`` event with ``recorder`` (None
    records nothing) under the home lock, together with what it changed; when that event cannot be
    recorded, nothing about the source changes and the recorder's error goes on."""
    from .fetch import Fetcher, Refused

    fetcher = fetcher or Fetcher()
    states = _Ledger(ctx.home, recorder)
    state = states.get(s.url)
    try:
        fetched = fetcher.get(s.url, timeout=s.timeout, etag=state.get("etag"), last_modified=state.get("last_modified"))
    except Refused as e:
        return _failed(ctx, states, s, state, "refused", None, e.message)
    except OperationalError as e:
        return _failed(ctx, states, s, state, "unreachable", None, e.message)
    if fetched.body is None:  # 304: nothing new, and nothing refreshed
        return _current(ctx, states, s, state)
    try:
        token = fetched.body.decode("ascii").strip()
    except UnicodeDecodeError:
        return _failed(ctx, states, s, state, "refused", "malformed", "the source serves something that is not a token")
    import hashlib

    digest = hashlib.sha256(token.encode("ascii")).hexdigest()
    if digest == state.get("sha256"):
        return _current(ctx, states, s, state, fetched)

    def keep(version: int, iat: int, self_revoked: bool, changes: dict, unchanged: bool) -> SourceResult:
        r = SourceResult(s, "current" if unchanged else "updated", version, iat, self_revoked=self_revoked, changes=changes)
        new = {"etag": fetched.etag, "last_modified": fetched.last_modified, "fetched": int(ctx.now()), "sha256": digest}
        try:
            return states.commit(s.url, new, r, token=token)
        except Error as e:  # not the source's fault: past the refusals below, and nothing stays applied
            raise _NotKept(e) from e

    try:
        r = _apply(ctx, s, token, keep)
    except _NotKept as e:
        raise e.error from None
    except VerificationError as e:
        return _failed(ctx, states, s, state, "refused", e.reason, e.detail)
    except (DeniedError, UsageError) as e:
        return _failed(ctx, states, s, state, "refused", None, e.message)
    except Error as e:  # a damaged store, a disk error: not the source's fault, and not applied
        return _failed(ctx, states, s, state, "unreachable", None, e.message)
    if r.self_revoked:
        ctx.notify(f"the revocation list from {s.url} revokes its own signer {s.signer}: it is that signer's last; "
                   "change the source's signer or key to go on")
    return r


class _NotKept(Exception):
    """An applied source whose state or event could not be written: its files are put back, and the
    error goes on as it is, never taken for the source's refusal or unreachability."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error


class _Ledger:
    """The sources' state (:class:`~agentctl.sources.SourceStates`), written only together with the
    ``sync`` event of the outcome it reflects."""

    def __init__(self, home, recorder: Recorder | None) -> None:
        self.states = SourceStates(home)
        self.recorder = recorder

    def get(self, url: str) -> dict:
        return self.states.get(url)

    def commit(self, url: str, state: dict, result: SourceResult, token: str | None = None) -> SourceResult:
        """Replace ``url``'s state (with ``token``, its last good copy too) and record ``result``'s event;
        when either fails, put both files back and let the error go on. The caller holds the home lock."""
        from .store import Store

        store = Store(self.states.home)
        copy_path = self.states.copy_path(url)
        saved_state, saved_copy = store.saved(self.states.path), store.saved(copy_path)

        def undo() -> None:
            store.restore(self.states.path, saved_state)
            store.restore(copy_path, saved_copy)

        try:
            if token is not None:
                state = dict(state, copy=self.states.keep_copy(url, token))
            self.states.put(url, state)
        except BaseException:
            undo()
            raise
        undoing(undo, None, recorder=self.recorder, event=result.event())
        return result


def _apply(ctx: Context, s: Source, token: str, keep: Callable[[int, int, bool, dict, bool], SourceResult]) -> SourceResult:
    """Verify and apply ``token`` as ``s``'s, then, still under the home lock, return ``keep(version,
    iat, self_revoked, changes, unchanged)`` (the source's state and event). When anything fails, the
    import puts its files back and the signer pinned now is removed."""
    from . import jws

    typ = jws.TRUST if s.kind == "trust" else jws.REVOCATIONS
    t = jws.decode(token, typ, limit=jws.MAX_LIST_BYTES)  # a token of another kind is refused here
    if t.claims.get("iss") != s.signer:
        raise VerificationError("untrusted_root", f"the source's signer is {s.signer}, but what it serves is signed by {t.claims.get('iss')!r}")
    kept: list[SourceResult] = []
    with ctx.home.lock():
        pinned = _pin(ctx, s)
        try:
            if s.kind == "trust":
                from .trust_bundles import import_bundle

                def bundle_kept(b, changes) -> None:
                    kept.append(keep(b.version, b.issued, False, changes.describe() if not changes.unchanged else {}, changes.unchanged))

                import_bundle(ctx, token, then=bundle_kept)
                return kept[0]
            from .revocation_lists import import_list

            held_before = _held_list_version(ctx, s.signer)

            def list_kept(rl, added: int) -> None:
                kept.append(keep(rl.version, rl.issued, rl.self_revoked, {"added": added}, rl.version == held_before))

            import_list(ctx, token, then=list_kept)
            return kept[0]
        except BaseException:
            if pinned:
                from .store import Store

                Store(ctx.home).delete(s.signer)
            raise


def _held_list_version(ctx: Context, signer: str) -> int:
    from .revocation_lists import _versions

    return int(_versions(ctx)["imported"].get(signer, 0))


def _pin(ctx: Context, s: Source) -> bool:
    """Make sure ``s.signer`` is trusted here with the pinned key; True when it was imported now."""
    from .encoding import thumbprint
    from .models import Key, Principal
    from .store import Store

    store = Store(ctx.home)
    p = store.get(s.signer)
    if p is None:
        if s.key is None:
            raise UsageError(f"the signer {s.signer} of source {s.url} is not a principal here, and the source pins no key",
                             hint="add key = \"did:key:…\" to the source, or import the signer first")
        found = store.find_key(thumbprint(s.key))
        if found is not None:
            raise DeniedError(f"the key pinned for {s.signer} already belongs to {found[0].name}; one key cannot be two principals")
        now = ctx.now()
        store.put(Principal(name=s.signer, origin="imported", created=now, keys=(Key(s.key, now),)))
        return True
    if s.key is not None and p.key(thumbprint(s.key)) is None:
        raise DeniedError(f"source {s.url} pins a key for {s.signer} that is not one of its keys here; a signer's key changes "
                          "only by a rotation statement signed with its current key",
                          hint=f"agentctl import {s.signer} --rotation FILE")
    return False


def _current(ctx: Context, states: _Ledger, s: Source, state: dict, fetched=None) -> SourceResult:
    """Nothing new: nothing is verified again, and the state is written only when it changes (an
    error to clear, new validators), so an unchanged source costs one conditional request and its
    ``sync`` event."""
    from .sources import newest_iat

    new = dict(state, error=None)
    if fetched is not None:
        new.update(etag=fetched.etag or state.get("etag"), last_modified=fetched.last_modified or state.get("last_modified"))
    with ctx.home.lock():
        result = SourceResult(s, "current", iat=newest_iat(ctx.home, s))
        if {k: v for k, v in new.items() if v is not None} == state:
            record(states.recorder, result.event())
            return result
        return states.commit(s.url, dict(new, fetched=int(ctx.now())), result)


def _failed(ctx: Context, states: _Ledger, s: Source, state: dict, status: str, reason, detail: str) -> SourceResult:
    with ctx.home.lock():
        error = f"{reason + ': ' if reason else ''}{detail}"[:300]
        return states.commit(s.url, dict(state, error=error), SourceResult(s, status, reason=reason, detail=detail))


def refresh_stale(home, sources, now: float, fetcher=None) -> bool:
    """For a verifier: fetch each of ``sources`` (those with ``refresh = true``) that is stale at
    ``now``, once, within its timeout. True when one was updated."""
    from .sources import staleness

    ctx = Context(home)
    updated = False
    for s in sources:
        if staleness(home, s, now)[0]:
            updated = sync_source(ctx, s, fetcher=fetcher).status == "updated" or updated
    return updated
