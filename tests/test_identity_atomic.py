"""A state change and its audit event succeed or fail together; rotate never loses a rotation; a key
is never lost for want of an output (issue 9 items 2, 3, 4, 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl.audit import AuditLog
from agentctl.errors import KeystoreError, OperationalError
from conftest import snapshot

AGENTCTL = Path(sys.executable).parent / "agentctl"


def events(cli) -> list[dict]:
    r = cli("--json", "audit")
    assert r.code == 0, r.stderr
    return list(reversed(r.json()["events"]))


@pytest.fixture
def audit_fails(monkeypatch):
    """Make every audit append fail from now on, as a full disk or a locked database would."""

    real = AuditLog.append

    def on() -> None:
        def fail(self, evs, clock=None):
            raise OperationalError(f"audit append failed ({self.path}): database or disk is full")

        monkeypatch.setattr(AuditLog, "append", fail)

    on.off = lambda: monkeypatch.setattr(AuditLog, "append", real)  # type: ignore[attr-defined]
    return on


def secret_of(cli, name: str) -> str:
    r = cli("keygen", name, "--export-secret", "--no-store")
    assert r.code == 0, r.stderr
    return r.stdout.strip()


def can_sign(cli, name: str, env: dict | None = None) -> bool:
    r = cli("sign", "--as", name, "--action", "a.b", "--resource", "r", env=env or {})
    return r.code == 0


def sub(home: Path, *args: str, env: dict | None = None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    e = dict(os.environ, AGENTCTL_HOME=str(home), **(env or {}))
    return subprocess.run([str(AGENTCTL), *args], env=e, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)


# --- item 3: audit append fails -> nothing changed ---------------------------------------------


@pytest.mark.parametrize("args", [
    ("keygen", "agent:new"),
    ("keygen", "agent:new", "--export-secret", "--no-store"),
    ("import", "agent:far", "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"),
    ("revoke", "agent:a"),
    ("revoke", "--grant", "AAAAAAAAAAAAAAAAAAAAAA"),
    ("rotate", "agent:a"),
    ("role", "add", "agent:a", "deployer"),
])
def test_a_change_that_cannot_be_recorded_leaves_nothing_changed(cli, home, audit_fails, args):
    assert cli("keygen", "agent:a").code == 0
    before = snapshot(home)
    audit_fails()
    r = cli(*args)
    assert r.code == 3, r.stderr
    assert "audit append failed" in r.stderr
    assert "AGENTCTL-SECRET-KEY" not in r.stdout  # no secret handed out for a principal that does not exist
    assert snapshot(home) == before
    audit_fails.off()
    assert can_sign(cli, "agent:a")


def test_keygen_no_store_whose_event_fails_keeps_the_name_free(cli, home, audit_fails):
    cli("keygen", "user:admin")
    audit_fails()
    assert cli("keygen", "agent:ci", "--export-secret", "--no-store").code == 3
    assert cli("show", "agent:ci").code == 2  # no principal left without its only secret
    audit_fails.off()  # once the log works again, the same command just works
    assert cli("keygen", "agent:ci", "--export-secret", "--no-store").code == 0


def test_import_rotation_that_cannot_be_recorded_is_undone(cli, home, tmp_path, audit_fails, monkeypatch):
    there = tmp_path / "there"
    cli("--home", str(there), "keygen", "agent:far")
    did = cli("--home", str(there), "pubkey", "agent:far").stdout.strip()
    assert cli("import", "agent:far", did).code == 0
    st = tmp_path / "st.jwt"
    assert cli("--home", str(there), "rotate", "agent:far", "-o", str(st)).code == 0
    before = snapshot(home)
    audit_fails()
    assert cli("import", "agent:far", "--rotation", str(st)).code == 3
    assert snapshot(home) == before


def test_revocation_list_import_that_cannot_be_recorded_is_undone(cli, home, tmp_path, audit_fails):
    there = tmp_path / "there"
    cli("--home", str(there), "keygen", "user:admin")
    cli("--home", str(there), "revoke", "--grant", "B" * 22)
    lst = tmp_path / "list.jwt"
    assert cli("--home", str(there), "revocations", "export", "--sign-as", "user:admin", "-o", str(lst)).code == 0
    cli("import", "user:admin", cli("--home", str(there), "pubkey", "user:admin").stdout.strip())
    before = snapshot(home)
    audit_fails()
    assert cli("revocations", "import", str(lst)).code == 3
    assert snapshot(home) == before


# --- item 2: rotate never loses the rotation ---------------------------------------------------


def test_rotate_to_a_full_device_keeps_the_old_key(cli, home):
    cli("keygen", "agent:a")
    kid = cli("--json", "show", "agent:a").json()["principal"]["kid"]
    r = cli("rotate", "agent:a", "-o", "/dev/full")
    assert r.code == 3 and "/dev/full" in r.stderr
    assert cli("--json", "show", "agent:a").json()["principal"]["kid"] == kid
    assert can_sign(cli, "agent:a")
    evs = [e for e in events(cli) if e["event"] == "rotate"]
    assert [e["outcome"] for e in evs] == ["ok", "error"]  # recorded, and recorded as undone
    assert evs[1]["metadata"]["undone"] is True


def test_rotate_to_a_missing_directory_is_refused_before_acting(cli, home, tmp_path):
    cli("keygen", "agent:a")
    before = snapshot(home)
    r = cli("rotate", "agent:a", "-o", str(tmp_path / "nope" / "st.jwt"))
    assert r.code == 2
    assert snapshot(home) == before


def test_rotate_o_dash_writes_the_statement_to_stdout(cli, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli("keygen", "agent:a")
    r = cli("rotate", "agent:a", "-o", "-")
    assert r.code == 0, r.stderr
    assert r.stdout.count(".") == 2 and r.stdout.startswith("ey")
    assert not (tmp_path / "-").exists()


@pytest.mark.subprocess
def test_rotate_no_store_whose_secret_cannot_be_printed_keeps_the_old_secret_working(home, tmp_path):
    r = sub(home, "keygen", "agent:ci", "--export-secret", "--no-store")
    assert r.returncode == 0, r.stderr
    old = r.stdout.strip()
    st = tmp_path / "st.jwt"
    with open("/dev/full", "w") as full:
        r = sub(home, "rotate", "agent:ci", "--export-secret", "--no-store", "-o", str(st), env={"AGENTCTL_SECRET_KEY": old}, stdout=full)
    assert r.returncode == 3, r.stderr
    assert "nothing was changed" in r.stderr and "Traceback" not in r.stderr
    assert not st.exists()  # no statement for a rotation that did not happen
    r = sub(home, "sign", "--as", "agent:ci", "--action", "a.b", "--resource", "r", env={"AGENTCTL_SECRET_KEY": old})
    assert r.returncode == 0, r.stderr


@pytest.mark.subprocess
def test_keygen_no_store_whose_secret_cannot_be_printed_creates_nothing(home):
    with open("/dev/full", "w") as full:
        r = sub(home, "keygen", "agent:ci", "--export-secret", "--no-store", stdout=full)
    assert r.returncode == 3 and "nothing was changed" in r.stderr
    assert sub(home, "show", "agent:ci").returncode == 2
    assert sub(home, "keygen", "agent:ci", "--export-secret", "--no-store").returncode == 0


# --- item 4: a secret that never reached CI can be replaced -------------------------------------


def test_replace_a_secret_that_never_arrived(cli, home):
    lost = secret_of(cli, "agent:ci")
    r = cli("keygen", "agent:ci", "--export-secret", "--no-store")
    assert r.code == 2 and "--replace" in r.stderr  # the hint names the recovery
    r = cli("keygen", "agent:ci", "--replace", "--export-secret", "--no-store")
    assert r.code == 0, r.stderr
    new = r.stdout.strip()
    assert new != lost
    assert can_sign(cli, "agent:ci", {"AGENTCTL_SECRET_KEY": new})
    assert not can_sign(cli, "agent:ci", {"AGENTCTL_SECRET_KEY": lost})  # the lost key is revoked
    doc = cli("--json", "show", "agent:ci").json()["principal"]
    assert [k["status"] for k in doc["keys"]] == ["revoked", "current"]
    ev = [e for e in events(cli) if e["event"] == "keygen"][-1]
    assert ev["metadata"]["replaced"] == doc["keys"][0]["kid"]


def test_replace_refuses_a_principal_whose_secret_is_here(cli, home):
    cli("keygen", "agent:a")
    before = snapshot(home)
    r = cli("keygen", "agent:a", "--replace", "--export-secret", "--no-store")
    assert r.code == 2 and "rotate" in r.stderr
    assert snapshot(home) == before
    assert cli("keygen", "agent:ci", "--replace").code == 2  # only with --export-secret --no-store


# --- item 10: races and one key, one principal -------------------------------------------------


def test_rotation_statement_cannot_give_a_key_to_two_principals(cli, home, tmp_path):
    there = tmp_path / "there"
    cli("--home", str(there), "keygen", "agent:evil")
    cli("import", "agent:evil", cli("--home", str(there), "pubkey", "agent:evil").stdout.strip())
    cli("keygen", "agent:victim")
    victim_jwk = json.loads(cli("pubkey", "agent:victim", "--format", "jwk").stdout)
    # agent:evil's owner signs a rotation statement to agent:victim's public key
    from agentctl import jws
    from agentctl.context import Context
    from agentctl.identity import signer_for

    ctx = Context.for_home(there)
    old = signer_for(ctx, "agent:evil")
    claims = {"iss": "agent:evil", "sub": "agent:evil", "iat": 1_700_000_000, "jti": "x" * 22, "old_kid": old.kid,
              "new_kid": victim_jwk["kid"], "new_jwk": {k: victim_jwk[k] for k in ("kty", "crv", "x")}}
    st = tmp_path / "st.jwt"
    st.write_text(jws.encode(jws.ROTATION, claims, old.seed))
    r = cli("import", "agent:evil", "--rotation", str(st))
    assert r.code == 1 and "agent:victim" in r.stderr
    assert cli("--json", "show", "agent:evil").json()["principal"]["kid"] == old.kid


def test_revoke_after_rotate_leaves_no_secret(cli, home, tmp_path):
    cli("keygen", "agent:a")
    cli("rotate", "agent:a")
    cli("revoke", "agent:a")
    entries = json.loads((tmp_path / "fake-keyring.json").read_text()).get("agentctl", {})
    assert not [u for u in entries if u.startswith("agent:a/")]


def test_rotate_refuses_when_a_revoke_won_the_race(tmp_path):
    from agentctl.context import Context
    from agentctl.errors import DeniedError
    from agentctl.home import Home
    from agentctl.identity import keygen, revoke_principal, rotate

    ctx = Context(Home(tmp_path / "home"))
    keygen(ctx, "agent:a")
    opened = ctx.keystore

    def keystore(mode=None):  # the revoke lands between rotate's first check and its lock
        if mode is None:  # rotate opening the keystore for the new key (after it read the old one)
            revoke_principal(Context(Home(tmp_path / "home")), "agent:a")
        return opened(mode)

    ctx.keystore = keystore  # type: ignore[method-assign]
    with pytest.raises(DeniedError):
        rotate(ctx, "agent:a")
    entries = json.loads((tmp_path / "fake-keyring.json").read_text()).get("agentctl", {})
    assert not [u for u in entries if u.startswith("agent:a/")]


def test_sign_during_a_rotation_uses_the_new_key(tmp_path):
    from agentctl.context import Context
    from agentctl.home import Home
    from agentctl.identity import keygen, rotate, signer_for

    ctx = Context(Home(tmp_path / "home"))
    keygen(ctx, "agent:a")
    ks = ctx.keystore("keyring")
    real_get = ks.get
    calls = []

    def get(principal, kid):  # another process rotates between reading the record and the secret
        if not calls:
            calls.append(kid)
            rotate(Context(Home(tmp_path / "home")), "agent:a")
        return real_get(principal, kid)

    ks.get = get  # type: ignore[method-assign]
    signer = signer_for(ctx, "agent:a")
    assert signer.kid != calls[0]  # not "secret key is missing": the new current key


def test_a_secret_really_missing_is_still_said_so(tmp_path):
    from agentctl.context import Context
    from agentctl.home import Home
    from agentctl.identity import keygen, signer_for

    ctx = Context(Home(tmp_path / "home"))
    p, _ = keygen(ctx, "agent:a")
    ctx.keystore().delete("agent:a", p.current.kid)
    with pytest.raises(KeystoreError, match="missing"):
        signer_for(ctx, "agent:a")
