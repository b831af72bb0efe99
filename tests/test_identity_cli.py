"""The identity commands as a user and a script see them (SPEC, "Identity", "Exit codes and messages").

Every command runs in four output modes: human, ``--json`` before the command, ``--json`` after it,
and ``AGENTCTL_FORMAT=json``. In JSON mode stdout is exactly one JSON document, also on failure. A
failure is one ``agentctl: error: …`` line (plus an optional ``agentctl: hint: …`` line) on stderr,
the exit code of the SPEC table, no traceback, and nothing changed on disk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import stat
import sys
from pathlib import Path

import nacl.signing
import pytest

from conftest import snapshot

MODES = ("human", "json-before", "json-after", "json-env")
PREFIX = "AGENTCTL-SECRET-KEY-1"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
P = 2**255 - 19


# --- independent decoders: the tests do not trust agentctl's own encoding module -----------------


def b64u_dec(text: str) -> bytes:
    assert re.fullmatch(r"[A-Za-z0-9_-]*", text), text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64u_enc(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b58_dec(text: str) -> bytes:
    n = 0
    for ch in text:
        n = n * 58 + B58.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def b58_enc(raw: bytes) -> str:
    n, out = int.from_bytes(raw, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def raw_from_did(did: str) -> bytes:
    assert did.startswith("did:key:z6Mk"), did
    decoded = b58_dec(did[len("did:key:z"):])
    assert decoded[:2] == b"\xed\x01" and len(decoded) == 34
    return decoded[2:]


def did_from_raw(raw: bytes) -> str:
    return "did:key:z" + b58_enc(b"\xed\x01" + raw)


def rfc7638(x: str) -> str:
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64u_enc(hashlib.sha256(members.encode()).digest())


def nacl_verifies(public: bytes, token: str) -> bool:
    h, p, s = token.split(".")
    try:
        nacl.signing.VerifyKey(public).verify(f"{h}.{p}".encode(), b64u_dec(s))
        return True
    except Exception:
        return False


# --- running the CLI --------------------------------------------------------------------------------


class Agentctl:
    """Runs agentctl in one output mode and checks what every run must satisfy."""

    def __init__(self, cli, mode: str) -> None:
        self.cli, self.mode = cli, mode

    @property
    def json(self) -> bool:
        return self.mode != "human"

    def __call__(self, *args: str, env: dict | None = None, input: str = ""):
        args = list(args)
        env = {"AGENTCTL_FORMAT": None, **(env or {})}
        if self.mode == "json-before":
            args = ["--json", *args]
        elif self.mode == "json-after":
            args = [*args, "--json"]
        elif self.mode == "json-env":
            env["AGENTCTL_FORMAT"] = "json"
        r = self.cli(*args, env=env, input=input)
        assert "Traceback" not in r.stdout + r.stderr
        if self.json:
            doc = json.loads(r.stdout)  # exactly one document: json.loads refuses trailing data
            assert isinstance(doc, dict) and doc["ok"] is (r.code == 0), r.stdout
        return r

    def ok(self, *args: str, **kw):
        r = self(*args, **kw)
        assert r.code == 0, r.stderr
        return r

    def fails(self, code: int, *args: str, match: str | None = None, **kw):
        r = self(*args, **kw)
        assert_failure(r, code, json_mode=self.json, match=match)
        return r


def assert_failure(r, code: int, *, json_mode: bool, match: str | None = None, prefix: str = "agentctl: error: ") -> None:
    assert r.code == code, (r.code, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert 1 <= len(lines) <= 2, r.stderr
    assert lines[0].startswith(prefix), r.stderr
    if len(lines) == 2:
        assert lines[1].startswith("agentctl: hint: "), r.stderr
    for line in lines:
        assert line == line.strip() and line.isprintable()
    if match is not None:
        assert re.search(match, lines[0]), lines[0]
    if json_mode:
        doc = json.loads(r.stdout)
        assert doc["ok"] is False and doc["exit_code"] == code
        if prefix == "agentctl: error: ":
            assert doc["message"] == lines[0][len(prefix):]
    else:
        assert r.stdout == ""


@pytest.fixture(params=MODES)
def run(request, cli, home) -> Agentctl:
    return Agentctl(cli, request.param)


@pytest.fixture
def plain(cli, home) -> Agentctl:
    """Human mode, for setting the scene."""
    return Agentctl(cli, "human")


def principal_doc(plain, name: str) -> dict:
    r = plain.ok("show", name, "--json")
    return r.json()["principal"]


def state(path: Path) -> dict[str, bytes]:
    """Every file a failed command must leave as it was: all but the audit log, which records decisions
    (its own tests cover it) and which SQLite may checkpoint when it is opened."""
    return {k: v for k, v in snapshot(path).items() if not Path(k).name.startswith("audit.")}


def fake_keyring() -> dict:
    path = Path(os.environ["AGENTCTL_TEST_KEYRING"])
    return json.loads(path.read_text()).get("agentctl", {}) if path.exists() else {}


# === keygen =================================================================================


def test_keygen_creates_a_principal_and_prints_its_did(run, home, plain):
    r = run.ok("keygen", "agent:code-reviewer:prod")
    doc = principal_doc(plain, "agent:code-reviewer:prod")
    if run.json:
        out = r.json()
        assert out["principal"] == doc
        assert "secret" not in out
    else:
        assert r.stdout == doc["did"] + "\n"
    assert f"created agent:code-reviewer:prod with key {doc['kid']}" in r.stderr
    assert doc["kind"] == "agent" and doc["origin"] == "local" and doc["status"] == "active"
    assert doc["keystore"] == "keyring"
    assert [k["status"] for k in doc["keys"]] == ["current"]
    assert doc["kid"] == rfc7638(b64u_enc(raw_from_did(doc["did"])))
    assert list(fake_keyring()) == [f"agent:code-reviewer:prod/{doc['kid']}"]


def test_keygen_records_roles_and_attributes(run, plain):
    run.ok("keygen", "agent:a", "--role", "reviewer", "--role", "ops", "--role", "reviewer", "--attr", "team=platform", "--attr", "env=prod")
    doc = principal_doc(plain, "agent:a")
    assert doc["roles"] == ["reviewer", "ops"]
    assert doc["attrs"] == {"team": "platform", "env": "prod"}


@pytest.mark.parametrize("flags", [("--role", "Bad Role"), ("--attr", "novalue"), ("--attr", "Team=x"), ("--no-store",)], ids=["role", "attr without =", "attr key", "--no-store alone"])
def test_keygen_refuses_bad_options_and_creates_nothing(run, home, tmp_path, flags):
    before = state(tmp_path)
    run.fails(2, "keygen", "agent:a", *flags)
    assert state(tmp_path) == before
    assert not home.exists()


def test_keygen_export_secret_prints_only_the_secret(run, plain):
    r = run.ok("keygen", "agent:ci", "--export-secret")
    secret = r.json()["secret"] if run.json else r.stdout.rstrip("\n")
    if not run.json:
        assert r.stdout == secret + "\n"
    assert secret.startswith(PREFIX) and "\n" not in secret
    assert secret not in r.stderr
    doc = principal_doc(plain, "agent:ci")
    assert doc["keystore"] == "keyring"
    from agentctl.secret import decode_secret

    s = decode_secret(secret)
    assert s.name == "agent:ci"
    assert nacl.signing.SigningKey(s.seed).verify_key.encode() == raw_from_did(doc["did"])
    assert fake_keyring()[f"agent:ci/{doc['kid']}"] == secret


@pytest.mark.parametrize("keystore", ["auto", "keyring", "file"])
def test_keygen_export_secret_no_store_keeps_no_copy_on_this_machine(run, plain, home, tmp_path, keystore):
    r = run.ok("keygen", "agent:ci", "--export-secret", "--no-store", env={"AGENTCTL_KEYSTORE": keystore})
    secret = r.json()["secret"] if run.json else r.stdout.rstrip("\n")
    if not run.json:
        assert r.stdout == secret + "\n"
    assert secret.startswith(PREFIX)
    assert fake_keyring() == {}
    assert not (home / "keys").exists()
    for path, data in snapshot(tmp_path).items():
        assert secret.encode() not in data, path
    doc = principal_doc(plain, "agent:ci")
    assert doc["keystore"] is None
    assert "not on this machine" in plain.ok("show", "agent:ci").stdout
    # it cannot sign here without the exported secret
    plain.fails(2, "rotate", "agent:ci", match="no secret key for 'agent:ci'")


def test_keygen_of_an_existing_name_is_refused(run, plain, tmp_path):
    plain.ok("keygen", "agent:a")
    before = state(tmp_path)
    r = run.fails(2, "keygen", "agent:a", match="principal 'agent:a' already exists")
    assert "agentctl: hint: to replace its key, run 'agentctl rotate agent:a'" in r.stderr
    assert state(tmp_path) == before


# === list, show ============================================================================


def test_list_of_an_empty_home(run, home):
    r = run.ok("list")
    if run.json:
        assert r.json() == {"ok": True, "principals": [], "authority_rule": "quick-start", "authority": {}}
    else:
        assert r.stdout == ""
        assert "no principals" in r.stderr
    assert not home.exists(), "reading creates nothing"


def test_list_shows_every_principal(run, plain, theirs):
    plain.ok("keygen", "agent:b", "--role", "ops")
    plain.ok("keygen", "user:alice")
    plain.ok("import", "service:billing", did_from_raw(theirs[1]))  # a key of its own: one key, one principal
    plain.ok("revoke", "user:alice")
    r = run.ok("list")
    if run.json:
        docs = r.json()["principals"]
        assert [d["name"] for d in docs] == ["agent:b", "service:billing", "user:alice"]
        assert [d["status"] for d in docs] == ["active", "active", "revoked"]
        assert [d["origin"] for d in docs] == ["local", "imported", "local"]
        assert docs[0] == principal_doc(plain, "agent:b")
    else:
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["NAME", "STATUS", "ORIGIN", "KEY", "ROLES", "AUTHORITY", "CREATED"]
        assert [l.split()[:3] for l in lines[1:]] == [["agent:b", "active", "local"], ["service:billing", "active", "imported"], ["user:alice", "revoked", "local"]]
        assert lines[1].split()[4] == "ops"


def test_show_a_principal(run, plain):
    plain.ok("keygen", "agent:a", "--role", "reviewer", "--attr", "team=x")
    r = run.ok("show", "agent:a")
    if run.json:
        doc = r.json()["principal"]
        assert doc["name"] == "agent:a" and doc["status"] == "active" and doc["revoked"] is None
        assert doc["roles"] == ["reviewer"] and doc["attrs"] == {"team": "x"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["created"])
        assert doc["keys"][0]["kid"] == doc["kid"] and doc["keys"][0]["retired"] is None
    else:
        doc = principal_doc(plain, "agent:a")
        fields = dict(re.split(r"\s{2,}", l, maxsplit=1) for l in r.stdout.split("\n\n")[0].splitlines())
        assert fields == {
            "name": "agent:a",
            "status": "active",
            "origin": "local",
            "created": doc["created"],
            "roles": "reviewer (label)",
            "authority": "none",
            "rule": "authority = quick-start: agent: principals have no authority of their own",
            "attributes": "team=x",
            "secret key": "keyring keystore",
            "did": doc["did"],
        }
        assert doc["kid"] in r.stdout


def test_show_reports_key_history_and_revocation(run, plain):
    plain.ok("keygen", "agent:a")
    first = principal_doc(plain, "agent:a")["kid"]
    plain.ok("rotate", "agent:a")
    second = principal_doc(plain, "agent:a")["kid"]
    plain.ok("revoke", "--key", first)
    doc = run.ok("show", "agent:a")
    if run.json:
        keys = doc.json()["principal"]["keys"]
        assert [(k["kid"], k["status"]) for k in keys] == [(first, "revoked"), (second, "current")]
        assert keys[0]["retired"] and keys[0]["revoked"] and keys[1]["revoked"] is None
        assert doc.json()["principal"]["status"] == "active"
    else:
        rows = {l.split()[0]: l.split()[1] for l in doc.stdout.split("\n\n")[1].splitlines()[1:]}
        assert rows == {first: "revoked", second: "current"}
    plain.ok("revoke", "agent:a", "--reason", "left the team")
    doc = run.ok("show", "agent:a")
    if run.json:
        p = doc.json()["principal"]
        assert p["status"] == "revoked" and p["revoked"]["reason"] == "left the team"
        assert {k["status"] for k in p["keys"]} == {"revoked"}
    else:
        assert re.search(r"^status\s+revoked since \S+Z \(left the team\)$", doc.stdout, re.M)


# === pubkey ================================================================================


@pytest.mark.parametrize("fmt", [None, "did", "jwk", "jwks", "b64"])
def test_pubkey_forms_all_name_the_same_key(run, plain, fmt):
    plain.ok("keygen", "agent:a")
    raw = b64u_dec(plain.ok("pubkey", "agent:a", "--format", "b64").stdout.strip())
    assert len(raw) == 32
    kid = rfc7638(b64u_enc(raw))
    r = run.ok("pubkey", "agent:a", *(("--format", fmt) if fmt else ()))
    fmt = fmt or "did"
    if run.json:
        doc = r.json()
        assert (doc["name"], doc["kid"], doc["format"]) == ("agent:a", kid, fmt)
        value = doc["key"]
    else:
        text = r.stdout
        assert text.endswith("\n") and r.stderr == ""
        value = text.strip() if fmt in ("did", "b64") else json.loads(text)
    if fmt == "did":
        assert raw_from_did(value) == raw
        assert value == principal_doc(plain, "agent:a")["did"]
    elif fmt == "b64":
        assert b64u_dec(value) == raw and "=" not in value
    else:
        key = value if fmt == "jwk" else value["keys"][0]
        if fmt == "jwks":
            assert list(value) == ["keys"] and len(value["keys"]) == 1
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key
        assert b64u_dec(key["x"]) == raw
        assert key["kid"] == kid == principal_doc(plain, "agent:a")["kid"]


def test_pubkey_jwk_verifies_with_a_jose_library(plain):
    jwt = pytest.importorskip("jwt")
    from agentctl.identity import signer_for
    from agentctl.context import Context

    plain.ok("keygen", "agent:a")
    jwk = json.loads(plain.ok("pubkey", "agent:a", "--format", "jwk").stdout)
    signer = signer_for(Context.for_home(None), "agent:a")
    key = jwt.PyJWK(jwk)
    token = jwt.encode({"hello": "world"}, private_key_for_pyjwt(signer.seed), algorithm="EdDSA")
    assert jwt.decode(token, key.key, algorithms=["EdDSA"]) == {"hello": "world"}


def private_key_for_pyjwt(seed: bytes):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed)


# === import ================================================================================


@pytest.fixture
def theirs(plain, tmp_path):
    """agent:theirs, made on another machine; returns (its home, its raw public key)."""
    other = str(tmp_path / "other")
    plain.ok("--home", other, "keygen", "agent:theirs")
    raw = b64u_dec(plain.ok("--home", other, "pubkey", "agent:theirs", "--format", "b64").stdout.strip())
    return other, raw


@pytest.mark.parametrize("form", ["did", "jwk-file", "json-file", "jwk-inline", "jwks-inline", "b64"])
def test_import_every_public_form(run, plain, theirs, tmp_path, form):
    other, raw = theirs
    jwk_text = plain.ok("--home", other, "pubkey", "agent:theirs", "--format", "jwk").stdout
    if form == "did":
        key = did_from_raw(raw)
    elif form == "jwk-file":
        (tmp_path / "theirs.jwk").write_text(jwk_text)
        key = str(tmp_path / "theirs.jwk")
    elif form == "json-file":
        (tmp_path / "theirs.json").write_text(plain.ok("--home", other, "pubkey", "agent:theirs", "--format", "jwks").stdout)
        key = str(tmp_path / "theirs.json")
    elif form == "jwk-inline":
        key = jwk_text
    elif form == "jwks-inline":
        key = json.dumps({"keys": [json.loads(jwk_text)]})
    else:
        key = b64u_enc(raw)
    r = run.ok("import", "agent:theirs", key, "--role", "partner")
    doc = principal_doc(plain, "agent:theirs")
    if run.json:
        assert r.json()["principal"] == doc
    else:
        assert r.stdout == did_from_raw(raw) + "\n"
    assert f"imported agent:theirs with key {rfc7638(b64u_enc(raw))}" in r.stderr
    assert doc["origin"] == "imported" and doc["keystore"] is None and doc["roles"] == ["partner"]
    assert raw_from_did(doc["did"]) == raw
    assert plain.ok("pubkey", "agent:theirs", "--format", "b64").stdout.strip() == b64u_enc(raw)


def test_an_imported_principal_cannot_be_rotated_here(run, plain, theirs, tmp_path):
    _, raw = theirs
    plain.ok("import", "agent:theirs", did_from_raw(raw))
    before = state(tmp_path)
    r = run.fails(2, "rotate", "agent:theirs", match="was imported")
    assert "--rotation" in r.stderr
    assert state(tmp_path) == before


def test_import_of_an_existing_name_is_refused(run, plain, theirs, tmp_path):
    _, raw = theirs
    plain.ok("keygen", "agent:mine")
    plain.ok("import", "agent:theirs", did_from_raw(raw))
    before = state(tmp_path)
    run.fails(2, "import", "agent:theirs", b64u_enc(raw), match="already trusted")
    run.fails(2, "import", "agent:mine", b64u_enc(raw), match="already exists")
    assert state(tmp_path) == before


def test_import_needs_a_key_or_a_rotation_but_not_both(run, plain, tmp_path, theirs):
    _, raw = theirs
    (tmp_path / "statement").write_text("x")
    before = state(tmp_path)
    run.fails(2, "import", "agent:theirs", match="either a KEY or --rotation")
    run.fails(2, "import", "agent:theirs", did_from_raw(raw), "--rotation", str(tmp_path / "statement"), match="either a KEY or --rotation")
    assert state(tmp_path) == before


def test_import_rotation_from_another_home(run, plain, theirs, tmp_path):
    other, raw = theirs
    plain.ok("import", "agent:theirs", did_from_raw(raw))
    old_kid = rfc7638(b64u_enc(raw))
    statement = tmp_path / "rotation.jwt"
    plain.ok("--home", other, "rotate", "agent:theirs", "-o", str(statement))
    new_did = plain.ok("--home", other, "pubkey", "agent:theirs").stdout.strip()
    r = run.ok("import", "agent:theirs", "--rotation", str(statement))
    doc = principal_doc(plain, "agent:theirs")
    assert doc["did"] == new_did
    assert [(k["kid"], k["status"]) for k in doc["keys"]] == [(old_kid, "retired"), (doc["kid"], "current")]
    assert f"agent:theirs now trusts key {doc['kid']}; key {old_kid} is retired" in r.stderr
    if run.json:
        assert r.json()["principal"] == doc
    else:
        assert r.stdout == new_did + "\n"
    # importing it again is harmless and changes nothing
    before = state(tmp_path)
    r = run.ok("import", "agent:theirs", "--rotation", str(statement))
    assert "nothing changed" in r.stderr
    assert state(tmp_path) == before


def test_import_rotation_from_stdin(plain, theirs, tmp_path):
    other, raw = theirs
    plain.ok("import", "agent:theirs", did_from_raw(raw))
    statement = plain.ok("--home", other, "rotate", "agent:theirs").stdout
    plain.ok("import", "agent:theirs", "--rotation", "-", input=statement)
    assert plain.ok("pubkey", "agent:theirs").stdout == plain.ok("--home", other, "pubkey", "agent:theirs").stdout


def test_a_tampered_rotation_statement_is_denied_and_changes_nothing(run, plain, theirs, tmp_path):
    other, raw = theirs
    plain.ok("import", "agent:theirs", did_from_raw(raw))
    plain.ok("--home", other, "keygen", "agent:mallory")
    mallory = plain.ok("--home", other, "pubkey", "agent:mallory", "--format", "jwk").stdout
    token = plain.ok("--home", other, "rotate", "agent:theirs").stdout.strip()
    h, c, s = token.split(".")
    claims = json.loads(b64u_dec(c))
    jwk = json.loads(mallory)
    claims["new_jwk"] = {k: jwk[k] for k in ("kty", "crv", "x")}
    claims["new_kid"] = jwk["kid"]
    (tmp_path / "forged.jwt").write_text(f"{h}.{b64u_enc(json.dumps(claims).encode())}.{s}\n")
    before = state(tmp_path)
    r = run("import", "agent:theirs", "--rotation", str(tmp_path / "forged.jwt"))
    assert_failure(r, 1, json_mode=run.json, prefix="agentctl: denied: bad_signature: ")
    if run.json:
        assert r.json()["reason"] == "bad_signature"
    assert state(tmp_path) == before


def test_a_missing_rotation_file(run, plain, theirs, tmp_path):
    _, raw = theirs
    plain.ok("import", "agent:theirs", did_from_raw(raw))
    before = state(tmp_path)
    run.fails(2, "import", "agent:theirs", "--rotation", str(tmp_path / "nope.jwt"), match="no such file")
    assert state(tmp_path) == before


# === rotate ================================================================================


def _check_statement(token: str, old_raw: bytes, new_raw: bytes, name: str) -> None:
    h, c, _ = token.split(".")
    header, claims = json.loads(b64u_dec(h)), json.loads(b64u_dec(c))
    assert header["typ"] == "agentctl-rotation+jwt" and header["alg"] == "EdDSA"
    assert header["kid"] == rfc7638(b64u_enc(old_raw)) == claims["old_kid"]
    assert claims["iss"] == claims["sub"] == name
    assert b64u_dec(claims["new_jwk"]["x"]) == new_raw and claims["new_kid"] == rfc7638(b64u_enc(new_raw))
    assert nacl_verifies(old_raw, token), "the statement is signed by the old key"
    assert not nacl_verifies(new_raw, token)


@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "-o FILE"])
def test_rotate_retires_the_old_key_and_writes_a_statement_signed_by_it(run, plain, tmp_path, to_file):
    plain.ok("keygen", "agent:a")
    old = principal_doc(plain, "agent:a")
    old_raw = raw_from_did(old["did"])
    out = tmp_path / "out" / "rotation.jwt"
    out.parent.mkdir()
    r = run.ok("rotate", "agent:a", *(("-o", str(out)) if to_file else ()))
    new = principal_doc(plain, "agent:a")
    new_raw = raw_from_did(new["did"])
    assert new_raw != old_raw
    assert [(k["kid"], k["status"]) for k in new["keys"]] == [(old["kid"], "retired"), (new["kid"], "current")]
    assert new["keys"][0]["retired"] is not None
    assert f"rotated agent:a: new key {new['kid']}; key {old['kid']} retired" in r.stderr
    if to_file:
        token = out.read_text().strip()
        assert out.read_text() == token + "\n"
        if not run.json:
            assert r.stdout == ""
        assert [p.name for p in out.parent.iterdir()] == ["rotation.jwt"]
    elif run.json:
        token = r.json()["rotation"]
    else:
        token = r.stdout.strip()
        assert r.stdout == token + "\n"
    if run.json:
        assert r.json()["rotation"] == token and r.json()["principal"] == new
    _check_statement(token, old_raw, new_raw, "agent:a")
    # the old secret is gone, the new one is in the keystore
    assert set(fake_keyring()) == {f"agent:a/{new['kid']}"}


@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_rotate_to_an_unwritable_place_rotates_nothing(run, plain, tmp_path, where):
    plain.ok("keygen", "agent:a")
    target = tmp_path / "nope" / "rotation.jwt" if where == "missing directory" else tmp_path
    before = state(tmp_path)
    run.fails(2, "rotate", "agent:a", "-o", str(target), match="cannot write")
    assert state(tmp_path) == before


def test_rotate_with_the_file_keystore_and_a_passphrase(run, plain, home):
    env = {"AGENTCTL_KEYSTORE": "file", "AGENTCTL_PASSPHRASE": "correct horse"}
    plain.ok("keygen", "agent:a", env=env)
    old = principal_doc(plain, "agent:a")["kid"]
    run.ok("rotate", "agent:a", env=env)
    new = principal_doc(plain, "agent:a")["kid"]
    assert [p.name for p in (home / "keys").iterdir()] == [f"{new}.key"]
    assert old != new


def test_rotate_with_the_exported_secret_of_a_no_store_principal(run, plain, tmp_path):
    secret = plain.ok("keygen", "agent:ci", "--export-secret", "--no-store").stdout.strip()
    old = raw_from_did(principal_doc(plain, "agent:ci")["did"])
    env = {"AGENTCTL_SECRET_KEY": secret}
    # the new secret would be kept nowhere: refused, and nothing changes
    refused = run("rotate", "agent:ci", env=env)
    assert refused.code == 2 and "must be exported" in refused.stderr
    assert raw_from_did(principal_doc(plain, "agent:ci")["did"]) == old
    statement_file = tmp_path / "rotation.jwt"
    r = run.ok("rotate", "agent:ci", "--export-secret", "--no-store", "-o", str(statement_file), env=env)
    new_secret = r.json()["secret"] if run.json else r.stdout.strip()
    assert new_secret.startswith("AGENTCTL-SECRET-KEY-1") and new_secret != secret
    new = raw_from_did(principal_doc(plain, "agent:ci")["did"])
    _check_statement(statement_file.read_text().strip(), old, new, "agent:ci")
    from agentctl import crypto
    from agentctl.secret import decode_secret

    assert crypto.public_key(decode_secret(new_secret).seed) == new
    assert principal_doc(plain, "agent:ci")["keystore"] is None


# === revoke ================================================================================


def revocations(home: Path) -> dict:
    """The revocations held in ``home``'s store, by kind, in the order they were made."""
    from agentctl.home import Home
    from agentctl.store import Store

    held: dict = {"principal": [], "key": [], "grant": []}
    for r in Store(Home(home)).revocations().entries:
        held[r.kind].append({"id": r.id, "reason": r.reason})
    return held


