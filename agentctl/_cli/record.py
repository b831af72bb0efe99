"""Recording decisions in the audit log from the commands.

A command opens its :class:`Recorder` before it acts, so a log that cannot be opened fails the command
(exit 3) before anything changes; it records after it acts, and a failed append fails the command too.
With ``audit = false`` in config.toml nothing is opened or written.
"""

from __future__ import annotations

import os

from ..context import Context

__all__ = ["Recorder"]


class Recorder:
    """Opens an existing audit log at once (so a broken one fails the command before it acts) and
    creates a missing one only when there is something to record (so bad input changes nothing)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = None
        self.enabled = ctx.home.config.audit
        if not self.enabled:
            return
        if (ctx.home.path / "audit.db").exists():
            self._open()  # fail now, before the command acts, if the log cannot be opened
            self.close()
        elif ctx.home.path.is_dir() and not os.access(ctx.home.path, os.W_OK | os.X_OK):
            from ..errors import OperationalError

            raise OperationalError(f"cannot create the audit log in {ctx.home.path}: the directory is not writable")

    def _open(self):
        if self.log is None:
            from ..audit import AuditLog

            self.log = AuditLog.open(self.ctx.home)
        return self.log

    def record(self, *events) -> None:
        if not self.enabled or not events:
            return
        try:
            seqs = self._open().append(list(events), self.ctx.clock)
            every = self.ctx.home.config.checkpoint_every
            if every and any(s % every == 0 for s in seqs):
                self.checkpoint(auto=True)
        finally:
            self.close()  # the last connection to close folds the WAL back into the database

    def checkpoint(self, auto: bool = False):
        """Sign and store a checkpoint; record it. Automatic ones that fail only say so."""
        from ..audit import Event
        from ..errors import Error

        try:
            self._open()
            name, seed = audit_signer(self.ctx, self)
            ev = Event("checkpoint", "ok", principal=name, metadata={"automatic": auto})  # add_checkpoint adds the size
            return name, self.log.add_checkpoint(name, seed, self.ctx.clock, ev)
        except Error as e:
            if not auto:
                raise
            self.ctx.notify(f"automatic audit checkpoint skipped: {e.message}")
            return None

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


def audit_signer(ctx: Context, rec: Recorder) -> tuple[str, bytes]:
    """The host's audit key: a ``host:`` principal created on first use."""
    from ..audit import Event, host_name
    from ..errors import ExistsError
    from ..identity import keygen, signer_for
    from ..store import Store

    log = rec.log
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
    from ..store import Store

    name = log.meta("host_key")
    if name is None:
        return {}
    p = Store(ctx.home).get(name)
    return {name: [k.public for k in p.keys]} if p else {}
