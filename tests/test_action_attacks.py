"""Attacks on actions. Each one ends in exit 1 and `agentctl: denied: REASON: …` with the reason named.

Forged tokens are made directly with ``agentctl.jws`` and the agent's (or an attacker's) key, since
``sign`` refuses them up front; the tool home verifies them with the CLI.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentctl import crypto, jws
from agentctl.actions import action_claims, parse_action
from agentctl.encoding import b64u_decode, b64u_encode, thumbprint
from agentctl.grants import parse_chain

from test_actions import World, at, strict, unaudited

NOW_SKEW = 5


@pytest.fixture
def world(cli, tmp_path):
    return World(cli, tmp_path)


def forge(world: World, *, seed: bytes | None = None, iss: str = "agent:deployer", action: str = "deploy.staging",
          resource: str = "api/web", data: bytes | None = None, embed: bool = False, now: int | None = None,
          ttl: int = 300, grant: str | None = "grant", header_kid: str | None = None, **override) -> str:
    """An action token made by hand, by the deployer's key unless ``seed`` says otherwise."""
    seed = seed or world.deployer_seed
    claims = action_claims(
        iss=iss, sub="user:alice", action=action, resource=resource,
        data=world.payload.read_bytes() if data is None else data, embed=embed,
        now=world.issued + NOW_SKEW if now is None else now, ttl=ttl, audience=None,
        grant=None,
    )
    grant = world.grant if grant == "grant" else grant
    if grant is not None:
        claims["grant"] = parse_chain(grant).leaf.digest
    claims.update(override)
    before = f"{grant}~" if grant is not None else ""  # the presentation: the grant, then the action
    if header_kid is None:
        return before + jws.encode(jws.ACTION, claims, seed)
    header = {"alg": "EdDSA", "typ": jws.ACTION, "kid": header_kid}
    h = b64u_encode(json.dumps(header, separators=(",", ":")).encode())
    p = b64u_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{before}{h}.{p}.{b64u_encode(crypto.sign(seed, f'{h}.{p}'.encode()))}"


def denied(world: World, token: str, *extra: str, home: Path | None = None, input: str = "") -> tuple[str, str]:
    """Verify in the tool home (at a time inside the grant's life); assert exit 1; return (reason, detail)."""
    args = list(extra)
    if "--at" not in args and "--once" not in args:
        args += ["--at", at(world.issued + 10)]
    r = world.run(home or world.tool, "verify", token, *args, input=input)
    assert r.code == 1, (r.code, r.stderr)
    assert r.stdout == ""
    line = r.stderr.splitlines()[0]
    assert line.startswith("agentctl: denied: "), r.stderr
    reason, _, detail = line[len("agentctl: denied: "):].partition(": ")
    assert detail
    return reason, detail


def ok(world: World, token: str, *extra: str) -> None:
    args = list(extra)
    if "--at" not in args and "--once" not in args:
        args += ["--at", at(world.issued + 10)]
    r = world.run(world.tool, "verify", token, *args)
    assert r.code == 0, r.stderr


def test_forge_helper_makes_valid_actions(world):
    ok(world, forge(world), *strict(world))


# --- a stolen grant ---------------------------------------------------------------------------------


def test_stolen_grant_presented_by_another_agent(world):
    """agent:mallory got hold of the deployer's grant (it is not secret) and signs with its own key."""
    mallory = os.urandom(32)
    as_mallory = forge(world, seed=mallory, iss="agent:mallory")
    as_deployer = forge(world, seed=mallory)  # claims to be the deployer, signed by mallory's key
    for token in (as_mallory, as_deployer):
        reasons = {denied(world, token, *strict(world))[0] for _ in range(3)}
        assert reasons == {"chain_broken"}  # the key is not the grant's cnf: stable, every time
        assert "not by the key the grant was given to" in denied(world, token)[1]
    # a header that names the deployer's key id gets past the key check and fails on the signature
    lying = forge(world, seed=mallory, header_kid=thumbprint(crypto.public_key(world.deployer_seed)))
    assert {denied(world, lying, *strict(world))[0] for _ in range(3)} == {"bad_signature"}
    # and in batch and in the library, the same reasons
    batch = world.run(world.tool, "verify", "--batch", "--at", at(world.issued + 10),
                      input="\n".join((as_mallory, as_deployer, lying)) + "\n")
    assert [json.loads(line)["reason"] for line in batch.stdout.splitlines()] == ["chain_broken", "chain_broken", "bad_signature"]


def test_stolen_grant_cannot_be_used_by_sign(world):
    world.ok(world.agent, "keygen", "agent:mallory")
    r = world.run(world.agent, "sign", "--as", "agent:mallory", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(world.grant_file))
    assert r.code == 2 and r.stdout == ""


