"""How an audit event is stored: its canonical JSON, deflated against a preset dictionary.

The leaf of the Merkle tree is each event's RFC 8785 canonical JSON, exactly as before; only its
bytes on disk are compressed: raw DEFLATE (RFC 1951) with fixed Huffman codes (no code table to
store or to build per event) and a preset dictionary. A body is one byte naming its dictionary, then
the DEFLATE stream. Dictionary 0 is :data:`ZDICT`, built in; a log trains dictionaries of its own
from its first events (at :data:`TRAIN_AT` events: the newest event of each common kind after the
built-in one), kept in its ``dicts`` table, which, like the events, is never changed. An event of
~480 bytes takes ~130. :meth:`Codec.unpack` gives back the very bytes that were hashed.

The queryable fields are not stored a second time: SQLite indexes them by expression
(``audit_key(body, 'principal')``, ``audit_time(body)``), through the deterministic functions
:func:`register` installs on every connection that opens a log. So there is still one copy of the
truth, as when the columns were generated from the leaf.

Never change :data:`ZDICT`: every stored body depends on it. A new dictionary is a new migration.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zlib

__all__ = ["ZDICT", "WBITS", "TRAIN_AT", "Codec", "Connection", "of", "pack", "unpack", "key", "parse_time_us", "register"]

WBITS = -12  # raw DEFLATE, 4 KiB window (a dictionary and an event): no header or checksum (the leaf hash is the check)

#: Common substrings of events, most frequent last (DEFLATE codes nearer matches more cheaply).
ZDICT = (
    b'"event":"rotate""event":"revoke""event":"approve""event":"revocations_import""event":"revocations_export"'
    b'"event":"trust_import""event":"sync""event":"role""event":"audit_archive""event":"audit_prune"'
    b'"reason":"expired""reason":"revoked""reason":"bad_signature""reason":"untrusted_root""reason":"not_yet_valid"'
    b'"reason":"policy_denied""reason":"replayed""reason":"stale_revocations""reason":"stale_trust""outcome":"error"'
    b'{"action":null,"chain":[],"event":"checkpoint","host":"","jtis":[],"metadata":{"automatic":false,"size":'
    b'},"on_behalf_of":null,"outcome":"ok","principal":"host:","reason":null,"resource":null,"seq":'
    b'{"action":null,"chain":[],"event":"keygen","host":"","jtis":[],"metadata":{"attrs":{},"exported":false,'
    b'"keystore":"file","kid":"","roles":[]},"on_behalf_of":null,"outcome":"ok","principal":"agent:'
    b'{"action":null,"chain":["user:","agent:"],"event":"delegate","host":"","jtis":["'
    b'"],"metadata":{"aud":null,"expires_at":"2026-01-01T00:00:00Z","max_depth":0,"scope":"","to":"agent:'
    b'{"action":"","chain":[],"event":"sign","host":"","jtis":["'
    b'"],"metadata":{"approval":null,"embedded":false,"grant":true,"sha256":"'
    b'{"action":"","chain":[],"event":"verify","host":"","jtis":["'
    b'"],"metadata":{"claimed":true,"detail":" may not  on  (scope: )","presentation_sha256":"'
    b'","scope":null,"type":"grant"},"on_behalf_of":"user:","outcome":"deny","principal":"agent:","reason":"scope_denied"'
    b'{"action":"deploy.","chain":["user:","agent:"],"event":"verify","host":"","jtis":["'
    b'"],"metadata":{"detail":null,"presentation_sha256":"'
    b'","scope":"","type":"action"},"on_behalf_of":"user:","outcome":"allow","principal":"agent:","reason":null,"resource":"'
    b'","seq":1,"time":"2026-01-01T00:00:00.000000Z","version":"0.1.0"}'
)

_sha256 = hashlib.sha256
_dobj = zlib.decompressobj
STRATEGY = zlib.Z_FIXED
TRAIN_AT = (256, 65536)  # a log trains a dictionary when it reaches these many events
_BUDGET = (1 << -WBITS) - 262  # the most of a dictionary DEFLATE can use in this window


class Connection(sqlite3.Connection):
    """A connection that carries its log's :class:`Codec` (``codec.of(conn)``)."""

    codec: "Codec | None" = None


