"""What ``audit key``, ``audit prove --checkpoint`` and ``audit consistency`` print, checked by an
independent implementation written here from the specifications (not agentctl's code):

- C2SP signed-note verifier keys: ``name+hex(key hash)+base64(0x01 || public key)`` with the key hash
  the first 4 bytes of ``SHA-256(name || "\\n" || 0x01 || public key)``; signature lines
  ``— name base64(key hash || Ed25519 signature)`` (verified with PyNaCl directly);
- RFC 9162 §2.1.3.2 inclusion and §2.1.4.2 consistency verification (as Go's
  ``transparency-dev/merkle/proof`` implements them; there is no proof from size 0).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import nacl.exceptions
import nacl.signing
import pytest


def ok(cli, *args):
    r = cli(*args)
    assert r.code == 0, (args, r.stderr)
    return r


# --- the independent implementation ------------------------------------------------------------------


def parse_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    name, key_hash_hex, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    assert raw[0] == 0x01 and len(raw) == 33
    key_hash = bytes.fromhex(key_hash_hex)
    assert key_hash == hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    return name, key_hash, raw[1:]


def open_note(text: str, vkey: str) -> str:
    """The text of a signed note, when ``vkey`` signed it (else AssertionError)."""
    name, key_hash, public = parse_vkey(vkey)
    body, _, sigs = text.rpartition("\n\n")
    body += "\n"
    for line in sigs.splitlines():
        prefix = f"\u2014 {name} "
        if line.startswith(prefix):
            raw = base64.b64decode(line[len(prefix):], validate=True)
            if raw[:4] == key_hash:
                nacl.signing.VerifyKey(public).verify(body.encode(), raw[4:])  # raises when it does not verify
                return body
    raise AssertionError("no signature by the key")


def node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def check_inclusion(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def check_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    if m > n or m == 0:  # every tree extends the empty one: a "proof" of it proves nothing
        return False
    if m == n:
        return not proof and old_root == new_root
    if not proof:
        return False
    if m & (m - 1) == 0:
        proof = [old_root, *proof]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def checkpoint_fields(body: str) -> tuple[str, int, bytes]:
    origin, size, root = body.splitlines()[:3]
    return origin, int(size), base64.b64decode(root)


# --- the checks ---------------------------------------------------------------------------------------


def test_the_independent_consistency_check_agrees_with_the_vectors():
    """transparency-dev/merkle's consistency vectors (vendored under tests/data)."""
    from conftest import testdata

    files = sorted(testdata("merkle", "consistency").rglob("*.json"))
    assert len(files) > 50
    for f in files:
        v = json.loads(f.read_text())
        proof = [base64.b64decode(p) for p in v.get("proof") or []]
        r1, r2 = (base64.b64decode(v[k]) if v.get(k) else b"" for k in ("root1", "root2"))
        got = check_consistency(v["size1"], v["size2"], r1, r2, proof)
        assert got == (v.get("wantErr") is not True), f.name


@pytest.fixture
def log(cli, home, tmp_path) -> Path:
    """Checkpoints at three sizes: c1.txt, c2.txt, c3.txt."""
    for i in range(3):
        ok(cli, "keygen", f"agent:a{i}")
    ok(cli, "audit", "checkpoint", "-o", str(tmp_path / "c1.txt"))
    for i in range(5):
        ok(cli, "keygen", f"agent:b{i}")
    ok(cli, "audit", "checkpoint", "-o", str(tmp_path / "c2.txt"))
    for i in range(6):
        ok(cli, "keygen", f"agent:c{i}")
    ok(cli, "audit", "checkpoint", "-o", str(tmp_path / "c3.txt"))
    return tmp_path


def test_audit_key_is_a_note_verifier_key_that_opens_the_checkpoints(cli, log):
    vkey = ok(cli, "audit", "key").stdout.strip()
    name, _, public = parse_vkey(vkey)
    assert name.startswith("host:")
    b64 = ok(cli, "pubkey", name, "--format", "b64").stdout.strip()
    assert base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)) == public
    assert ok(cli, "--json", "audit", "key").json() == {"ok": True, "verifier_key": vkey, "name": name}
    sizes = []
    for f in ("c1.txt", "c2.txt", "c3.txt"):
        origin, size, _ = checkpoint_fields(open_note((log / f).read_text(), vkey))
        assert origin.startswith("agentctl.audit/") and "host" not in origin
        sizes.append(size)
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    forged = (log / "c1.txt").read_text().replace(f"\n{sizes[0]}\n", f"\n{sizes[0] + 1}\n")
    with pytest.raises(nacl.exceptions.BadSignatureError):
        open_note(forged, vkey)


def test_audit_key_in_a_new_home_makes_the_key_and_records_it(cli, home):
    vkey = ok(cli, "audit", "key").stdout.strip()
    assert ok(cli, "audit", "key").stdout.strip() == vkey  # made once
    events = ok(cli, "--json", "audit").json()["events"]
    assert [(e["event"], e["principal"]) for e in events] == [("keygen", vkey.split("+")[0])]