# --- outside the grant ------------------------------------------------------------------------------


@pytest.mark.parametrize("action, resource", [
    ("deploy.production", "api/web"),
    ("deploy.staging", "db/main"),
    ("deploy.staging", "api/web/admin"),  # '*' does not cross '/'
    ("deploy", "api/web"),
])
def test_action_outside_the_grant(world, action, resource):
    token = forge(world, action=action, resource=resource)
    reason, detail = denied(world, token)
    assert reason == "scope_denied" and action in detail and resource in detail
    # asking for exactly what the token says does not help
    assert denied(world, token, "--action", action, "--resource", resource)[0] == "scope_denied"
    before = unaudited(world.agent)
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", action, "--resource", resource,
                  "--grant", str(world.grant_file))
    assert r.code == 1 and r.stdout == "" and r.stderr.startswith("agentctl: denied: scope_denied: ")
    assert unaudited(world.agent) == before


def test_asking_for_another_action_than_signed(world):
    token = forge(world)
    assert denied(world, token, "--action", "deploy.production", "--resource", "api/web")[0] == "scope_denied"
    assert denied(world, token, "--action", "deploy.staging", "--resource", "api/api")[0] == "scope_denied"


# --- payloads ---------------------------------------------------------------------------------------


def test_payload_swapped_after_signing(world):
    token = forge(world)
    swapped = world.tmp / "swapped.json"
    swapped.write_bytes(b'{"image": "evil:latest"}\n')
    reason, detail = denied(world, token, "--action", "deploy.staging", "--resource", "api/web", "--data", str(swapped))
    assert reason == "payload_mismatch"
    empty = world.tmp / "empty"
    empty.write_bytes(b"")
    assert denied(world, token, "--data", str(empty))[0] == "payload_mismatch"


def test_embedded_payload_tampered(world):
    token = forge(world, embed=True)
    before, _, last = token.rpartition("~")
    h, p, s = last.split(".")
    claims = json.loads(b64u_decode(p))
    claims["payload"]["data"] = b64u_encode(b'{"image": "evil:latest"}\n')
    tampered = before + "~" + ".".join((h, b64u_encode(json.dumps(claims, separators=(",", ":")).encode()), s))
    assert denied(world, tampered)[0] == "bad_signature"  # the signature covers the payload
    # an agent that signs a payload not matching its own digest is caught too
    lying = forge(world, embed=True, payload={"sha256": "0" * 64, "data": b64u_encode(b"something else")})
    assert denied(world, lying)[0] == "payload_mismatch"


# --- time -------------------------------------------------------------------------------------------


def test_expired_action(world):
    token = forge(world, ttl=60)
    act = parse_action(token)
    ok(world, token, "--at", at(act.exp + 59))  # inside the leeway
    reason, detail = denied(world, token, "--at", at(act.exp + 60))
    assert reason == "expired" and "the action expired" in detail


def test_future_dated_action(world):
    token = forge(world, now=world.issued + 300)
    reason, detail = denied(world, token, "--at", at(world.issued + 10))
    assert reason == "not_yet_valid" and "in the future" in detail
    ok(world, token, "--at", at(world.issued + 300 - 60))


def test_action_outliving_its_grant_is_refused_once_the_grant_expires(world):
    exp = parse_chain(world.grant).leaf.exp
    token = forge(world, now=exp - 30, ttl=3600)
    ok(world, token, "--at", at(exp - 10))
    reason, detail = denied(world, token, "--at", at(exp + 61))
    assert reason == "expired" and "hop 1" in detail


# --- replay -----------------------------------------------------------------------------------------


def test_replayed_under_once(world):
    token = world.sign()
    assert world.verify(token, "--once", *strict(world)).code == 0
    for _ in range(2):
        reason, detail = denied(world, token, "--once", *strict(world))
        assert reason == "replayed" and parse_action(token).jti in detail


def test_replay_by_another_agent_with_the_same_jti_does_not_burn_the_victims_action(world):
    """mallory watches the deployer's action go by and first presents one of its own with the same
    jti (signed under its own grant): the replay store keys by agent and jti, so both are used once."""
    mallory_did = world.ok(world.agent, "keygen", "agent:mallory").stdout.strip()
    world.ok(world.admin, "import", "agent:mallory", mallory_did)
    mgrant = world.tmp / "mallory-grant.txt"
    world.ok(world.admin, "delegate", "--from", "user:alice", "--to", "agent:mallory", "--scope", "deploy.staging:api/*",
             "-o", str(mgrant))
    victim = world.sign()
    jti = parse_action(victim).jti
    from agentctl.context import Context
    from agentctl.identity import signer_for

    mseed = signer_for(Context.for_home(str(world.agent)), "agent:mallory").seed
    claims = parse_action(world.ok(world.agent, "sign", "--as", "agent:mallory", "--action", "deploy.staging",
                                   "--resource", "api/web", "--grant", str(mgrant)).stdout.strip()).token.claims
    copycat = f"{mgrant.read_text().strip()}~{jws.encode(jws.ACTION, dict(claims, jti=jti), mseed)}"
    assert world.verify(copycat, "--once").code == 0
    assert world.verify(victim, "--once").code == 0
    assert denied(world, victim, "--once")[0] == "replayed"