class Codec:
    """The dictionaries of one log, through one connection: pack, unpack, train."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.zdicts: dict[int, bytes] = {0: ZDICT}
        self.current = 0
        self._loaded = False
        self._primed: dict[int, "zlib._Compress"] = {}
        #: The body being inserted and what every index asks of it, worked out once (:meth:`remember`):
        #: [body, {indexed name: key}, time in µs, event, doc]. A function call of the index that gets
        #: these very bytes answers from it (the functions are deterministic: same bytes, same answer).
        self.hot: list = [None, {}, None, None, None]

    def load(self) -> dict[int, bytes]:
        try:
            rows = self.conn.execute("SELECT id, zdict FROM dicts ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # a log older than schema 3, or none yet
            rows = []
        for i, z in rows:
            self.zdicts[i] = bytes(z)
        self.current = max(self.zdicts)
        self._loaded = True
        return self.zdicts

    def forget(self) -> None:
        """Drop the dictionaries read or trained so far (after a rollback): the next use loads them."""
        self.zdicts = {0: ZDICT}
        self.current = 0
        self._loaded = False
        self._primed.clear()

    def zdict(self, i: int) -> bytes:
        if i not in self.zdicts:
            self.load()
            if i not in self.zdicts:
                raise ValueError(f"damaged event body: no dictionary {i}")
        return self.zdicts[i]

    def pack(self, leaf: bytes) -> bytes:
        """The stored body of a leaf, with the newest dictionary."""
        if not self._loaded:
            self.load()
        i = self.current
        primed = self._primed.get(i)
        if primed is None:
            primed = self._primed[i] = zlib.compressobj(6, zlib.DEFLATED, WBITS, 8, STRATEGY, self.zdicts[i])
        c = primed.copy()  # cheaper than priming a new one with the dictionary
        return bytes((i,)) + c.compress(leaf) + c.flush()

    def unpack(self, body: bytes) -> bytes:
        """The leaf (canonical JSON) a body holds; ``ValueError`` for a body that is not one."""
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise ValueError("damaged event body: not a blob")
        body = bytes(body)
        if not body:
            raise ValueError("damaged event body: empty")
        d = _dobj(WBITS, self.zdict(body[0]))
        try:
            leaf = d.decompress(body[1:])
        except zlib.error as e:
            raise ValueError(f"damaged event body: {e}") from None
        if not d.eof or d.unused_data:
            raise ValueError("damaged event body: truncated or with trailing bytes")
        return leaf

    def leaf_hash(self, body: bytes) -> bytes:
        return _sha256(b"\x00" + self.unpack(body)).digest()

    def maybe_train(self, seq: int) -> None:
        """Train after event ``seq`` when it is one of :data:`TRAIN_AT` (or, in a log upgraded past
        them that has none yet, every 4096th)."""
        if seq in TRAIN_AT or (seq % 4096 == 0 and self.current == 0):
            self.train()

    def train(self) -> None:
        """Add a dictionary made of this log's newest events (inside the caller's transaction)."""
        if not self._loaded:
            self.load()
        if self.current >= 255:
            return
        kinds: dict[tuple, list] = {}
        for (body,) in self.conn.execute("SELECT body FROM entries ORDER BY seq DESC LIMIT 256"):
            leaf = self.unpack(body)
            doc = json.loads(leaf)
            kind = (doc.get("event"), doc.get("outcome"))
            kinds.setdefault(kind, [0, leaf])[0] += 1
        samples = b"".join(leaf for _, leaf in sorted(kinds.values(), key=lambda x: x[0])[-4:])  # the most frequent last
        zdict = (ZDICT + samples)[-_BUDGET:]
        cur = self.conn.execute("INSERT INTO dicts (zdict) VALUES (?)", (zdict,))
        i = cur.lastrowid
        assert i is not None
        self.zdicts[i] = zdict
        self.current = i

    # --- for the index functions ---
    def remember(self, body: bytes, doc: dict) -> None:
        """Let the index functions read ``doc`` instead of inflating ``body`` again (an append knows it)."""
        s = str
        p, a, o, t, e = doc.get("principal"), doc.get("action"), doc.get("outcome"), doc.get("time"), doc.get("event")
        self.hot[:] = (body, {"principal": key(p) if isinstance(p, s) else None, "action": key(a) if isinstance(a, s) else None,
                              "outcome": key(o) if isinstance(o, s) else None},
                       parse_time_us(t) if isinstance(t, s) else None, e if isinstance(e, s) else None, doc)

    def doc(self, body: bytes) -> dict:
        body = bytes(body)
        hot = self.hot
        doc = hot[4] if body == hot[0] else None
        if doc is None:
            doc = json.loads(self.unpack(body))
            if not isinstance(doc, dict):
                raise ValueError("an event body is not a JSON object")
        return doc

    def field(self, body: bytes, key: str):
        value = self.doc(body).get(key)
        return value if isinstance(value, str) else None

    def field_key(self, body: bytes, name: str) -> int | None:
        return key(self.field(body, name))

    def time_us(self, body: bytes) -> int | None:
        return parse_time_us(self.field(body, "time"))


def of(conn: sqlite3.Connection) -> Codec:
    """The codec of a log's connection (made by :func:`register`)."""
    c = getattr(conn, "codec", None)
    return c if isinstance(c, Codec) else Codec(conn)


