"""Recording decisions: where audit events go.

A :class:`Recorder` is anything with ``record(*events)``; every operation that changes state or
decides hands its :class:`~agentctl.events.Event`\\ s to one. Three come with agentctl:

- :class:`HomeRecorder`: the SQLite audit log of a home. It opens an existing log at once, so a log
  that cannot be opened fails the operation before anything changes; it creates a missing log only
  when there is something to record; it makes the host's audit key (a ``host:`` principal) on first
  use and signs a checkpoint every ``checkpoint_every`` events (config.toml). A failed append raises
  :class:`~agentctl.errors.OperationalError`: no decision goes unrecorded. With ``audit = false`` in
  config.toml it records nothing.
- :class:`NoRecorder`: the explicit "no audit" value, for a verifier that must not record.
- :class:`MemoryRecorder`: keeps the events in ``.events``, for tool servers and tests.

The functions below serve the audit commands: :func:`audit_key` (the host audit key as a C2SP note
verifier key) and :func:`verify_home` (the tamper check of a home's log, which never creates one).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Literal, overload

from .errors import Error, ExistsError, OperationalError
from .events import Event

if TYPE_CHECKING:
    from .context import Context

__all__ = ["Recorder", "HomeRecorder", "NoRecorder", "NO_AUDIT", "MemoryRecorder", "audit_signer", "host_keys", "audit_key", "verify_home"]


class Recorder(ABC):
    """Where audit events go."""

    @abstractmethod
    def record(self, *events: Event) -> None:
        """Record ``events``, durably and in order, or raise :class:`~agentctl.errors.Error` having
        recorded none of them."""


class NoRecorder(Recorder):
    """Records nothing: the explicit choice of no audit (:data:`NO_AUDIT` is the one to pass)."""

    enabled = False

    def record(self, *events: Event) -> None:
        return None

    def __repr__(self) -> str:
        return "NO_AUDIT" if self is NO_AUDIT else "NoRecorder()"


#: The explicit "record nothing" value: ``Verifier(trust, recorder=NO_AUDIT)``.
NO_AUDIT = NoRecorder()


class MemoryRecorder(Recorder):
    """Keeps every event recorded in :attr:`events`, oldest first."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, *events: Event) -> None:
        for ev in events:
            if not isinstance(ev, Event):
                raise TypeError(f"a recorder records Events, not {type(ev).__name__}")
        self.events.extend(events)

    def __repr__(self) -> str:
        return f"MemoryRecorder({len(self.events)} events)"


class HomeRecorder(Recorder):
    """The audit log of ``ctx.home``. Constructing it opens an existing log (and closes it again), so
    a broken log fails before the caller acts; a missing one is created only by :meth:`record`.
    ``hold=True`` (a long-running process: the MCP proxies, a guard) keeps the log open from one
    :meth:`record` to the next, each still durable when it returns, until :meth:`close`."""

    def __init__(self, ctx: Context, *, keep_open: bool = False, hold: bool = False) -> None:
        self.ctx = ctx
        self.log: Any = None  # the AuditLog, while open
        self.hold = hold
        keep_open = keep_open or hold
        self.enabled = ctx.home.config.audit
        if not self.enabled:
            return
        if (ctx.home.path / "audit.db").exists():
            self._open()  # fail now, before the caller acts, if the log cannot be opened
            if not keep_open:  # keep_open: the first record() appends on this connection (one open, not two)
                self.close()
        elif ctx.home.path.is_dir() and not os.access(ctx.home.path, os.W_OK | os.X_OK):
            raise OperationalError(f"cannot create the audit log in {ctx.home.path}: the directory is not writable")

    def _open(self):
        if self.log is None:
            from .audit.log import AuditLog

            self.log = AuditLog.open(self.ctx.home)
        return self.log

    def record(self, *events: Event) -> None:
        if not self.enabled or not events:
            return
        try:
            seqs = self._open().append(list(events), self.ctx.clock)
            every = self.ctx.home.config.checkpoint_every
            if every and any(s % every == 0 for s in seqs):
                self.checkpoint(auto=True)
        except BaseException:
            self.close()  # a held log is opened afresh by the next record
            raise
        if not self.hold:
            self.close()  # the last connection to close folds the WAL back into the database

    @overload
    def checkpoint(self, auto: Literal[False] = False, deliver: Callable[[str], None] | None = None) -> tuple[str, tuple[int, bytes, str]]: ...

    @overload
    def checkpoint(self, auto: bool, deliver: Callable[[str], None] | None = None) -> tuple[str, tuple[int, bytes, str]] | None: ...

    def checkpoint(self, auto: bool = False, deliver: Callable[[str], None] | None = None) -> tuple[str, tuple[int, bytes, str]] | None:
        """Sign and store a checkpoint and record it: ``(signer, (size, root, note))``. Automatic ones
        that fail only say so (through ``ctx.notify``) and return None. ``deliver(note)`` runs before
        the checkpoint is committed (to write it out): when it raises, nothing is stored or recorded."""
        try:
            log = self._open()
            name, seed = audit_signer(self.ctx, log)
            ev = Event("checkpoint", "ok", principal=name, metadata={"automatic": auto})  # add_checkpoint adds the size
            return name, log.add_checkpoint(name, seed, self.ctx.clock, ev, deliver)
        except Error as e:
            if not auto:
                raise
            self.ctx.notify(f"automatic audit checkpoint skipped: {e.message}")
            return None

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def __repr__(self) -> str:
        return f"HomeRecorder({self.ctx.home.path})"