RACER = """
import sys
from agentctl._cli.entry import main
import agentctl._cli.action_cmds, agentctl.verify, agentctl.seen, agentctl.actions, agentctl.grants
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.subprocess
def test_two_processes_racing_under_once(world):
    """Both processes are started, warmed up, and released at once: exactly one wins, every time."""
    for _ in range(4):
        token = world.sign()
        f = world.tmp / "race.txt"
        f.write_text(token)
        env = os.environ.copy()
        procs = [subprocess.Popen([sys.executable, "-c", RACER, "--home", str(world.tool), "verify", str(f), "--once",
                                   *strict(world)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, text=True) for _ in range(2)]
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdin.close()
            p.stdout.close()
            p.stderr.close()
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 1], results
        loser = next(err for code, _, err in results if code == 1)
        assert loser.startswith("agentctl: denied: replayed: ")


# --- revocation -------------------------------------------------------------------------------------


def test_grant_revoked_after_the_action_was_signed(world):
    token = world.sign()
    ok(world, token, *strict(world))
    jti = parse_chain(world.grant).leaf.jti
    world.ok(world.admin, "revoke", "--grant", jti)
    rl = world.tmp / "revs.txt"
    world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice", "-o", str(rl))
    reason, detail = denied(world, token, *strict(world), "--revocations", str(rl))
    assert reason == "revoked" and jti in detail
    world.ok(world.tool, "revocations", "import", str(rl))
    assert denied(world, token, *strict(world))[0] == "revoked"


def test_the_action_itself_revoked_by_its_jti(world):
    token = world.sign()
    world.ok(world.tool, "revoke", "--grant", parse_action(token).jti)
    assert denied(world, token)[0] == "revoked"


def test_revocation_list_rolled_back(world):
    v1 = world.tmp / "v1.txt"
    world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice", "-o", str(v1))  # nothing revoked yet
    world.ok(world.admin, "revoke", "--grant", parse_chain(world.grant).leaf.jti)
    v2 = world.tmp / "v2.txt"
    world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice", "-o", str(v2))
    world.ok(world.tool, "revocations", "import", str(v2))
    before = unaudited(world.tool)
    r = world.run(world.tool, "revocations", "import", str(v1))
    assert r.code == 1
    assert r.stderr.startswith("agentctl: denied: replayed: revocation list version 1 from user:alice is older than "
                               "the one held (2): a rollback")
    assert unaudited(world.tool) == before
    token = forge(world)
    reason, detail = denied(world, token, "--revocations", str(v1))
    assert reason == "replayed" and "rollback" in detail
    r = world.run(world.tool, "--json", "verify", token, "--revocations", str(v1), "--at", at(world.issued + 10))
    assert r.code == 1 and r.json()["reason"] == "replayed" and r.json()["ok"] is False
    assert denied(world, token, "--revocations", str(v2))[0] == "revoked"


@pytest.mark.parametrize("signer", ["unknown", "revoked", "tampered"])
def test_revocation_list_from_an_untrusted_signer_is_refused(world, signer):
    """A list that would un-trust alice's agents (or anyone) must come from someone trusted."""
    if signer == "unknown":
        # agent:deployer signs a list; the tool home never imported it
        world.ok(world.agent, "revoke", "--grant", "A" * 22)
        rl = world.ok(world.agent, "revocations", "export", "--sign-as", "agent:deployer").stdout.strip()
        expected = "untrusted_root"
    elif signer == "revoked":
        bob_did = world.ok(world.admin, "keygen", "user:bob").stdout.strip()
        world.ok(world.tool, "import", "user:bob", bob_did, "--role", "deploy-lead")  # a role that may revoke
        rl = world.ok(world.admin, "revocations", "export", "--sign-as", "user:bob").stdout.strip()
        world.ok(world.tool, "revoke", "user:bob")
        expected = "revoked"
    else:
        rl = world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice").stdout.strip()
        h, p, s = rl.split(".")
        claims = json.loads(b64u_decode(p))
        claims["revoked"]["principals"] = [{"id": "user:alice", "at": "2026-01-01T00:00:00Z"}]
        rl = ".".join((h, b64u_encode(json.dumps(claims).encode()), s))
        expected = "bad_signature"
    f = world.tmp / "list.txt"
    f.write_text(rl)
    before = unaudited(world.tool)
    r = world.run(world.tool, "revocations", "import", str(f))
    assert r.code == 1 and r.stderr.startswith(f"agentctl: denied: {expected}: "), r.stderr
    assert unaudited(world.tool) == before
    assert denied(world, forge(world), "--revocations", str(f))[0] == expected  # fails closed