def test_revoke_a_principal(run, plain, home, tmp_path):
    plain.ok("keygen", "agent:a")
    r = run.ok("revoke", "agent:a", "--reason", "compromised laptop")
    assert "revoked principal agent:a; this is permanent" in r.stderr
    if run.json:
        doc = r.json()
        assert doc["new"] is True and doc["revoked"]["kind"] == "principal" and doc["revoked"]["id"] == "agent:a"
        assert doc["revoked"]["reason"] == "compromised laptop"
    else:
        assert r.stdout == ""
    recorded = revocations(home)["principal"]
    assert [(e["id"], e["reason"]) for e in recorded] == [("agent:a", "compromised laptop")]
    assert principal_doc(plain, "agent:a")["status"] == "revoked"
    assert fake_keyring() == {}, "a revoked principal's secrets are removed"
    # revoking twice is idempotent
    before = state(tmp_path)
    r = run.ok("revoke", "agent:a", "--reason", "again")
    assert "already revoked" in r.stderr
    if run.json:
        assert r.json()["new"] is False and r.json()["revoked"]["reason"] == "compromised laptop"
    assert state(tmp_path) == before


def test_a_revoked_principal_cannot_rotate(run, plain, tmp_path):
    plain.ok("keygen", "agent:a")
    plain.ok("revoke", "agent:a")
    before = state(tmp_path)
    run.fails(1, "rotate", "agent:a", match="revoked")
    assert state(tmp_path) == before


