"""Reading the central audit store: the fleet query and the readers' own verification.

The checks :func:`~.ship.ship` makes run on the host that ships, so a reader repeats them and trusts
only the enrolled keys: :func:`verify_store` recomputes every log's RFC 6962 tree from the stored
leaves, checks every checkpoint's signature against the key the log is enrolled under and its root
against the tree at its size (every consecutive pair of checkpoints is then consistent: both are roots
of the one leaf sequence), and with a state directory keeps the newest checkpoint seen per log and
reports a log now shorter than it, or no longer matching it. It reports (without failing) a log whose
newest checkpoint reached the store longer than ``max_lag`` ago.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ..errors import OperationalError
from . import pgschema, tree
from .note import NoteError, parse_checkpoint, parse_verifier_key, verify_note
from .pg import connect, describe, require_psycopg, scrub

__all__ = ["LogReport", "StoreReport", "verify_store", "query_store", "query_conn"]

S = pgschema.SCHEMA


@dataclasses.dataclass(frozen=True)
class LogReport:
    origin: str
    key: str
    role: str
    size: int
    checkpoint_size: int
    checkpoints: int
    ok: bool
    problem: str | None = None
    seq: int | None = None  # the first event named by the problem
    lagging: bool = False
    last_received: str | None = None
    root: str | None = None  # hex of the newest checkpoint's root

    def doc(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StoreReport:
    store: str
    logs: tuple[LogReport, ...]
    gone: tuple[str, ...] = ()  # logs the state had seen that the store no longer holds

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.logs) and not self.gone

    def doc(self) -> dict:
        return {"ok": self.ok, "store": self.store, "logs": [r.doc() for r in self.logs], "gone": list(self.gone),
                "lagging": [r.origin for r in self.logs if r.lagging]}


def _wrap(url: str, what: str):
    psycopg = require_psycopg()

    def wrap(e: Exception) -> OperationalError:
        if isinstance(e, (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)):
            return OperationalError(f"{what}: the store {describe(url)} has no agentctl schema", hint="its owner runs: agentctl audit ship --init URL")
        return OperationalError(f"{what} ({describe(url)}): {scrub(str(e), url)}")

    return psycopg.Error, wrap


def _state_file(state_dir: Path, origin: str, key: str) -> Path:
    return state_dir / (hashlib.sha256(f"{origin}\n{key}".encode()).hexdigest()[:32] + ".json")


def verify_store(url: str, *, state_dir: Path | None = None, max_lag: float = 3600, now: float | None = None) -> StoreReport:
    """Verify every log in the store; see the module's description. Updates ``state_dir`` with the
    newest checkpoint of each log that verified."""
    errors, wrap = _wrap(url, "audit verify failed")
    conn = connect(url)
    reports = []
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT id, origin, key, role FROM {S}.logs ORDER BY id")
        logs = cur.fetchall()
        for log_id, origin, key, role in logs:
            reports.append(_verify_log(conn, log_id, origin, key, role, state_dir, max_lag, now))
        conn.rollback()
    except errors as e:
        raise wrap(e) from None
    finally:
        conn.close()
    gone: list[str] = []
    if state_dir is not None and state_dir.is_dir():
        held = {_state_file(state_dir, r.origin, r.key).name for r in reports}
        for f in sorted(state_dir.glob("*.json")):
            if f.name not in held:
                try:
                    gone.append(json.loads(f.read_text("utf-8"))["origin"])
                except (OSError, ValueError, KeyError):
                    raise OperationalError(f"damaged state file {f}", hint="remove it only if you trust the store as it is now") from None
    if state_dir is not None:
        _save_state(state_dir, reports)
    return StoreReport(describe(url), tuple(reports), tuple(gone))


def _verify_log(conn, log_id, origin, key, role, state_dir, max_lag, now) -> LogReport:
    cur = conn.cursor()
    cur.execute(f"SELECT size, root, note, received FROM {S}.checkpoints WHERE log_id = %s ORDER BY size", (log_id,))
    cps = cur.fetchall()
    base = dict(origin=origin, key=key, role=role, checkpoints=len(cps))
    newest = cps[-1][0] if cps else 0
    last = cps[-1][3] if cps else None
    lagging = last is None or (now is not None and now - last.timestamp() > max_lag)
    base.update(checkpoint_size=newest, lagging=lagging, last_received=last.isoformat() if last else None,
                root=bytes(cps[-1][1]).hex() if cps else None)

    def bad(problem: str, seq: int | None, size: int) -> LogReport:
        return LogReport(size=size, ok=False, problem=problem, seq=seq, **base)

    try:
        name, public = parse_verifier_key(key)
    except NoteError as e:
        return bad(f"the log's key is not a verifier key: {e.message}", None, 0)
    roots: dict[int, bytes] = {}
    for size, root, note, _ in cps:
        try:
            body = verify_note(note, name, public)
            c_origin, c_size, c_root = parse_checkpoint(body)
        except NoteError as e:
            return bad(f"checkpoint {size} is not signed by the enrolled key {name}: {e.message}", size or None, 0)
        if (c_origin, c_size, c_root) != (origin, size, bytes(root)):
            return bad(f"checkpoint {size}'s columns differ from its signed note", size or None, 0)
        roots[size] = bytes(root)
    state = _load_state(state_dir, origin, key)
    want: dict[int, bytes | None] = dict(roots)
    if state is not None:
        want.setdefault(state["size"], None)

    cr, seen = tree.CompactRange(), {}
    cur.execute(f"SELECT seq, leaf, leaf_hash FROM {S}.events WHERE log_id = %s ORDER BY seq", (log_id,))
    if 0 in want:
        seen[0] = cr.root()
    for seq, leaf, h in cur:
        if seq != cr.size + 1:
            return bad(f"event {cr.size + 1} is missing", cr.size + 1, cr.size)
        lh = tree.leaf_hash(leaf.encode("utf-8"))
        if lh != bytes(h):
            return bad(f"event {seq} was altered (its hash does not match its contents)", seq, seq)
        try:
            inner = json.loads(leaf).get("seq")
        except (ValueError, AttributeError):
            inner = None
        if inner != seq:
            return bad(f"event {seq} holds sequence number {inner!r}", seq, seq)
        cr.append(lh)
        if cr.size in want:
            seen[cr.size] = cr.root()
    size = cr.size
    for c_size, c_root in roots.items():
        if c_size > size:
            return bad(f"checkpoint {c_size} covers events the store does not hold (it holds {size})", size + 1, size)
        if seen[c_size] != c_root:
            return bad(f"the events do not match checkpoint {c_size}: history was rewritten", c_size, size)
    if state is not None:
        s_size, s_root = state["size"], bytes.fromhex(state["root"])
        if s_size > size or s_size > newest:
            return bad(f"the log is now shorter than seen before: {newest} events checkpointed, {s_size} seen (rewound)",
                       newest + 1, size)
        if seen.get(s_size) != s_root:
            return bad(f"the log is not consistent with its checkpoint of {s_size} events seen before (forked or rewritten)",
                       s_size, size)
    return LogReport(size=size, ok=True, **base)


def _load_state(state_dir: Path | None, origin: str, key: str) -> dict | None:
    if state_dir is None:
        return None
    f = _state_file(state_dir, origin, key)
    try:
        doc = json.loads(f.read_text("utf-8"))
        if doc["origin"] != origin or doc["key"] != key or not isinstance(doc["size"], int):
            raise ValueError
        bytes.fromhex(doc["root"])
        return doc
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise OperationalError(f"damaged state file {f}", hint="remove it only if you trust the store as it is now") from None


def _save_state(state_dir: Path, reports) -> None:
    from ..home import atomic_write

    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise OperationalError(f"cannot create the state directory {state_dir}: {e.strerror or e}") from None
    for r in reports:
        if not r.ok or not r.checkpoints:
            continue  # a failed log keeps the checkpoint seen before, so it is reported again
        old = _load_state(state_dir, r.origin, r.key)
        if old is not None and old["size"] >= r.checkpoint_size:
            continue
        doc = {"origin": r.origin, "key": r.key, "size": r.checkpoint_size, "root": r.root}
        atomic_write(_state_file(state_dir, r.origin, r.key), json.dumps(doc).encode())


def query_store(url: str, *, agent=None, action=None, outcome=None, since=None, until=None, limit=None, host=None) -> list[dict]:
    """Events from every log in the store matching every filter, newest first (time, then seq);
    each carries ``origin`` of its log."""
    errors, wrap = _wrap(url, "audit query failed")
    conn = connect(url)
    try:
        return query_conn(conn, agent=agent, action=action, outcome=outcome, since=since, until=until, limit=limit, host=host)
    except errors as e:
        raise wrap(e) from None
    finally:
        conn.close()


def query_conn(conn, *, agent=None, action=None, outcome=None, since=None, until=None, limit=None, host=None) -> list[dict]:
    """:func:`query_store` on an open connection (psycopg errors are the caller's to wrap).

    agent, action and host each have an index ``(column, time)`` that yields a filter's rows newest
    first, so with a ``limit`` the store reads about that many index entries (sorting only rows of
    equal time by seq): at 1,000,000 events a fraction of a millisecond (bench/fleet.py)."""
    from ..clock import rfc3339

    where, args = [], []
    for column, value in (("e.principal", agent), ("e.action", action), ("e.outcome", outcome), ("e.host", host)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if since is not None:
        where.append("e.time >= %s")
        args.append(rfc3339(since, micro=True))
    if until is not None:
        where.append("e.time <= %s")
        args.append(rfc3339(until, micro=True))
    sql = (f"SELECT e.leaf, l.origin FROM {S}.events e JOIN {S}.logs l ON l.id = e.log_id"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.time DESC, e.seq DESC")
    if limit is not None:
        sql += " LIMIT %s"
        args.append(min(limit, 2**63 - 1))
    cur = conn.cursor()
    cur.execute(sql, args)
    return [{**json.loads(leaf), "origin": origin} for leaf, origin in cur.fetchall()]