# --- malformed input --------------------------------------------------------------------------------


def test_grant_presented_as_an_action(world):
    """Where an action is required (--data), a grant is a token of the wrong type: malformed."""
    reason, detail = denied(world, world.grant, *strict(world))
    assert reason == "malformed" and "expected an action token" in detail
    assert denied(world, world.grant, "--once", *strict(world)[:4])[0] == "malformed"
    # an action header on grant claims, or a grant header on action claims, does not parse either
    h, p, s = forge(world, grant=None).split(".")
    gh = world.grant.split(".")[0]
    assert denied(world, f"{gh}.{p}.{s}")[0] in ("malformed", "bad_signature")


@pytest.mark.parametrize("cut", [1, 5, 40, 200])
def test_truncated_token(world, cut):
    token = forge(world, grant=None)
    cut_token = token[:-cut]
    if cut_token.count(".") == 2:
        reason, _ = denied(world, cut_token)
        assert reason == "malformed"
    else:  # no longer token-shaped and no file: a usage error, never a denial (SPEC)
        r = world.run(world.tool, "verify", cut_token)
        assert r.code == 2 and "neither a file nor a token" in r.stderr
    f = world.tmp / "cut.txt"  # from a file it is whatever the token is: malformed
    f.write_text(cut_token)
    assert denied(world, str(f))[0] == "malformed"


def test_truncated_in_the_middle(world):
    token = forge(world, grant=None)
    h, p, s = token.split(".")
    assert denied(world, f"{h}.{p[:len(p) // 2]}.{s}")[0] in ("malformed", "bad_signature")
    r = world.run(world.tool, "verify", f"{h}.{p}")  # two segments: not token-shaped, a usage error
    assert r.code == 2 and "neither a file nor a token" in r.stderr
    assert denied(world, "-", input=f"{h}.{p}")[0] == "malformed"  # from stdin it is a bad token
    assert denied(world, f"{h}..{s}")[0] == "malformed"


def test_empty_input(world):
    reason, detail = denied(world, "-", input="")
    assert (reason, detail) == ("malformed", "empty token")
    assert denied(world, "-", input="\n \n")[0] == "malformed"
    r = world.run(world.tool, "verify", "")  # an empty argument names no file and is no token
    assert r.code == 2
    r = world.run(world.tool, "verify", "no-such-token")
    assert r.code == 2 and "neither a file nor a token" in r.stderr
    r = world.run(world.tool, "verify")
    assert r.code == 2 and r.stderr.startswith("agentctl: error: give a token")


@pytest.mark.parametrize("mutate, expected", [
    (lambda h, p, s: ("eyJhbGciOiJub25lIn0", p, ""), "unsupported"),  # alg none
    (lambda h, p, s: (h, p, s + "A"), "malformed"),
    (lambda h, p, s: (h + "=", p, s), "malformed"),
    (lambda h, p, s: (h, p, base64.urlsafe_b64encode(b64u_decode(s)).decode()), "malformed"),  # padding
])
def test_mangled_tokens(world, mutate, expected):
    before, _, last = forge(world).rpartition("~")
    h, p, s = last.split(".")
    assert denied(world, before + "~" + ".".join(mutate(h, p, s)))[0] == expected


def test_long_jti_is_refused_before_it_reaches_the_replay_store(world):
    token = forge(world, jti="A" * 300)
    assert denied(world, token, "--once")[0] == "malformed"


def test_oversized_token(world):
    token = forge(world, data=b"x" * 60000, embed=False, pad="y" * 70000)
    assert denied(world, token)[0] == "malformed"


def test_agent_key_revoked_by_a_list(world):
    """The admin revokes the deployer's key (not the principal): every action under its grant fails."""
    token = forge(world)
    kid = thumbprint(crypto.public_key(world.deployer_seed))
    world.ok(world.admin, "revoke", "--key", kid)
    rl = world.tmp / "revs.txt"
    world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice", "-o", str(rl))
    reason, detail = denied(world, token, "--revocations", str(rl))
    assert reason == "revoked" and kid in detail