def audit_signer(ctx: Context, log) -> tuple[str, bytes]:
    """The host's audit key, ``(name, seed)``: a ``host:`` principal created (and its keygen recorded)
    on first use; its name is kept in the log's meta table."""
    from .audit.log import host_name
    from .identity import keygen, signer_for
    from .store import Store

    name = log.meta("host_key")
    store = Store(ctx.home)
    if name is None:
        base = f"host:{host_name()}"
        candidate, n = base, 1
        while True:
            p = store.get(candidate)
            if p is None:
                try:
                    principal, _ = keygen(ctx, candidate, roles=("audit",), attrs=("purpose=audit-log",))
                except ExistsError:  # another process made it meanwhile: look again, once
                    if store.get(candidate) is None:
                        raise
                    continue
                log.append([Event("keygen", "ok", principal=candidate, metadata={"kid": principal.current.kid, "purpose": "audit key"})], ctx.clock)
                break
            if p.origin == "local" and p.keystore:
                break
            n += 1
            candidate = f"{base}:audit{n}"
        name = candidate
        log.set_meta("host_key", name)
    return name, signer_for(ctx, name).seed


def host_keys(ctx: Context, log) -> dict[str, list[bytes]]:
    """Every public key (current and retired) of the log's host audit key, by name; {} before the
    first checkpoint."""
    from .store import Store

    name = log.meta("host_key")
    if name is None:
        return {}
    p = Store(ctx.home).get(name)
    return {name: [k.public for k in p.keys]} if p else {}


def audit_key(ctx: Context) -> str:
    """The host's audit key as a C2SP note verifier key (``name+keyid+base64``), as Go's
    ``note.NewVerifier`` reads it. The key is made on first use (that is recorded)."""
    from .audit.note import verifier_key
    from .store import Store

    if not ctx.home.config.audit:
        raise OperationalError("auditing is off in config.toml (audit = false): this home has no audit key")
    rec = HomeRecorder(ctx)
    try:
        name, _ = audit_signer(ctx, rec._open())
    finally:
        rec.close()
    return verifier_key(name, Store(ctx.home).require(name).current.public)


def verify_home(ctx: Context, external: str | None = None, progress=None):
    """The tamper check of the home's audit log: a :class:`~agentctl.audit.tamper.VerifyReport`.
    It never creates the log or writes to it.

    A file at ``audit.db`` that is not an agentctl audit log (empty, not SQLite, another database)
    is reported as tampering, and so is a missing one when the home shows that it had one (principals,
    the log's lock or journal files, or a kept checkpoint of more than no events). A missing log in a
    home with none of those raises :class:`OperationalError` (exit 3): there is nothing to verify."""
    from .audit.log import AuditLog, NotAnAuditLog
    from .audit.note import parse_kept_checkpoint
    from .audit.tamper import VerifyReport

    ext = parse_kept_checkpoint(external) if external is not None else None  # a usage error first
    ext_doc = {"size": ext[0], "origin": ext[2]} if ext else None
    path = ctx.home.path / "audit.db"
    try:
        log = AuditLog.open_existing(path)
    except NotAnAuditLog as e:
        return VerifyReport(False, 0, 0, f"the audit log {e.problem}", None, ext_doc)
    except OperationalError:
        if os.path.lexists(path):
            raise  # there, but unreadable: an operational problem, not evidence
        if not ctx.home.config.audit and not ext:
            raise OperationalError(f"there is no audit log in {ctx.home.path}: auditing is off in config.toml (audit = false)") from None
        if ext and ext[0]:
            return VerifyReport(False, 0, 0, f"the log is gone: the kept checkpoint covers {ext[0]} events, this home has no audit log",
                                1, ext_doc, ext[0])
        left = [p.name for p in (path.with_name("audit.lock"), path.with_name("audit.db-wal"), path.with_name("audit.db-shm")) if p.exists()]
        if left or _has_principals(ctx):
            why = f"its {', '.join(left)} remain{'s' if len(left) == 1 else ''}" if left else "principals were made here, and that is always recorded"
            return VerifyReport(False, 0, 0, f"the audit log {path} was deleted: {why}", None, ext_doc)
        raise OperationalError(f"there is no audit log in {ctx.home.path} yet: nothing has been recorded here",
                               hint="every command that changes or decides something records it") from None
    try:
        return log.verify(host_keys(ctx, log), external, progress)
    finally:
        log.close()


def _has_principals(ctx: Context) -> bool:
    from .store import Store

    try:
        return bool(Store(ctx.home).names())
    except Error:
        return True  # a store that cannot be read is no evidence that the home is new
