"""Signed revocation lists: `revocations export --sign-as NAME [-o FILE]`, `revocations import FILE`,
and `verify --revocations FILE`."""

from __future__ import annotations

import json

import pytest

from agentctl import jws
from agentctl.encoding import b64u_decode, b64u_encode
from agentctl.grants import parse_chain

from test_actions import World, strict, unaudited


def allow_revoking(world: World, home=None, name: str = "user:alice") -> None:
    """SPEC "Who may revoke": the tool home lets alice revoke through a role carrying revoke = true."""
    home = home or world.tool
    config = home / "config.toml"
    text = config.read_text() if config.exists() else ""
    if "[roles.revoker]" not in text:
        config.write_text(text + "\n[roles.revoker]\nrevoke = true\n")
    world.ok(home, "role", "add", name, "revoker")


@pytest.fixture
def world(cli, tmp_path):
    w = World(cli, tmp_path)
    allow_revoking(w)
    return w


def export(world: World, *extra: str, home=None, sign_as: str = "user:alice") -> str:
    return world.ok(home or world.admin, "revocations", "export", "--sign-as", sign_as, *extra).stdout.strip()


def claims_of(token: str) -> dict:
    return jws.decode(token, jws.REVOCATIONS).claims


def write(world: World, name: str, text: str):
    f = world.tmp / name
    f.write_text(text + "\n")
    return f


def test_export_carries_every_kind_and_a_growing_version(world):
    assert claims_of(export(world))["version"] == 1
    world.ok(world.admin, "revoke", "agent:deployer", "--reason", "left the team")
    world.ok(world.admin, "keygen", "agent:spare")
    spare_kid = world.ok(world.admin, "--json", "show", "agent:spare").json()["principal"]["kid"]
    world.ok(world.admin, "revoke", "--key", spare_kid)
    jti = parse_chain(world.grant).leaf.jti
    world.ok(world.admin, "revoke", "--grant", jti)
    r = world.ok(world.admin, "--json", "revocations", "export", "--sign-as", "user:alice")
    doc = r.json()
    assert doc["ok"] and doc["version"] == 2 and doc["entries"] == 3
    c = claims_of(doc["list"])
    assert c["iss"] == "user:alice" and c["version"] == 2
    assert [e["id"] for e in c["revoked"]["principals"]] == ["agent:deployer"]
    assert c["revoked"]["principals"][0]["reason"] == "left the team"
    assert [e["id"] for e in c["revoked"]["keys"]] == [spare_kid]
    assert [e["id"] for e in c["revoked"]["grants"]] == [jti]
    assert world.ok(world.admin, "--json", "show", "user:alice").json()["principal"]["status"] == "active"
    assert claims_of(export(world))["version"] == 3


def test_export_to_a_file(world):
    out = world.tmp / "revs.txt"
    r = world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice", "-o", str(out))
    assert r.stdout == "" and "written to" in r.stderr
    assert claims_of(out.read_text().strip())["iss"] == "user:alice"


def test_export_refuses_a_signer_without_a_key_here(world):
    out = world.tmp / "revs.txt"
    r = world.run(world.admin, "revocations", "export", "--sign-as", "agent:deployer", "-o", str(out))
    assert r.code == 2 and "no secret key" in r.stderr and not out.exists()
    r = world.run(world.admin, "revocations", "export", "--sign-as", "user:nobody", "-o", str(out))
    assert r.code == 2 and not out.exists()
    world.ok(world.admin, "revoke", "user:alice")
    r = world.run(world.admin, "revocations", "export", "--sign-as", "user:alice", "-o", str(out))
    assert r.code == 1 and "revoked" in r.stderr and not out.exists()


def test_import_applies_and_is_idempotent(world):
    token = world.sign()
    world.ok(world.admin, "revoke", "agent:deployer")
    f = write(world, "revs.txt", export(world))
    r = world.ok(world.tool, "--json", "revocations", "import", str(f))
    doc = r.json()
    assert (doc["issuer"], doc["version"], doc["added"]) == ("user:alice", 1, 1)
    r = world.ok(world.tool, "--json", "revocations", "import", str(f))
    assert r.json()["added"] == 0  # the same version again changes nothing
    assert world.ok(world.tool, "--json", "show", "user:alice").json()["principal"]["status"] == "active"
    r = world.verify(token, *strict(world))
    assert r.code == 1 and "denied: revoked: principal agent:deployer is revoked" in r.stderr


def test_imported_lists_merge(world):
    """A newer list from the same signer adds what is new; revocations are never taken back."""
    world.ok(world.admin, "revoke", "--grant", "A" * 22)
    world.ok(world.tool, "revocations", "import", str(write(world, "v1.txt", export(world))))
    world.ok(world.admin, "revoke", "--grant", "B" * 22)
    r = world.ok(world.tool, "--json", "revocations", "import", str(write(world, "v2.txt", export(world))))
    assert r.json()["added"] == 1


def test_rollback_is_refused(world):
    v1 = write(world, "v1.txt", export(world))
    world.ok(world.admin, "revoke", "agent:deployer")
    v2 = write(world, "v2.txt", export(world))
    world.ok(world.tool, "revocations", "import", str(v2))
    before = unaudited(world.tool)
    r = world.run(world.tool, "--json", "revocations", "import", str(v1))
    assert r.code == 1
    assert r.json()["reason"] == "replayed" and "rollback" in r.json()["detail"]
    assert unaudited(world.tool) == before
    r = world.verify(world.sign(), "--revocations", str(v1))
    assert r.code == 1 and r.stderr.startswith("agentctl: denied: replayed: revocation list version 1")