def test_prove_in_each_given_checkpoint(cli, log):
    vkey = ok(cli, "audit", "key").stdout.strip()
    for f in ("c1.txt", "c2.txt", "c3.txt"):
        _, size, root = checkpoint_fields(open_note((log / f).read_text(), vkey))
        for seq in (1, size // 2 + 1, size):
            doc = ok(cli, "--json", "audit", "prove", str(seq), "--checkpoint", str(log / f)).json()
            assert doc["tree_size"] == size and doc["checkpoint"] == (log / f).read_text()
            leaf_hash = hashlib.sha256(b"\x00" + doc["leaf"].encode()).digest()
            proof = [base64.b64decode(p) for p in doc["proof"]]
            assert check_inclusion(leaf_hash, seq - 1, size, proof, root)
            assert not check_inclusion(leaf_hash, seq - 1, size, proof, hashlib.sha256(b"x").digest())


def test_prove_refuses_an_event_past_the_checkpoint_and_a_checkpoint_of_another_log(cli, log, tmp_path):
    _, size, _ = checkpoint_fields((log / "c1.txt").read_text().split("\n\n")[0] + "\n")
    r = cli("audit", "prove", str(size + 1), "--checkpoint", str(log / "c1.txt"))
    assert r.code == 2 and f"the checkpoint covers {size} events, not event {size + 1}" in r.stderr
    other = (log / "c1.txt").read_text().replace("agentctl.audit/", "agentctl.audit/other", 1)
    (tmp_path / "other.txt").write_text(other)
    r = cli("audit", "prove", "1", "--checkpoint", str(tmp_path / "other.txt"))
    assert r.code == 2 and "is of another log" in r.stderr
    (tmp_path / "junk.txt").write_text("hello\n")
    assert cli("audit", "prove", "1", "--checkpoint", str(tmp_path / "junk.txt")).code == 2


def test_consistency_between_checkpoints(cli, log):
    vkey = ok(cli, "audit", "key").stdout.strip()
    cps = {f: checkpoint_fields(open_note((log / f).read_text(), vkey)) for f in ("c1.txt", "c2.txt", "c3.txt")}
    for old, new in (("c1.txt", "c2.txt"), ("c1.txt", "c3.txt"), ("c2.txt", "c3.txt"), ("c2.txt", "c2.txt")):
        doc = ok(cli, "--json", "audit", "consistency", str(log / old), str(log / new)).json()
        (_, m, r1), (_, n, r2) = cps[old], cps[new]
        assert (doc["old_size"], doc["new_size"]) == (m, n)
        assert base64.b64decode(doc["old_root"]) == r1 and base64.b64decode(doc["new_root"]) == r2
        proof = [base64.b64decode(p) for p in doc["proof"]]
        assert check_consistency(m, n, r1, r2, proof)
        if m < n:
            assert not check_consistency(m, n, r1, hashlib.sha256(b"x").digest(), proof)
    human = ok(cli, "audit", "consistency", str(log / "c1.txt"), str(log / "c3.txt")).stdout
    assert json.loads(human)["new_size"] == cps["c3.txt"][1]
    r = cli("audit", "consistency", str(log / "c3.txt"), str(log / "c1.txt"))
    assert r.code == 2 and "give the older one first" in r.stderr


def test_consistency_refuses_a_checkpoint_the_log_no_longer_matches(cli, log, home):
    import sqlite3

    from agentctl.audit import codec

    conn = sqlite3.connect(home / "audit.db", isolation_level=None)
    codec.register(conn)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET body = audit_pack(replace(audit_leaf(body), '\"ok\"', '\"error\"')) WHERE seq = 2")  # under the first checkpoint (size 4)
    conn.close()
    r = cli("audit", "consistency", str(log / "c1.txt"), str(log / "c3.txt"))
    assert r.code == 1 and "history was rewritten" in r.stderr


# --- checkpoint -o ------------------------------------------------------------------------------------


def test_checkpoint_to_stdout_with_dash(cli, home, tmp_path, monkeypatch):
    ok(cli, "keygen", "agent:a")
    monkeypatch.chdir(tmp_path)
    r = ok(cli, "audit", "checkpoint", "-o", "-")
    assert not (tmp_path / "-").exists()
    vkey = ok(cli, "audit", "key").stdout.strip()
    _, size, _ = checkpoint_fields(open_note(r.stdout, vkey))
    assert size == 2  # agent:a's keygen and the host key's


def test_a_failed_checkpoint_output_leaves_no_file_and_records_nothing(cli, home, tmp_path):
    ok(cli, "keygen", "agent:a")
    ok(cli, "audit", "checkpoint")  # the host key exists from here on
    before = ok(cli, "--json", "audit").json()["events"]
    if Path("/dev/full").exists():
        r = cli("audit", "checkpoint", "-o", "/dev/full")
        assert r.code == 3 and "cannot write /dev/full" in r.stderr
        assert ok(cli, "--json", "audit").json()["events"] == before
    r = cli("audit", "checkpoint", "-o", str(tmp_path / "no-such-dir" / "cp.txt"))
    assert r.code == 2 and not (tmp_path / "no-such-dir").exists()
    assert ok(cli, "--json", "audit").json()["events"] == before
    assert ok(cli, "audit", "verify").stdout.startswith("audit log intact")
