"""Shipping a home's audit log to the central store (PostgreSQL), and setting the store up.

- :func:`init_store` (``audit ship --init``): the schema, its group roles and row-level security
  (see :mod:`.pgschema`), applied as migrations; run by the role that will own the store.
- :func:`enroll` (``audit enroll``): maps a host's audit key (a C2SP verifier key) to a login role of
  its own, made here when missing, a member of ``agentctl_audit_host``.
- :func:`ship` (``audit ship --to``): ships the events of a home's log under checkpoints that cover
  them (making one first when events are not yet covered). Before anything is written it checks that
  each new checkpoint is signed by the enrolled key, matches this log's own tree, and is consistent
  with the newest checkpoint the store holds for the log; a log whose history differs from what the
  store holds (a copied home, a restored backup, an edited log) is a fork, refused with
  :class:`ForkError`, never skipped. Events go in batches (one INSERT of arrays each), each batch committed, the checkpoint
  row last: killed at any point, the next run resumes where the store stops, nothing doubled.

Database errors are :class:`~agentctl.errors.OperationalError` (exit 3); a refused log is
:class:`~agentctl.errors.DeniedError` (exit 1).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Callable

from ..errors import DeniedError, OperationalError, UsageError
from . import pgschema, proof, tree
from .note import NoteError, parse_checkpoint, parse_verifier_key, verify_note
from .pg import connect, describe, require_psycopg, scrub

__all__ = ["ForkError", "ShipResult", "Enrolled", "init_store", "enroll", "ship", "role_for_key", "BATCH"]

BATCH = 10_000
_LOCK_CLASS = 0x61756474  # "audt": the advisory lock space of per-log ship locks
_INSERT_EVENTS = (f"INSERT INTO {pgschema.SCHEMA}.events (log_id, seq, leaf, leaf_hash) "
                  "SELECT %b, * FROM unnest(%b::bigint[], %b::text[], %b::bytea[])")


class ForkError(DeniedError):
    """Two histories under one log (origin and key): the store holds events or a checkpoint this
    log does not. ``seq`` is the first sequence number that differs (or None)."""

    def __init__(self, message: str, *, seq: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.seq = seq


@dataclasses.dataclass(frozen=True)
class ShipResult:
    store: str
    origin: str
    key: str
    events: int  # shipped now
    checkpoints: int  # shipped now
    size: int  # events the store now holds of this log
    checkpoint_size: int  # the newest checkpoint the store holds covers this many

    def doc(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Enrolled:
    key: str
    role: str
    created: bool
    password: str | None  # set only when a login role was made here with a fresh password


def _db_error(url: str, what: str):
    psycopg = require_psycopg()

    def wrap(e: Exception) -> OperationalError:
        if isinstance(e, psycopg.errors.UndefinedTable) or isinstance(e, psycopg.errors.InvalidSchemaName):
            return OperationalError(f"{what}: the store {describe(url)} has no agentctl schema",
                                    hint="its owner runs: agentctl audit ship --init URL")
        if isinstance(e, psycopg.errors.InsufficientPrivilege):
            return OperationalError(f"{what}: the store refused it: {scrub(str(e), url)}",
                                    hint="hosts ship with their own enrolled role; the owner initializes the store and enrolls them (agentctl audit ship --init, agentctl audit enroll)")
        return OperationalError(f"{what} ({describe(url)}): {scrub(str(e), url)}")

    return psycopg.Error, wrap


# --- setting the store up -----------------------------------------------------------------------


def init_store(url: str) -> list[int]:
    """Create the schema (or apply new migrations); return the versions applied now."""
    psycopg = require_psycopg()
    errors, wrap = _db_error(url, "audit store init failed")
    conn = connect(url)
    try:
        with conn.transaction():
            cur = conn.cursor()
            cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_CLASS,))
            for group in (pgschema.HOST_GROUP, pgschema.READER_GROUP):
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,))
                if cur.fetchone() is None:
                    cur.execute(psycopg.sql.SQL("CREATE ROLE {} NOLOGIN").format(psycopg.sql.Identifier(group)))
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {pgschema.SCHEMA}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {pgschema.SCHEMA}.schema_migrations "
                        "(version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())")
            cur.execute(f"SELECT version FROM {pgschema.SCHEMA}.schema_migrations")
            done = {r[0] for r in cur.fetchall()}
            if done and max(done) > pgschema.SCHEMA_VERSION:
                raise OperationalError(f"the audit store {describe(url)} has schema version {max(done)}; this agentctl knows {pgschema.SCHEMA_VERSION}",
                                       hint="upgrade agentctl")
            applied = []
            for version, name, sql in pgschema.MIGRATIONS:
                if version in done:
                    continue
                cur.execute(sql)
                cur.execute(f"INSERT INTO {pgschema.SCHEMA}.schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                applied.append(version)
        return applied
    except errors as e:
        raise wrap(e) from None
    finally:
        conn.close()


def role_for_key(vkey: str) -> str:
    """The default database role of a host audit key: ``agentctl_host_<name>_<keyid>``, at most 63
    bytes, lower case letters, digits and ``_``."""
    name, _ = parse_verifier_key(vkey)
    kid = vkey.split("+")[1]
    safe = "".join(c if c.isascii() and c.isalnum() else "_" for c in name.lower()).strip("_")
    return f"agentctl_host_{safe[:63 - len('agentctl_host__') - len(kid)]}_{kid}"


def enroll(url: str, vkey: str, role: str | None = None, *, password: bool = True) -> Enrolled:
    """Enroll a host's audit key: map it to ``role`` (made LOGIN when missing, with a fresh random
    password unless ``password`` is false) and make the role a member of the host group. Enrolling
    the same key to the same role again changes nothing; to another role is refused."""
    require_psycopg()
    from psycopg import sql

    try:
        parse_verifier_key(vkey)
    except NoteError as e:
        raise UsageError(f"bad audit key: {e.message}", hint="give it as 'agentctl audit key' prints it (name+keyid+base64)") from None
    role = role or role_for_key(vkey)
    if not role or len(role.encode()) > 63 or not all(c.isascii() and (c.isalnum() or c == "_") for c in role):
        raise UsageError(f"bad role name {role!r}: letters, digits and '_', at most 63 bytes")
    errors, wrap = _db_error(url, "enroll failed")
    conn = connect(url)
    try:
        with conn.transaction():
            cur = conn.cursor()
            cur.execute(f"SELECT role FROM {pgschema.SCHEMA}.hosts WHERE key = %s", (vkey,))
            row = cur.fetchone()
            if row is not None and row[0] != role:
                raise UsageError(f"this key is already enrolled to the role {row[0]}")
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            created, secret = cur.fetchone() is None, None
            ident = sql.Identifier(role)
            if created:
                if password:
                    secret = secrets.token_urlsafe(24)
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(secret)))
                else:
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
            cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(pgschema.HOST_GROUP), ident))
            if row is None:
                cur.execute(f"INSERT INTO {pgschema.SCHEMA}.hosts (key, role) VALUES (%s, %s)", (vkey, role))
        return Enrolled(vkey, role, created, secret)
    except errors as e:
        raise wrap(e) from None
    finally:
        conn.close()


# --- shipping -----------------------------------------------------------------------------------


def _needs_checkpoint(log, max_lag: float, now: float) -> bool:
    """Whether events are not yet covered by a checkpoint (the event recording the latest checkpoint
    aside), or the latest checkpoint is older than half of ``max_lag`` (a heartbeat, so an idle host
    does not look like one that stopped shipping)."""
    from ..clock import parse_rfc3339

    row = log.conn.execute("SELECT size, time FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    if row is None:
        return True
    size, when = row
    if log.size > size + 1:
        return True
    if log.size == size + 1:
        ev = log.event(size + 1)
        if ev is None or '"event":"checkpoint"' not in ev[0]:
            return True
    try:
        return now - parse_rfc3339(when) > max_lag / 2
    except Exception:  # an unreadable time: take a new checkpoint
        return True


def ship(ctx, url: str, *, batch: int = BATCH, progress: Callable[[int, int], None] | None = None) -> ShipResult:
    """Ship this home's audit log to the store at ``url``; see the module's description."""
    from ..recording import HomeRecorder, audit_signer, host_keys
    from .note import verifier_key
    from .. import crypto

    if not ctx.home.config.audit:
        raise UsageError("auditing is off in config.toml (audit = false): there is nothing to ship")
    require_psycopg()
    rec = HomeRecorder(ctx)
    try:
        log = rec._open()
        name, seed = audit_signer(ctx, log)
        vkey = verifier_key(name, crypto.public_key(seed))
        if _needs_checkpoint(log, ctx.home.config.ship_max_lag, ctx.now()):
            rec.checkpoint()
        retired = [k for k in host_keys(ctx, log).get(name, []) if k != crypto.public_key(seed)]
        errors, wrap = _db_error(url, "audit ship failed")
        conn = connect(url)
        try:
            return _ship(conn, url, log, name, crypto.public_key(seed), vkey, retired, batch, progress)
        except errors as e:
            raise wrap(e) from None
        finally:
            conn.close()
    finally:
        rec.close()


def _ship(conn, url, log, name, public, vkey, retired, batch, progress) -> ShipResult:
    S = pgschema.SCHEMA
    cur = conn.cursor()
    cur.execute(f"SELECT role FROM {S}.hosts WHERE key = %s", (vkey,))
    if cur.fetchone() is None:
        conn.rollback()
        raise DeniedError(f"this host's audit key is not enrolled to this role in the store {describe(url)}: {vkey}",
                          hint="the store's owner runs: agentctl audit enroll --to URL KEY (KEY as 'agentctl audit key' prints it)")
    origin = log.origin
    cur.execute(f"INSERT INTO {S}.logs (origin, key) VALUES (%s, %s) ON CONFLICT (origin, key) DO NOTHING", (origin, vkey))
    cur.execute(f"SELECT id FROM {S}.logs WHERE origin = %s AND key = %s", (origin, vkey))
    row = cur.fetchone()
    if row is None:
        conn.rollback()
        raise DeniedError(f"the log {origin} is held in the store under another role", hint="its key is enrolled to another host's role")
    log_id = row[0]
    conn.commit()
    conn.autocommit = True
    cur.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_CLASS, log_id % 2**31))  # one shipper per log at a time
    conn.autocommit = False
    where = f"log {origin} ({name})"

    cur.execute(f"SELECT size, root, note FROM {S}.checkpoints WHERE log_id = %s ORDER BY size DESC LIMIT 1", (log_id,))
    cp = cur.fetchone()
    c_size, c_root = (cp[0], bytes(cp[1])) if cp else (0, tree.EMPTY_ROOT)
    cur.execute(f"SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM {S}.events WHERE log_id = %s", (log_id,))
    e_max, e_count = cur.fetchone()
    local = log.size
    fork_hint = "a copied home or a restored or edited log: two histories under one origin and key; see docs/fleet.md"
    if cp is not None:  # first: a forged checkpoint is named as such, whatever it claims
        try:
            if parse_checkpoint(verify_note(cp[2], name, public)) != (origin, c_size, c_root):
                raise NoteError("its note does not match its size and root columns")
        except NoteError as e:
            raise DeniedError(f"the store's newest checkpoint of {where} (size {c_size}) is not signed by this host's key: {e.message}",
                              hint="agentctl audit verify --from URL") from None
    if e_max > local or c_size > local:
        raise ForkError(f"fork: the store holds {max(e_max, c_size)} events of {where}; this home's log has {local}",
                        seq=local + 1, hint=fork_hint)
    if e_count != e_max:
        raise ForkError(f"the store's copy of {where} has gaps ({e_count} events up to {e_max})", hint="run agentctl audit verify --from URL")
    if cp is not None:
        if c_size and tree.root_at(c_size, log._get_node) != c_root:
            first = _first_difference(cur, log, log_id, c_size)
            raise ForkError(f"fork: {where} differs from the store's checkpoint of {c_size} events (first at event {first})",
                            seq=first, hint=fork_hint)
    if e_max > c_size:  # events of a ship that stopped before its checkpoint: they must be ours
        cur.execute(f"SELECT seq, leaf_hash FROM {S}.events WHERE log_id = %s AND seq > %s ORDER BY seq", (log_id, c_size))
        for seq, h in cur:
            if log._get_node(0, seq - 1) != bytes(h):
                raise ForkError(f"fork: event {seq} of {where} differs from the store's", seq=seq, hint=fork_hint)
    conn.rollback()  # end the read transaction

    plan, prev = [], (c_size, c_root)
    for size, root, note in log.checkpoints():
        if size <= c_size or size == 0:
            continue
        try:
            body = verify_note(note, name, public)
        except NoteError as e:
            if any(_verifies(note, name, k) for k in retired):
                continue  # signed before this host's key was rotated: a checkpoint of the log under its old key
            raise DeniedError(f"refused: checkpoint {size} of {where} is not signed by the enrolled key: {e.message}",
                              hint="agentctl audit verify checks this home's log") from None
        n_origin, n_size, n_root = parse_checkpoint(body)
        if n_origin != origin or n_size != size or n_root != root or tree.root_at(size, log._get_node) != root:
            raise DeniedError(f"refused: checkpoint {size} of {where} does not match this home's log",
                              hint="agentctl audit verify names what changed")
        if prev[0]:
            try:
                proof.verify_consistency(prev[0], size, prev[1], root, tree.consistency_proof(prev[0], size, log._get_node))
            except tree.ProofError as e:
                raise DeniedError(f"refused: checkpoint {size} of {where} is not consistent with checkpoint {prev[0]}: {e}") from None
        plan.append((size, root, note))
        prev = (size, root)

    total = (plan[-1][0] - e_max) if plan else 0
    shipped = 0
    sent = e_max
    for size, root, note in plan:
        while sent < size:
            hi = min(size, sent + batch)
            rows = log.leaves(sent, hi)
            if len(rows) != hi - sent or (rows and (rows[0][0] != sent + 1 or rows[-1][0] != hi)):
                raise OperationalError(f"the audit log lacks events {sent + 1}..{hi} that checkpoint {size} covers",
                                       hint="agentctl audit verify names what is missing")
            for seq, leaf, h in rows:  # what the checkpoint signed is the hashes: the leaves must match them
                if tree.leaf_hash(leaf.encode("utf-8")) != h:
                    raise DeniedError(f"refused: event {seq} of {where} does not match its hash (the log was edited)",
                                      hint="agentctl audit verify names what changed")
            # one INSERT of three arrays per batch, its parameters sent in binary (no text escaping of
            # the leaves): COPY FROM is refused on a table with row-level security
            cur.execute(_INSERT_EVENTS, (log_id, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
            conn.commit()
            shipped += hi - sent
            sent = hi
            if progress is not None:
                progress(shipped, total)
        cur.execute(f"INSERT INTO {S}.checkpoints (log_id, size, root, note) VALUES (%s, %s, %s, %s)", (log_id, size, root, note))
        conn.commit()
    return ShipResult(describe(url), origin, vkey, shipped, len(plan), sent, plan[-1][0] if plan else c_size)


def _verifies(note: str, name: str, public: bytes) -> bool:
    try:
        verify_note(note, name, public)
        return True
    except NoteError:
        return False


def _first_difference(cur, log, log_id: int, upto: int) -> int | None:
    cur.execute(f"SELECT seq, leaf_hash FROM {pgschema.SCHEMA}.events WHERE log_id = %s AND seq <= %s ORDER BY seq", (log_id, upto))
    expected = 1
    for seq, h in cur:
        if seq != expected or log._get_node(0, seq - 1) != bytes(h):
            return expected
        expected += 1
    return expected if expected <= upto else None