_zero = Codec.__new__(Codec)
_zero.conn, _zero.zdicts, _zero.current, _zero._loaded = None, {0: ZDICT}, 0, True  # type: ignore[assignment]
_zero._primed = {}
_zero.hot = [None, {}, None, None, None]


def pack(leaf: bytes) -> bytes:
    """A body with the built-in dictionary (what migration 3 stores; any log reads it)."""
    return _zero.pack(leaf)


def unpack(body: bytes) -> bytes:
    """A body packed with the built-in dictionary (use :func:`of` for a log's own)."""
    return _zero.unpack(body)


def key(value: str | None) -> int | None:
    """A name as its index key: 23 bits of CRC-32 (a 3-byte integer in SQLite). Names that collide
    are told apart by the query, which compares the name itself."""
    return None if value is None else zlib.crc32(value.encode("utf-8")) & 0x7FFFFF


def parse_time_us(text: str | None) -> int | None:
    # the fixed shape agentctl writes: 2026-12-02T15:30:32.123456Z
    if text is None or len(text) != 27 or text[10] != "T" or text[-1] != "Z":
        return None
    try:
        days = days_from_civil(int(text[0:4]), int(text[5:7]), int(text[8:10]))
        secs = days * 86400 + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
        return secs * 1_000_000 + int(text[20:26])
    except ValueError:
        return None


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date, as ``calendar.timegm`` counts them (a
    month outside 1-12 or a year outside 1-9999 is a ValueError, as there; the day is not checked,
    as there), without importing calendar (and locale) on every append."""
    if not (1 <= month <= 12 and 1 <= year <= 9999):
        raise ValueError(f"no date {year}-{month}")
    y = year - (month <= 2)
    era, yoe = divmod(y, 400)
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _safe(fn):
    def wrapped(*args):
        try:
            return fn(*args)
        except (ValueError, TypeError):
            return None  # a damaged body indexes as NULL; audit verify names it
    return wrapped


def register(conn: sqlite3.Connection) -> Codec:
    """Install the deterministic functions the log's indexes, triggers and view use; the codec."""
    c = of(conn)
    if isinstance(conn, Connection):
        conn.codec = c
    hot, field, field_key, time_us = c.hot, _safe(c.field), _safe(c.field_key), _safe(c.time_us)

    # the row an append inserts (remembered) is answered without a call below: eight calls a row
    def audit_field(body, name):
        if name == "event" and body == hot[0]:
            return hot[3]
        return field(body, name)

    def audit_key(body, name):
        if body == hot[0]:
            k = hot[1].get(name, False)
            if k is not False:
                return k
        return field_key(body, name)

    def audit_time(body):
        return hot[2] if body == hot[0] else time_us(body)

    conn.create_function("audit_field", 2, audit_field, deterministic=True)
    conn.create_function("audit_key", 2, audit_key, deterministic=True)
    conn.create_function("audit_time", 1, audit_time, deterministic=True)
    conn.create_function("audit_leaf", 1, _safe(lambda body: c.unpack(body).decode("utf-8")), deterministic=True)
    conn.create_function("audit_leaf_hash", 1, _safe(c.leaf_hash), deterministic=True)
    conn.create_function("audit_pack", 1, lambda text: pack(text.encode("utf-8") if isinstance(text, str) else bytes(text)),
                         deterministic=True)
    return c