def test_a_revoked_principal_cannot_rotate_with_its_exported_secret(run, plain, tmp_path):
    secret = plain.ok("keygen", "agent:ci", "--export-secret", "--no-store").stdout.strip()
    plain.ok("revoke", "agent:ci")
    before = state(tmp_path)
    run.fails(1, "rotate", "agent:ci", env={"AGENTCTL_SECRET_KEY": secret}, match="revoked")
    assert state(tmp_path) == before


def test_revoke_a_key(run, plain, home, tmp_path):
    plain.ok("keygen", "agent:a")
    kid = principal_doc(plain, "agent:a")["kid"]
    r = run.ok("revoke", "--key", kid)
    assert f"revoked key {kid}" in r.stderr
    assert [e["id"] for e in revocations(home)["key"]] == [kid]
    doc = principal_doc(plain, "agent:a")
    assert doc["keys"][0]["status"] == "revoked" and doc["keys"][0]["revoked"]
    before = state(tmp_path)
    run.fails(1, "rotate", "agent:a", match="revoked")
    run.ok("revoke", "--key", kid)
    assert state(tmp_path) == before


def test_revoke_a_grant(run, plain, home, tmp_path):
    jti = "Zm9vYmFyLWdyYW50LWlkLTE"
    r = run.ok("revoke", "--grant", jti, "--reason", "scope too wide")
    assert f"revoked grant {jti}" in r.stderr
    assert [(e["id"], e["reason"]) for e in revocations(home)["grant"]] == [(jti, "scope too wide")]
    before = state(tmp_path)
    r = run.ok("revoke", "--grant", jti)
    assert "already revoked" in r.stderr
    assert state(tmp_path) == before