def test_verify_revocations_leaves_no_trace(world):
    token = world.sign()
    world.ok(world.admin, "revoke", "agent:deployer")
    f = write(world, "revs.txt", export(world))
    before = unaudited(world.tool)
    r = world.verify(token, "--revocations", str(f))
    assert r.code == 1 and "denied: revoked" in r.stderr
    assert unaudited(world.tool) == before
    assert world.verify(token).code == 0  # nothing was imported


@pytest.mark.parametrize("mangle, reason", [
    ("truncate", "malformed"),
    ("grant", "malformed"),
    ("signature", "bad_signature"),
    ("bad entry", "malformed"),
    ("control characters", "malformed"),
    ("no version", "malformed"),
])
def test_bad_lists_are_refused(world, mangle, reason):
    token = export(world)
    h, p, s = token.split(".")
    c = json.loads(b64u_decode(p))
    seed = None
    if mangle == "truncate":
        token = token[:-20]
    elif mangle == "grant":
        token = world.grant
    elif mangle == "signature":
        c["version"] = 99
        token = f"{h}.{b64u_encode(json.dumps(c).encode())}.{s}"
    else:
        from agentctl.context import Context
        from agentctl.identity import signer_for

        seed = signer_for(Context.for_home(str(world.admin)), "user:alice").seed
        if mangle == "bad entry":
            c["revoked"]["grants"] = [{"id": "short", "at": "2026-01-01T00:00:00Z"}]
        elif mangle == "control characters":
            c["revoked"]["principals"] = [{"id": "agent:deployer", "at": "2026-01-01T00:00:00Z", "reason": "\x1b[2Jgone"}]
        else:
            del c["version"]
        token = jws.encode(jws.REVOCATIONS, c, seed)
    f = write(world, "bad.txt", token)
    before = unaudited(world.tool)
    r = world.run(world.tool, "revocations", "import", str(f))
    assert r.code == 1 and r.stderr.startswith(f"agentctl: denied: {reason}: "), r.stderr
    assert unaudited(world.tool) == before
    r = world.verify(world.sign(), "--revocations", str(f))
    assert r.code == 1 and r.stderr.startswith(f"agentctl: denied: {reason}: ")


def test_missing_list_file_is_a_usage_error(world):
    r = world.run(world.tool, "revocations", "import", str(world.tmp / "nope.txt"))
    assert r.code == 2 and "no such file" in r.stderr
    r = world.verify(world.sign(), "--revocations", str(world.tmp / "nope.txt"))
    assert r.code == 2 and "no such file" in r.stderr


def test_list_signed_by_a_retired_key_after_retirement(world, cli):
    """alice rotates; a list signed later with her old key (say, a stolen backup) is refused where the
    rotation is known."""
    from agentctl.context import Context
    from agentctl.identity import signer_for

    old_seed = signer_for(Context.for_home(str(world.admin)), "user:alice").seed
    rot = world.tmp / "rotation.txt"
    world.ok(world.admin, "rotate", "user:alice", "-o", str(rot))
    world.ok(world.tool, "import", "user:alice", "--rotation", str(rot))
    c = claims_of(export(world))
    c["iat"] += 3600
    late = write(world, "late.txt", jws.encode(jws.REVOCATIONS, c, old_seed))
    r = world.run(world.tool, "revocations", "import", str(late))
    assert r.code == 1 and "denied: bad_signature" in r.stderr and "retired" in r.stderr
    new = write(world, "new.txt", export(world))  # signed with the new key
    assert world.run(world.tool, "revocations", "import", str(new)).code == 0


def test_versions_are_per_signer(world):
    """bob's list does not have to outnumber alice's."""
    bob = world.ok(world.admin, "keygen", "user:bob").stdout.strip()
    world.ok(world.tool, "import", "user:bob", bob)
    for _ in range(3):
        a = export(world)
    world.ok(world.tool, "revocations", "import", str(write(world, "a.txt", a)))
    b = export(world, sign_as="user:bob")
    assert claims_of(b)["version"] == 1
    refused = world.run(world.tool, "revocations", "import", str(write(world, "b.txt", b)))
    assert refused.code == 1 and "untrusted_root" in refused.stderr and "may not revoke" in refused.stderr
    allow_revoking(world, name="user:bob")
    assert world.run(world.tool, "revocations", "import", str(write(world, "b.txt", b))).code == 0


def test_a_list_larger_than_a_token_still_travels(world):
    """Revocations are permanent, so a busy home's list outgrows the 64 KiB token limit."""
    from agentctl.models import Revocation, Revocations
    from agentctl.store import Store
    from agentctl.home import Home

    store = Store(Home(world.admin))
    many = Revocations(tuple(Revocation("grant", b64u_encode(i.to_bytes(16, "big")), 1_800_000_000.0, "rotated out")
                             for i in range(1500)))
    store.add_revocations(many.entries)
    token = export(world)
    assert len(token) > jws.MAX_TOKEN_BYTES
    listfile = write(world, "big.jwt", token)
    r = world.ok(world.tool, "--json", "revocations", "import", str(listfile))
    assert r.json()["added"] == 1500
    r = world.cli("verify", "-", env={"AGENTCTL_HOME": str(world.tool)}, input="x" * (jws.MAX_TOKEN_BYTES + 1))
    assert r.code == 1 and "larger than 65536 bytes" in r.stderr  # a grant or action still may not be
