"""How an audit event is stored: its canonical JSON, deflated against a fixed dictionary.

The leaf of the Merkle tree is each event's RFC 8785 canonical JSON, exactly as before; only its
bytes on disk are compressed (raw DEFLATE, RFC 1951, with a preset dictionary of the keys and
values most events share), so an event of ~400 bytes takes ~100. :func:`unpack` gives back the very
bytes that were hashed; nothing is re-encoded.

The queryable fields are not stored a second time: SQLite indexes them by expression
(``audit_field(body, 'principal')``, ``audit_time(body)``), through the deterministic functions
:func:`register` installs on every connection that opens a log. So there is still one copy of the
truth, as when the columns were generated from the leaf.

Never change :data:`ZDICT`: every stored body depends on it. A new dictionary is a new migration.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import sqlite3
import zlib

__all__ = ["ZDICT", "pack", "unpack", "leaf_hash_of", "field", "key", "time_us", "register", "WBITS"]

WBITS = -11  # raw DEFLATE, 2 KiB window (an event is smaller): no header or checksum (the leaf hash is the check)

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


_primed = zlib.compressobj(6, zlib.DEFLATED, WBITS, 4, zlib.Z_DEFAULT_STRATEGY, ZDICT)


def pack(leaf: bytes) -> bytes:
    """The stored body of a leaf."""
    c = _primed.copy()  # cheaper than priming a new one with the dictionary
    return c.compress(leaf) + c.flush()


def unpack(body: bytes) -> bytes:
    """The leaf (canonical JSON) a body holds; ``ValueError`` for a body that is not one."""
    d = _dobj(WBITS, ZDICT)
    try:
        leaf = d.decompress(body)
    except zlib.error as e:
        raise ValueError(f"damaged event body: {e}") from None
    if not d.eof:
        raise ValueError("damaged event body: truncated")
    return leaf


def leaf_hash_of(body: bytes) -> bytes:
    return _sha256(b"\x00" + unpack(body)).digest()


_cache: dict[bytes, dict] = {}
_times: dict[bytes, "int | None"] = {}


def remember(body: bytes, doc: dict) -> None:
    """Let the index functions read ``doc`` instead of inflating ``body`` again (an append knows it)."""
    if len(_cache) > 256:
        _cache.clear()
        _times.clear()
    _cache[body] = doc


def _doc(body: bytes) -> dict:
    doc = _cache.get(body)
    if doc is None:
        doc = json.loads(unpack(body))
        if not isinstance(doc, dict):
            raise ValueError("an event body is not a JSON object")
    return doc


def field(body: bytes, key: str):
    """A top-level string field of the event (None when absent or not a string)."""
    value = _doc(bytes(body)).get(key)
    return value if isinstance(value, str) else None


def key(value: str | None) -> int | None:
    """A name as its index key: 23 bits of CRC-32 (a 3-byte integer in SQLite). Names that collide
    are told apart by the query, which compares the name itself."""
    return None if value is None else zlib.crc32(value.encode("utf-8")) & 0x7FFFFF


def field_key(body: bytes, name: str) -> int | None:
    return key(field(body, name))


def time_us(body: bytes) -> int | None:
    """The event's ``time`` as microseconds since the epoch (None when it cannot be read)."""
    body = bytes(body)
    if body in _times:
        return _times[body]
    t = parse_time_us(field(body, "time"))
    if body in _cache:  # four indexes ask for it as the row is inserted
        _times[body] = t
    return t


def parse_time_us(text: str | None) -> int | None:
    # the fixed shape agentctl writes: 2026-12-02T15:30:32.123456Z
    if text is None or len(text) != 27 or text[10] != "T" or text[-1] != "Z":
        return None
    try:
        secs = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19])))
        return secs * 1_000_000 + int(text[20:26])
    except ValueError:
        return None


def _safe(fn):
    def wrapped(*args):
        try:
            return fn(*args)
        except (ValueError, TypeError):
            return None  # a damaged body indexes as NULL; audit verify names it
    return wrapped


def _leaf_text(body):
    return unpack(bytes(body)).decode("utf-8")


def _leaf_hash(body):
    return leaf_hash_of(bytes(body))


def register(conn: sqlite3.Connection) -> None:
    """Install the deterministic functions the log's indexes, triggers and view use."""
    conn.create_function("audit_field", 2, _safe(field), deterministic=True)
    conn.create_function("audit_key", 2, _safe(field_key), deterministic=True)
    conn.create_function("audit_time", 1, _safe(time_us), deterministic=True)
    conn.create_function("audit_leaf", 1, _safe(_leaf_text), deterministic=True)
    conn.create_function("audit_leaf_hash", 1, _safe(_leaf_hash), deterministic=True)
    conn.create_function("audit_pack", 1, lambda text: pack(text.encode("utf-8") if isinstance(text, str) else bytes(text)),
                         deterministic=True)