@pytest.mark.parametrize(
    "args,code,match",
    [
        ((), 2, "exactly one of"),
        (("agent:a", "--grant", "Zm9vYmFyLWdyYW50LWlkLTE"), 2, "exactly one of"),
        (("--key", "short"), 2, "bad key id"),
        (("--key", "A" * 43), 2, "no key"),
        (("--grant", "x"), 2, "bad grant id"),
        (("--grant", "a b c d e f g h i j"), 2, "bad grant id"),
        (("agent:a", "--reason", "two\nlines"), 2, "bad --reason"),
    ],
    ids=["nothing", "two things", "short kid", "unknown kid", "short jti", "jti with spaces", "reason with newline"],
)
def test_bad_revocations_are_refused(run, plain, tmp_path, args, code, match):
    plain.ok("keygen", "agent:a")
    before = state(tmp_path)
    run.fails(code, "revoke", *args, match=match)
    assert state(tmp_path) == before


# === bad input: one-line errors, the right exit code, nothing changed ==========================

BAD_NAMES = {
    "upper-case kind": "Agent:x",
    "dot-dot": "agent:../x",
    "space": "agent:a b",
    "non-ascii": "agent:é",
    "200 characters": "agent:" + "a" * 194,
    "missing kind": "alice",
}
NAME_COMMANDS = {
    "keygen": ("keygen", "{}"),
    "show": ("show", "{}"),
    "pubkey": ("pubkey", "{}"),
    "rotate": ("rotate", "{}"),
    "revoke": ("revoke", "{}"),
    "import": ("import", "{}", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
}


@pytest.mark.parametrize("command", list(NAME_COMMANDS))
@pytest.mark.parametrize("bad", list(BAD_NAMES))
def test_a_bad_name_is_a_usage_error(run, plain, tmp_path, bad, command):
    plain.ok("keygen", "agent:a")
    name = BAD_NAMES[bad]
    args = [a.format(name) for a in NAME_COMMANDS[command]]
    before = state(tmp_path)
    r = run.fails(2, *args, match=r"^agentctl: error: bad principal name ")
    assert "agentctl: hint: names look like user:alice or agent:code-reviewer:prod" in r.stderr
    if bad == "200 characters":
        assert name not in r.stderr
    assert state(tmp_path) == before


@pytest.mark.parametrize("command", ["show", "pubkey", "rotate", "revoke"])
def test_an_unknown_principal(run, plain, tmp_path, command):
    plain.ok("keygen", "agent:a")
    before = state(tmp_path)
    r = run.fails(2, command, "agent:nope", match=r"no principal 'agent:nope' in ")
    if run.json:
        assert r.json()["error"] == "usage" and r.json()["reason"] is None
    assert state(tmp_path) == before


DAMAGED_COMMANDS = {
    "show": ("show", "agent:a"),
    "list": ("list",),
    "pubkey": ("pubkey", "agent:a"),
    "rotate": ("rotate", "agent:a"),
    "revoke": ("revoke", "agent:a"),
    "revoke --key": ("revoke", "--key", "A" * 43),
    "keygen": ("keygen", "agent:a"),
    "import": ("import", "agent:a", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
}


@pytest.mark.parametrize("command", list(DAMAGED_COMMANDS))
def test_a_principal_file_edited_into_invalid_toml(run, plain, home, tmp_path, command):
    plain.ok("keygen", "agent:a")
    path = home / "principals" / "agent+a.toml"
    path.write_text(path.read_text().replace('origin = "local"', 'origin = "local'))
    before = state(tmp_path)
    r = run.fails(3, *DAMAGED_COMMANDS[command], match=re.escape(str(path)))
    assert "invalid TOML" in r.stderr
    if run.json:
        assert r.json()["error"] == "operational" and r.json()["reason"] is None
    assert state(tmp_path) == before


def test_a_damaged_revocations_file_is_never_replaced(run, plain, home, tmp_path):
    plain.ok("keygen", "agent:a")
    (home / "revocations.toml").write_text("principal = [\n")
    before = state(tmp_path)
    run.fails(3, "revoke", "agent:a", match=re.escape(str(home / "revocations.toml")))
    run.fails(3, "show", "agent:a", match=re.escape(str(home / "revocations.toml")))
    assert state(tmp_path) == before


def test_a_key_file_readable_by_others_is_refused(run, plain, home, tmp_path):
    plain.ok("keygen", "agent:a", env={"AGENTCTL_KEYSTORE": "file"})
    (key,) = (home / "keys").iterdir()
    key.chmod(0o644)
    before = state(tmp_path)
    r = run.fails(3, "rotate", "agent:a", env={"AGENTCTL_KEYSTORE": "file"}, match=re.escape(str(key)) + ".*readable by group or others")
    assert f"agentctl: hint: run: chmod 600 {key}" in r.stderr
    assert state(tmp_path) == before
    assert stat.S_IMODE(key.stat().st_mode) == 0o644, "the user's file is left for the user to fix"


@pytest.mark.parametrize("passphrase", ["wrong", None], ids=["wrong", "none"])
def test_a_wrong_or_missing_passphrase(run, plain, tmp_path, passphrase):
    plain.ok("keygen", "agent:a", env={"AGENTCTL_KEYSTORE": "file", "AGENTCTL_PASSPHRASE": "right"})
    before = state(tmp_path)
    r = run.fails(2, "rotate", "agent:a", env={"AGENTCTL_KEYSTORE": "file", "AGENTCTL_PASSPHRASE": passphrase})
    assert ("wrong passphrase" if passphrase else "no passphrase") in r.stderr
    assert "right" not in r.stderr + r.stdout
    assert state(tmp_path) == before


SMALL_ORDER_DID = did_from_raw(b"\x01" + bytes(31))


@pytest.mark.parametrize(
    "key",
    [
        SMALL_ORDER_DID,
        did_from_raw(bytes(32)),
        did_from_raw((P - 1).to_bytes(32, "little")),
        b64u_enc(b"\x01" + bytes(31)),
        json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64u_enc(b"\x01" + bytes(31))}),
    ],
    ids=["did identity", "did order 4", "did order 2", "b64 identity", "jwk identity"],
)
def test_a_small_order_key_is_refused(run, plain, tmp_path, key):
    assert SMALL_ORDER_DID.startswith("did:key:z6Mk")
    plain.ok("keygen", "agent:a")
    before = state(tmp_path)
    run.fails(2, "import", "agent:evil", key, match="refused .*not a valid Ed25519 public key")
    assert state(tmp_path) == before


