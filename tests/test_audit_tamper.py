"""Tampering with the audit log, as an attacker who can write the home would: with sqlite3 directly,
after dropping the triggers. Every edit, deletion, reordering, truncation and rewrite is found by
``agentctl audit verify`` (exit 1, ``agentctl: denied: audit log tampered…``), naming the events at
fault when the evidence can say which; a rewrite that recomputes every hash and drops the stored
checkpoints is found only against a checkpoint kept elsewhere.

The log (a copy per test): 12 events, a checkpoint at 12 stored and kept in ``kept.txt``, then its
checkpoint event (13) and two more events (14, 15); the host audit key is host:<this host>.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from agentctl import crypto, merkle
from agentctl.audit import AuditLog, codec
from agentctl.encoding import canonical_json
from agentctl.home import Home

FILE = {"AGENTCTL_KEYSTORE": "file"}  # the host key lives in the home, so a copy of the home can sign
DENIED = "agentctl: denied: audit log tampered"
TRIGGERS = tuple(f"{table}_no_{op}" for table in ("entries", "nodes", "checkpoints", "pruned", "dicts") for op in ("update", "delete"))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Built once per module with the CLI's entry point (the ``cli`` fixture lives per test)."""
    import contextlib
    import io
    import os

    from agentctl._cli.entry import main

    base = tmp_path_factory.mktemp("audit-template")
    home = base / "home"
    saved = dict(os.environ)
    for var in [v for v in os.environ if v.startswith("AGENTCTL_")]:
        del os.environ[var]
    os.environ.update({"AGENTCTL_HOME": str(home), "AGENTCTL_KEYSTORE": "file"})

    def run(*args: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        assert code in (0, 1), (args, err.getvalue())
        return out.getvalue()

    try:
        run("keygen", "user:alice")
        run("keygen", "agent:bot")
        grant = run("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "deploy.*:api/*").strip()
        for i in range(4):
            run("verify", grant, "--action", "deploy.staging", "--resource", f"api/s{i}")
            run("verify", grant, "--action", "admin.x", "--resource", f"api/s{i}")  # denials: outcome deny
        # 11 events so far (events 4..11: allow, deny, allow, …); the first checkpoint adds the host key's keygen (12), covers 12, records 13
        run("audit", "checkpoint", "-o", str(base / "kept.txt"))
        run("keygen", "agent:after1")
        run("keygen", "agent:after2")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return base


@pytest.fixture
def world(template, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(template / "home", home)
    shutil.copyfile(template / "kept.txt", tmp_path / "kept.txt")
    monkeypatch.setenv("AGENTCTL_HOME", str(home))
    monkeypatch.setenv("AGENTCTL_KEYSTORE", "file")
    return home


def verify(cli, *extra: str):
    """``audit verify`` in both modes: (exit code, stderr line, JSON document)."""
    human = cli("audit", "verify", *extra)
    js = cli("--json", "audit", "verify", *extra)
    assert human.code == js.code
    return human.code, human.stderr, js.json()


def assert_tampered(cli, stderr_line: str, first, last=None, *extra: str) -> dict:
    code, stderr, doc = verify(cli, *extra)
    assert code == 1, (stderr, doc)
    assert stderr == stderr_line + "\n"
    assert doc["ok"] is False
    assert (doc["first_bad_seq"], doc["last_bad_seq"]) == (first, first if last is None else last)
    assert stderr_line.endswith(doc["problem"])
    return doc


def tamper(home: Path):
    """A connection to the log with the triggers dropped, as an attacker would."""
    conn = sqlite3.connect(home / "audit.db", isolation_level=None)
    codec.register(conn)  # agentctl's functions (anyone can load them): the stored leaves are deflated
    for t in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    return conn


def put_back_triggers(conn) -> None:
    from agentctl.audit.schema import SCHEMA_VERSION, expected_schema

    want = expected_schema(tuple(range(1, SCHEMA_VERSION + 1)))
    for t in TRIGGERS:
        conn.execute(want[("trigger", t)][3])


def leaves(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT leaf FROM events ORDER BY seq")]


def rebuild(conn, docs: list[dict], *, checkpoints: str = "keep") -> None:
    """Replace the whole history by ``docs``: fresh leaves, leaf hashes, nodes and frontier, all
    consistent; the checkpoints table kept, emptied or dropped."""
    conn.execute("BEGIN")
    conn.execute("DELETE FROM entries")
    conn.execute("DELETE FROM nodes")
    tree = merkle.MemoryTree()
    for seq, doc in enumerate(docs, 1):
        leaf = canonical_json(dict(doc, seq=seq))
        h = merkle.leaf_hash(leaf)
        conn.execute("INSERT INTO entries (seq, body, tag) VALUES (?, ?, ?)", (seq, codec.pack(leaf), h[:4]))
        tree.append(h)
    for level in range(4, 64, 4):
        for idx in range(len(docs) >> level):
            conn.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, idx, tree.get_node(level, idx)))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'frontier'", (tree.compact_range().to_bytes().hex(),))
    if checkpoints == "empty":
        conn.execute("DELETE FROM checkpoints")
    elif checkpoints == "drop":
        conn.execute("DROP TABLE checkpoints")
    conn.execute("COMMIT")


def test_the_untouched_log_verifies(cli, world):
    code, stderr, doc = verify(cli, "--checkpoint", str(world.parent / "kept.txt"))
    assert code == 0, stderr
    assert doc == {"ok": True, "size": 15, "checkpoints_checked": 1, "problem": None, "first_bad_seq": None,
                   "last_bad_seq": None, "external_checkpoint": {"size": 12, "origin": doc["external_checkpoint"]["origin"]},
                   "pruned_through": 0}
    assert cli("audit", "verify").stdout == "audit log intact: 15 events, 1 checkpoint(s) verified\n"
    events = [json.loads(x) for x in leaves(tamper(world))]
    assert [e["outcome"] for e in events[3:5]] == ["allow", "deny"]
    assert [e["event"] for e in events[11:13]] == ["keygen", "checkpoint"]


# --- edits -------------------------------------------------------------------------------------------


def test_one_field_edited(cli, world):
    conn = tamper(world)
    conn.execute("""UPDATE entries SET body = audit_pack(replace(audit_leaf(body), '"outcome":"deny"', '"outcome":"allow"')) WHERE seq = 5""")
    assert json.loads(leaves(conn)[4])["outcome"] == "allow"
    assert_tampered(cli, f"{DENIED} (event 5): event 5 was edited: its content does not match its leaf hash", 5)


@pytest.mark.parametrize("seq, old, new, first, last", [(5, "deny", "allow", 1, 8), (14, "ok", "error", 13, 14)])
def test_one_field_edited_and_its_leaf_hash_recomputed(cli, world, seq, old, new, first, last):
    conn = tamper(world)
    conn.execute(f"""UPDATE entries SET body = audit_pack(replace(audit_leaf(body), '"outcome":"{old}"', '"outcome":"{new}"')) WHERE seq = ?""", (seq,))
    assert json.loads(leaves(conn)[seq - 1])["outcome"] == new
    conn.execute("UPDATE entries SET tag = ? WHERE seq = ?", (merkle.leaf_hash(leaves(conn)[seq - 1].encode())[:4], seq))
    # 15 events fill no stored level (every fourth: 16 events): the frontier's subtree over it pins it
    assert_tampered(cli, f"{DENIED} (events {first}..{last}): events {first}..{last} do not match the tree frontier: "
                    "one of them was edited along with its leaf hash, or the frontier was altered", first, last)


def test_one_field_edited_and_its_leaf_hash_recomputed_under_a_stored_node(cli, world):
    more(world, 20)
    conn = tamper(world)
    conn.execute("""UPDATE entries SET body = audit_pack(replace(audit_leaf(body), '"outcome":"deny"', '"outcome":"allow"')) WHERE seq = 5""")
    conn.execute("UPDATE entries SET tag = ? WHERE seq = 5", (merkle.leaf_hash(leaves(conn)[4].encode())[:4],))
    assert_tampered(cli, f"{DENIED} (events 1..16): events 1..16 do not match the tree stored over them (level 4, index 0): "
                    "one of them was edited or replaced (or a pruned one's kept leaf hash), or the tree was altered", 1, 16)


def more(home: Path, n: int) -> None:
    """``n`` more events, so the log fills stored tree levels (every fourth: 16, 256, … events)."""
    from agentctl.audit import Event

    log = AuditLog.open(Home(home))
    log.append([Event("keygen", "ok", principal=f"agent:more{i}") for i in range(n)])
    log.close()


def test_an_edit_with_the_triggers_put_back(cli, world):
    conn = tamper(world)
    conn.execute("""UPDATE entries SET body = audit_pack(replace(audit_leaf(body), '"api/s1"', '"api/s9"')) WHERE seq = 6""")
    put_back_triggers(conn)
    assert_tampered(cli, f"{DENIED} (event 6): event 6 was edited: its content does not match its leaf hash", 6)


def test_dropped_triggers_alone_are_reported(cli, world):
    tamper(world).close()
    assert_tampered(cli, f"{DENIED}: the append-only triggers were removed ({', '.join(TRIGGERS)}): the log was opened for editing", None)


def test_a_tree_node_altered(cli, world):
    more(world, 20)
    tamper(world).execute("UPDATE nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 1")
    assert_tampered(cli, f"{DENIED} (events 17..32): events 17..32 do not match the tree stored over them (level 4, index 1): "
                    "one of them was edited or replaced (or a pruned one's kept leaf hash), or the tree was altered", 17, 32)


def test_a_tree_node_deleted(cli, world):
    more(world, 20)
    tamper(world).execute("DELETE FROM nodes WHERE level = 4 AND idx = 0")
    assert_tampered(cli, f"{DENIED} (events 1..16): the tree node over events 1..16 (level 4, index 0) is missing", 1, 16)


def test_a_tree_node_added_at_a_level_never_stored(cli, world):
    tamper(world).execute("INSERT INTO nodes VALUES (2, 0, zeroblob(32))")
    assert_tampered(cli, f"{DENIED}: the tree holds a node at level 2, which no log has: the tree was altered", None)


def test_the_frontier_altered(cli, world):
    conn = tamper(world)
    raw = bytearray(bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = 'frontier'").fetchone()[0]))
    raw[-1] ^= 1
    conn.execute("UPDATE meta SET value = ? WHERE key = 'frontier'", (raw.hex(),))
    assert_tampered(cli, f"{DENIED} (event 15): event 15 does not match the tree frontier: it was edited along with its leaf hash, "
                    "or the frontier was altered", 15)


def test_a_stored_checkpoint_altered(cli, world):
    conn = tamper(world)
    conn.execute("UPDATE checkpoints SET root = zeroblob(32)")
    assert_tampered(cli, f"{DENIED}: the checkpoint stored at size 12 does not match its signed note (size 12, origin "
                    f"{conn.execute('SELECT value FROM meta WHERE key = ?', ('origin',)).fetchone()[0]})", None)
    conn.execute("UPDATE checkpoints SET note = replace(note, char(10) || '12' || char(10), char(10) || '11' || char(10))")
    code, stderr, doc = verify(cli)
    assert code == 1 and stderr.startswith(f"{DENIED}: the checkpoint stored at size 12 does not verify with the host audit key: ")
    assert doc["first_bad_seq"] is None


# --- deletions, reordering, truncation ---------------------------------------------------------------


def test_a_deleted_row(cli, world):
    tamper(world).execute("DELETE FROM entries WHERE seq = 7")
    assert_tampered(cli, f"{DENIED} (event 7): event 7 is missing: the log skips from 6 to 8", 7)


def test_deleted_rows(cli, world):
    tamper(world).execute("DELETE FROM entries WHERE seq IN (2, 3, 4)")
    assert_tampered(cli, f"{DENIED} (events 2..4): events 2..4 are missing: the log skips from 1 to 5", 2, 4)


@pytest.mark.parametrize("a, b", [(4, 5), (3, 10), (2, 14)])
def test_two_rows_swapped(cli, world, a, b):
    conn = tamper(world)
    rows = dict(((s, (body, t)) for s, body, t in conn.execute("SELECT seq, body, tag FROM entries WHERE seq IN (?, ?)", (a, b))))
    conn.execute("BEGIN")
    conn.execute("DELETE FROM entries WHERE seq IN (?, ?)", (a, b))
    conn.execute("INSERT INTO entries (seq, body, tag) VALUES (?, ?, ?), (?, ?, ?)", (a, *rows[b], b, *rows[a]))
    conn.execute("COMMIT")
    assert_tampered(cli, f"{DENIED} (event {a}): event {a} holds the record of event {b}: rows were reordered or replaced", a)


def test_the_tail_cut(cli, world):
    """Events 10..15 deleted: the tree frontier still records 15 events."""
    tamper(world).execute("DELETE FROM entries WHERE seq >= 10")
    assert_tampered(cli, f"{DENIED} (events 10..15): the log ends at event 9, but its tree frontier records 15 events: "
                    "events 10..15 were cut", 10, 15)


def test_the_last_event_cut(cli, world):
    tamper(world).execute("DELETE FROM entries WHERE seq = 15")
    assert_tampered(cli, f"{DENIED} (event 15): the log ends at event 14, but its tree frontier records 15 events: event 15 was cut", 15)


def test_the_tail_cut_with_its_tree_behind_a_checkpoint(cli, world):
    """Events 10..15 deleted with their tree nodes, and the frontier recomputed: the stored checkpoint
    at 12 still shows the cut; with it gone too, the kept checkpoint does."""
    conn = tamper(world)
    kept = leaves(conn)[:9]
    rebuild(conn, [json.loads(x) for x in kept])
    assert_tampered(cli, f"{DENIED} (events 10..12): the log is truncated: a checkpoint covers 12 events, the log holds 9", 10, 12)
    conn.execute("DELETE FROM checkpoints")
    put_back_triggers(conn)
    code, _, _ = verify(cli)
    assert code == 0  # nothing in the home shows it any more: the reason to keep checkpoints elsewhere
    assert_tampered(cli, f"{DENIED} (events 10..12): the log is truncated: the kept checkpoint covers 12 events, the log holds 9",
                    10, 12, "--checkpoint", str(world.parent / "kept.txt"))


def test_the_whole_log_deleted(cli, world):
    for p in world.glob("audit.*"):
        p.unlink()
    assert_tampered(cli, f"{DENIED}: the audit log {world / 'audit.db'} was deleted: principals were made here, and that is always recorded", None)
    assert_tampered(cli, f"{DENIED} (events 1..12): the log is gone: the kept checkpoint covers 12 events, this home has no audit log",
                    1, 12, "--checkpoint", str(world.parent / "kept.txt"))


# --- rewrites with fresh hashes ----------------------------------------------------------------------


def _rewritten(conn) -> list[dict]:
    """The same history with event 5's denial turned into an allow."""
    docs = [json.loads(x) for x in leaves(conn)]
    assert docs[4]["outcome"] == "deny"
    docs[4] = dict(docs[4], outcome="allow", reason=None)
    return docs


def test_rewritten_with_the_checkpoints_kept(cli, world):
    conn = tamper(world)
    rebuild(conn, _rewritten(conn))
    assert_tampered(cli, f"{DENIED}: events 1..12 do not match the checkpoint signed at size 12: history was rewritten", None)


def test_rewritten_after_a_second_checkpoint_narrows_it(cli, world):
    """A checkpoint at 4 that still matches bounds the rewrite to after it."""
    from agentctl.note import checkpoint_body, sign_note

    conn = tamper(world)
    docs = _rewritten(conn)
    seed = host_seed(cli, world)
    root4 = merkle.root([merkle.leaf_hash(x.encode()) for x in leaves(conn)[:4]])
    origin = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
    note = sign_note(checkpoint_body(origin, 4, root4), host(cli), seed)
    conn.execute("INSERT INTO checkpoints VALUES (4, ?, ?, '2026-01-01T00:00:00.000000Z')", (root4, note))
    rebuild(conn, docs)
    assert_tampered(cli, f"{DENIED}: events 5..12 do not match the checkpoint signed at size 12: history was rewritten "
                    "(the checkpoint at size 4 still matches)", None)


def test_rewritten_with_the_checkpoints_emptied_but_their_events_kept(cli, world):
    conn = tamper(world)
    rebuild(conn, _rewritten(conn), checkpoints="empty")
    assert_tampered(cli, f"{DENIED}: event 13 records a checkpoint of 12 events that is no longer stored: checkpoints were removed", None)


def test_rewritten_with_the_checkpoints_table_dropped(cli, world):
    conn = tamper(world)
    rebuild(conn, _rewritten(conn), checkpoints="drop")
    assert_tampered(cli, f"{DENIED}: the audit log's checkpoints table was removed", None)


def test_rewritten_without_any_checkpoint_only_a_kept_one_catches_it(cli, world):
    """The attacker empties the checkpoints and leaves the checkpoint event out of the new history:
    the home holds nothing to compare with. A checkpoint kept elsewhere does."""
    conn = tamper(world)
    docs = [d for d in _rewritten(conn) if d["event"] != "checkpoint"]
    rebuild(conn, docs, checkpoints="empty")
    put_back_triggers(conn)
    code, stderr, doc = verify(cli)
    assert code == 0 and doc["size"] == 14
    assert_tampered(cli, f"{DENIED}: the log is not an extension of the kept checkpoint (size 12): "
                    "history at or before event 12 was rewritten", None, None, "--checkpoint", str(world.parent / "kept.txt"))


def test_rewritten_and_resigned_with_the_host_key(cli, world):
    """Whoever holds the host key re-signs the rewritten log's checkpoint: only the kept one shows it."""
    conn = tamper(world)
    rebuild(conn, [d for d in _rewritten(conn) if d["event"] != "checkpoint"], checkpoints="empty")
    put_back_triggers(conn)
    log = AuditLog.open(Home(world))
    log.add_checkpoint(host(cli), host_seed(cli, world))
    log.close()
    assert verify(cli)[0] == 0
    assert_tampered(cli, f"{DENIED}: the log is not an extension of the kept checkpoint (size 12): "
                    "history at or before event 12 was rewritten", None, None, "--checkpoint", str(world.parent / "kept.txt"))


def test_rewritten_and_resigned_with_a_replaced_host_key(world):
    """The attacker also replaces the host's public key: the stored checkpoints verify with it, the
    kept checkpoint (signed by the real key) does not, and that is a denial, not a usage error."""
    attacker = bytes(range(1, 33))
    conn = tamper(world)
    rebuild(conn, [d for d in _rewritten(conn) if d["event"] != "checkpoint"], checkpoints="empty")
    put_back_triggers(conn)
    log = AuditLog.open(Home(world))
    name = log.meta("host_key")
    log.add_checkpoint(name, attacker)
    report = log.verify({name: [crypto.public_key(attacker)]}, (world.parent / "kept.txt").read_text())
    log.close()
    assert not report.ok and report.first_bad_seq is None
    assert report.problem.startswith(f"the kept checkpoint does not verify with this host's audit key (the note is not signed by {name}+")
    assert report.problem.endswith("): the audit key was replaced, or the checkpoint is forged")


def test_a_kept_checkpoint_of_another_log(cli, world, tmp_path):
    other = tmp_path / "other"
    assert cli("--home", str(other), "keygen", "user:x").code == 0
    assert cli("--home", str(other), "audit", "checkpoint", "-o", str(tmp_path / "other.txt")).code == 0
    origin = json.loads(cli("--json", "audit", "prove", "1").stdout)["checkpoint"].split("\n")[0]
    other_origin = (tmp_path / "other.txt").read_text().split("\n")[0]
    assert_tampered(cli, f"{DENIED}: the kept checkpoint is of another log ({other_origin}; this one is {origin})", None, None,
                    "--checkpoint", str(tmp_path / "other.txt"))


def test_a_file_that_is_no_checkpoint_is_a_usage_error(cli, world, tmp_path):
    (tmp_path / "junk.txt").write_text("hello\n")
    r = cli("audit", "verify", "--checkpoint", str(tmp_path / "junk.txt"))
    assert r.code == 2 and r.stderr.startswith("agentctl: error: the kept checkpoint is not a signed checkpoint: ")
    r = cli("audit", "verify", "--checkpoint", str(tmp_path / "missing.txt"))
    assert r.code == 2


def host(cli) -> str:
    return next(p["name"] for p in cli("--json", "list").json()["principals"] if p["name"].startswith("host:"))


def host_seed(cli, home: Path) -> bytes:
    from agentctl.context import Context
    from agentctl.identity import signer_for

    return signer_for(Context.for_home(home), host(cli)).seed