@pytest.mark.parametrize("crv", ["X25519", "Ed448"])
@pytest.mark.parametrize("where", ["inline", "file"])
def test_a_jwk_with_the_wrong_curve_is_refused(run, plain, tmp_path, crv, where):
    jwk = json.dumps({"kty": "OKP", "crv": crv, "x": b64u_enc(bytes(range(32)) if crv == "X25519" else bytes(57))})
    key = jwk
    if where == "file":
        (tmp_path / "key.jwk").write_text(jwk)
        key = str(tmp_path / "key.jwk")
    before = state(tmp_path)
    run.fails(2, "import", "agent:x", key, match=f"crv must be Ed25519, not '{crv}'")
    assert state(tmp_path) == before


@pytest.mark.parametrize(
    "args",
    [
        ("keygen", "agent:a", "--bogus"),
        ("keygen", "agent:a", "--secret", "AGENTCTL-SECRET-KEY-1xyz"),
        ("list", "--all"),
        ("show", "agent:a", "-x"),
        ("pubkey", "agent:a", "--fmt", "jwk"),
        ("import", "agent:a", "did:key:z6Mk", "--force"),
        ("rotate", "agent:a", "--force"),
        ("revoke", "agent:a", "--yes"),
        ("--bogus", "list"),
        ("frobnicate",),
        ("keygen",),
        ("pubkey", "agent:a", "extra"),
    ],
    ids=lambda a: " ".join(a),
)
def test_unknown_flags_and_commands_are_usage_errors(run, plain, tmp_path, args):
    plain.ok("keygen", "agent:a")
    before = state(tmp_path)
    r = run.fails(2, *args)
    assert "agentctl: hint: see 'agentctl" in r.stderr
    assert "AGENTCTL-SECRET-KEY-1xyz" not in r.stderr or "--secret" in r.stderr
    assert state(tmp_path) == before


@pytest.mark.parametrize("fmt", ["pem", "DID", ""])
def test_a_bad_pubkey_format(run, plain, tmp_path, fmt):
    plain.ok("keygen", "agent:a")
    run.fails(2, "pubkey", "agent:a", "--format", fmt, match="bad --format")


@pytest.mark.parametrize("damage", ["truncated", "mistyped", "not a secret"])
def test_a_damaged_exported_secret_is_a_one_line_error_that_never_echoes_it(run, plain, tmp_path, damage):
    secret = plain.ok("keygen", "agent:ci", "--export-secret", "--no-store").stdout.strip()
    if damage == "truncated":
        bad = secret[:-7]
    elif damage == "mistyped":
        i = len(PREFIX) + 20
        bad = secret[:i] + ("Q" if secret[i] != "Q" else "R") + secret[i + 1 :]
    else:
        bad = secret[len(PREFIX):]
    before = state(tmp_path)
    r = run.fails(2, "rotate", "agent:ci", env={"AGENTCTL_SECRET_KEY": bad}, match="secret")
    body = secret[len(PREFIX):]
    for i in range(len(body) - 8):
        assert body[i : i + 8] not in r.stderr + r.stdout
    assert state(tmp_path) == before


def test_no_traceback_even_for_an_unexpected_failure(run, plain, monkeypatch):
    plain.ok("keygen", "agent:a")
    import agentctl.store

    def boom(self, name):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(agentctl.store.Store, "get", boom)
    r = run.fails(3, "show", "agent:a", match="internal error: RuntimeError: disk on fire$")
    assert "AGENTCTL_DEBUG=1" in r.stderr


def test_no_command_prints_help_and_a_usage_error(cli, home):
    r = cli()
    assert r.code == 2 and r.stdout == ""
    assert "Usage: agentctl" in r.stderr
    assert r.stderr.splitlines()[-2:] == ["agentctl: error: missing command", "agentctl: hint: see 'agentctl --help'"]


def test_help_and_version(cli):
    r = cli("--help")
    assert r.code == 0 and "keygen" in r.stdout and "rotate" in r.stdout
    for command in ("keygen", "list", "show", "pubkey", "import", "rotate", "revoke"):
        r = cli(command, "--help")
        assert r.code == 0 and r.stdout.startswith("Usage: agentctl " + command), command
    from agentctl import __version__

    assert cli("--version").stdout == f"agentctl {__version__}\n"


# === the fast path gives the same bytes as the Typer path =====================================


def _capture(fn, args, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = fn(list(args))
    return code, out.getvalue(), err.getvalue()


FAST_CASES = [
    ("--version",),
    ("pubkey", "agent:a"),
    ("pubkey", "agent:a", "--format", "did"),
    ("pubkey", "agent:a", "--format", "jwk"),
    ("pubkey", "agent:a", "--format", "jwks"),
    ("pubkey", "agent:a", "--format=b64"),
    ("pubkey", "agent:a", "--json"),
    ("--json", "pubkey", "agent:a", "--format", "jwks"),
    ("--home", "{home}", "pubkey", "agent:a"),
    ("--home={home}", "--json", "pubkey", "agent:a", "--format", "b64"),
    ("pubkey", "agent:nope"),
    ("--json", "pubkey", "agent:nope"),
    ("pubkey", "agent:a", "--format", "pem"),
    ("pubkey", "agent:a", "--format", "pem", "--json"),
    ("pubkey", "agent:a", "--format", ""),
    ("pubkey", "Agent:X"),
    ("pubkey", "agent:../x", "--json"),
    ("pubkey", ""),
    ("pubkey", "agent:damaged"),
    ("--json", "pubkey", "agent:damaged"),
    ("--home", "{home}/missing", "pubkey", "agent:a"),
    ("pubkey", "--json", "agent:a"),
    ("--json", "--home", "{home}", "pubkey", "agent:a", "--format", "jwk"),
    ("pubkey", "agent:a", "--format", "--json"),
]


@pytest.mark.parametrize("fmt_env", [None, "json"], ids=["plain", "AGENTCTL_FORMAT=json"])
@pytest.mark.parametrize("args", FAST_CASES, ids=lambda a: " ".join(a))
def test_the_fast_path_matches_the_typer_path_byte_for_byte(plain, home, monkeypatch, args, fmt_env):
    from agentctl._cli.entry import main, run_typer
    from agentctl._cli.fast import try_fast

    plain.ok("keygen", "agent:a")
    plain.ok("keygen", "agent:damaged")
    damaged = home / "principals" / "agent+damaged.toml"
    damaged.write_text(damaged.read_text() + "\n[[[\n")
    args = tuple(a.format(home=home) for a in args)
    if fmt_env:
        monkeypatch.setenv("AGENTCTL_FORMAT", fmt_env)
    else:
        monkeypatch.delenv("AGENTCTL_FORMAT", raising=False)
    handled = []
    monkeypatch.setattr("agentctl._cli.entry.run_typer", lambda a: handled.append(a) or run_typer(a))
    fast = _capture(main, args, monkeypatch)
    assert handled == [], "the fast path handles this case itself"
    assert fast == _capture(try_fast, args, monkeypatch)
    slow = _capture(run_typer, args, monkeypatch)
    assert fast == slow
    code, stdout, stderr = fast
    assert "Traceback" not in stdout + stderr
    if fmt_env == "json" and args != ("--version",):
        json.loads(stdout)


@pytest.mark.parametrize(
    "args",
    [("pubkey",), ("pubkey", "agent:a", "--help"), ("pubkey", "agent:a", "--format"), ("pubkey", "agent:a", "agent:b"), ("--home",), ("--json", "--version"), ("pubkey", "agent:a", "-f", "jwk")],
    ids=lambda a: " ".join(a),
)
def test_the_fast_path_leaves_anything_else_to_typer(args):
    from agentctl._cli.fast import try_fast

    assert try_fast(list(args)) is None
