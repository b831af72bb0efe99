"""Minting grants (SPEC, "Delegation" and "Token format"): `agentctl delegate` signs exactly the claims
the contract lists, re-delegates only what the parent allows, and refuses everything else before it
signs, with nothing on stdout and no output file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agentctl import crypto
from agentctl.clock import FixedClock, rfc3339
from agentctl.context import Context
from agentctl.delegation import delegate
from agentctl.encoding import b64u_decode, thumbprint
from agentctl.errors import NotFoundError, UsageError, VerificationError
from agentctl.home import Home
from agentctl.identity import keygen

from helpers_tokens import digest, ALICE, BOT, SUB, THIRD, OTHER, parts

T0 = 1_800_000_000
CLAIMS_ROOT = {"iss", "sub", "act", "cnf", "scope", "iat", "nbf", "exp", "jti", "max_depth"}


def local(cli, *names: str) -> None:
    for n in names:
        assert cli("keygen", n).code == 0


def jwk_of(cli, name: str) -> dict:
    r = cli("pubkey", name, "--format", "jwk")
    assert r.code == 0
    doc = r.json()
    return {k: doc[k] for k in ("kty", "crv", "x")}


def mint(cli, *args: str, env: dict | None = None) -> str:
    r = cli("delegate", *args, env=env)
    assert r.code == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout == token + "\n"
    return token


def refused(cli, tmp_path: Path, *args: str, code: int = 1) -> str:
    """A refused delegation: the exit code, nothing on stdout, no -o file; returns stderr."""
    out = tmp_path / "refused.jwt"
    r = cli("delegate", *args, "-o", str(out))
    assert r.code == code, (r.code, r.stderr)
    assert r.stdout == ""
    assert not out.exists()
    assert "Traceback" not in r.stderr
    j = cli("--json", "delegate", *args)
    assert j.code == code and j.json()["ok"] is False and "grant" not in j.json()
    return r.stderr


@pytest.fixture
def cast(home, cli):
    local(cli, ALICE, BOT, SUB, THIRD)
    return home


# --- the claims -----------------------------------------------------------------------------------------


def test_a_root_grant_carries_exactly_the_claims_of_the_spec(cast, cli):
    before = int(time.time())
    token = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "pull_request.create:acme/*", "--scope", "issues.read",
                 "--ttl", "30m", "--audience", "api.github", "--max-depth", "2")
    after = int(time.time())
    head, claims, _ = parts(token)
    assert head == {"alg": "EdDSA", "typ": "agentctl-grant+jwt", "kid": thumbprint(b64u_decode(jwk_of(cli, ALICE)["x"]))}
    assert set(claims) == CLAIMS_ROOT | {"aud"}
    assert claims["iss"] == ALICE and claims["sub"] == ALICE
    assert claims["act"] == {"sub": BOT}
    assert claims["cnf"] == {"jwk": jwk_of(cli, BOT)}
    assert claims["scope"] == "pull_request.create:acme/* issues.read"
    assert before <= claims["iat"] <= after and claims["nbf"] == claims["iat"]
    assert claims["exp"] == claims["iat"] + 1800
    assert claims["aud"] == "api.github"
    assert claims["max_depth"] == 2
    assert len(b64u_decode(claims["jti"])) >= 16
    # signed by alice's current key over the compact signing input
    h, p, s = token.split(".")
    assert crypto.verify(b64u_decode(jwk_of(cli, ALICE)["x"]), f"{h}.{p}".encode(), b64u_decode(s))


def test_defaults_one_hour_no_audience_no_redelegation(cast, cli):
    claims = parts(mint(cli, "--from", ALICE, "--to", BOT, "--scope", "deploy.staging"))[1]
    assert set(claims) == CLAIMS_ROOT
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["max_depth"] == 0


def test_every_jti_is_fresh(cast, cli):
    jtis = {parts(mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a"))[1]["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_library_mint_times_come_from_the_clock(home, tmp_path):
    ctx = Context(Home(home, os.environ), clock=FixedClock(T0), env=os.environ)
    for n in (ALICE, BOT):
        keygen(ctx, n)
    token, chain = delegate(ctx, to=BOT, scopes=["a.b:c/*"], ttl=90, issuer=ALICE)
    claims = parts(token)[1]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (T0, T0, T0 + 90)
    assert chain.leaf.jti == claims["jti"] and chain.principals == (ALICE, BOT)


def test_json_output_describes_the_grant(cast, cli):
    r = cli("--json", "delegate", "--from", ALICE, "--to", BOT, "--scope", "a.b", "--ttl", "2h")
    assert r.code == 0
    doc = r.json()
    claims = parts(doc["grant"])[1]
    assert doc["ok"] is True and doc["iss"] == ALICE and doc["sub"] == ALICE and doc["agent"] == BOT
    assert doc["jti"] == claims["jti"] and doc["scope"] == "a.b" and doc["hops"] == 1
    assert doc["expires_at"] == rfc3339(claims["exp"])


def test_output_file_holds_the_grant_and_stdout_does_not(cast, cli, tmp_path):
    out = tmp_path / "g.jwt"
    r = cli("delegate", "--from", ALICE, "--to", BOT, "--scope", "a", "-o", str(out))
    assert r.code == 0 and r.stdout == ""
    token = out.read_text().strip()
    assert cli("verify", str(out)).code == 0
    assert parts(token)[1]["act"] == {"sub": BOT}


def test_a_minted_grant_verifies(cast, cli):
    token = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "pull_request.*:acme/*")
    r = cli("--json", "verify", token, "--action", "pull_request.create", "--resource", "acme/web")
    assert r.code == 0 and r.json()["scope"] == "pull_request.*:acme/*"


# --- --from ---------------------------------------------------------------------------------------------


def test_from_may_be_left_out_when_only_one_principal_could_sign(home, cli, tmp_path):
    local(cli, ALICE)
    other = tmp_path / "elsewhere"
    assert cli("--home", str(other), "keygen", BOT).code == 0
    assert cli("import", BOT, cli("--home", str(other), "pubkey", BOT).stdout.strip()).code == 0
    claims = parts(mint(cli, "--to", BOT, "--scope", "a"))[1]
    assert claims["iss"] == ALICE


def test_the_delegate_itself_does_not_count_as_a_possible_signer(home, cli):
    """alice and bot both have keys here; bot cannot grant to itself, so alice is the only one that could."""
    local(cli, ALICE, BOT)
    assert parts(mint(cli, "--to", BOT, "--scope", "a"))[1]["iss"] == ALICE


def test_from_left_out_with_two_local_signers_is_a_usage_error(home, cli, tmp_path):
    local(cli, ALICE, "user:bob", BOT)
    err = refused(cli, tmp_path, "--to", BOT, "--scope", "a", code=2)
    assert "agentctl: error: several principals could sign (user:alice, user:bob)" in err
    assert "agentctl: hint:" in err and "--from" in err


def test_from_left_out_with_no_local_signer(home, cli, tmp_path):
    assert cli("import", BOT, "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").code == 0
    err = refused(cli, tmp_path, "--to", BOT, "--scope", "a", code=2)
    assert "no local principal can sign" in err


def test_a_revoked_principal_does_not_count_as_a_signer(home, cli):
    local(cli, ALICE, "user:bob", BOT)
    assert cli("revoke", "user:bob").code == 0
    assert parts(mint(cli, "--to", BOT, "--scope", "a"))[1]["iss"] == ALICE


def test_an_exported_secret_counts_as_a_signer(tmp_path, cli, home):
    local(cli, BOT)
    elsewhere = tmp_path / "ci"
    secret = cli("--home", str(elsewhere), "keygen", ALICE, "--export-secret", "--no-store").stdout.strip()
    assert secret.startswith("AGENTCTL-SECRET-KEY-1")
    claims = parts(mint(cli, "--to", BOT, "--scope", "a", env={"AGENTCTL_SECRET_KEY": secret}))[1]
    assert claims["iss"] == ALICE


def test_from_and_parent_do_not_go_together(cast, cli, tmp_path):
    parent = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a", "--max-depth", "1")
    err = refused(cli, tmp_path, "--from", BOT, "--parent", parent, "--to", SUB, "--scope", "a", code=2)
    assert "--from and --parent do not go together" in err


# --- re-delegation --------------------------------------------------------------------------------------


def test_redelegation_signed_by_the_parents_holder(cast, cli):
    parent = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "pull_request.*:acme/*", "--max-depth", "2",
                  "--audience", "api.github", "--ttl", "2h")
    child = mint(cli, "--parent", parent, "--to", SUB, "--scope", "pull_request.create:acme/web", "--ttl", "30m")
    head, c, _ = parts(child)
    p = parts(parent)[1]
    assert head["kid"] == thumbprint(b64u_decode(jwk_of(cli, BOT)["x"]))
    assert set(c) == CLAIMS_ROOT | {"aud", "prf"}
    assert c["iss"] == BOT and c["sub"] == ALICE
    assert c["act"] == {"sub": SUB, "act": {"sub": BOT}}
    assert c["cnf"] == {"jwk": jwk_of(cli, SUB)}
    assert child.startswith(parent + "~") and c["prf"] == digest(parent)  # the parent travels before it
    assert c["max_depth"] == 1
    assert c["aud"] == "api.github"
    assert c["exp"] == c["iat"] + 1800 <= p["exp"]
    grand = mint(cli, "--parent", child, "--to", THIRD, "--scope", "pull_request.create:acme/web")
    g = parts(grand)[1]
    assert g["act"] == {"sub": THIRD, "act": {"sub": SUB, "act": {"sub": BOT}}}
    assert g["max_depth"] == 0 and g["sub"] == ALICE and g["prf"] == digest(child) and grand.startswith(child + "~")
    assert g["exp"] <= c["exp"]  # by default as long as the parent allows, up to an hour
    r = cli("--json", "verify", grand, "--audience", "api.github")
    assert r.code == 0 and r.json()["chain"] == [ALICE, BOT, SUB, THIRD]


def test_parent_from_a_file_or_stdin(cast, cli, tmp_path):
    f = tmp_path / "parent.jwt"
    assert cli("delegate", "--from", ALICE, "--to", BOT, "--scope", "a.*", "--max-depth", "1", "-o", str(f)).code == 0
    assert parts(mint(cli, "--parent", str(f), "--to", SUB, "--scope", "a.b"))[1]["prf"] == digest(f.read_text().strip())
    r = cli("delegate", "--parent", "-", "--to", SUB, "--scope", "a.c", input=f.read_text())
    assert r.code == 0 and parts(r.stdout.strip())[1]["prf"] == digest(f.read_text().strip())


def test_redelegation_with_an_exported_secret_in_a_home_without_secrets(cast, cli, tmp_path):
    """A CI runner: the holder's secret comes from AGENTCTL_SECRET_KEY, the home holds public keys only."""
    made = tmp_path / "made-elsewhere"
    secret = cli("--home", str(made), "keygen", "agent:ci", "--export-secret", "--no-store").stdout.strip()
    assert secret.startswith("AGENTCTL-SECRET-KEY-1")
    assert cli("import", "agent:ci", cli("--home", str(made), "pubkey", "agent:ci").stdout.strip()).code == 0
    parent = mint(cli, "--from", ALICE, "--to", "agent:ci", "--scope", "a.*", "--max-depth", "1")
    runner = tmp_path / "runner"  # knows only the delegate's public key; not even the root
    assert cli("--home", str(runner), "import", SUB, cli("pubkey", SUB).stdout.strip()).code == 0
    r = cli("--home", str(runner), "delegate", "--parent", parent, "--to", SUB, "--scope", "a.b",
            env={"AGENTCTL_SECRET_KEY": secret})
    assert r.code == 0, r.stderr
    child = r.stdout.strip()
    c = parts(child)[1]
    assert c["iss"] == "agent:ci" and c["sub"] == ALICE and c["prf"] == digest(parent)
    assert not (runner / "keys").exists() or not any((runner / "keys").iterdir())
    assert cli("verify", child, env={"AGENTCTL_SECRET_KEY": None}).code == 0


def test_redelegation_needs_the_holders_secret(cast, cli, tmp_path):
    parent = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a.*", "--max-depth", "1")
    runner = tmp_path / "runner"
    assert cli("--home", str(runner), "import", SUB, cli("pubkey", SUB).stdout.strip()).code == 0
    r = cli("--home", str(runner), "delegate", "--parent", parent, "--to", SUB, "--scope", "a.b")
    assert r.code == 2 and r.stdout == ""
    assert f"no principal '{BOT}'" in r.stderr and "AGENTCTL_SECRET_KEY" in r.stderr


# --- refusals -------------------------------------------------------------------------------------------


@pytest.fixture
def parent(cast, cli):
    return mint(cli, "--from", ALICE, "--to", BOT, "--scope", "pull_request.create:acme/*", "--scope", "issues.read:acme/web",
                "--max-depth", "1", "--ttl", "30m")


@pytest.mark.parametrize("scope", ["pull_request.*:acme/*", "pull_request.create:acme/**", "pull_request.create",
                                   "issues.read:acme/*", "*", "pull_request.create:*"])
def test_a_wider_scope_is_refused_naming_the_scope(parent, cli, tmp_path, scope):
    err = refused(cli, tmp_path, "--parent", parent, "--to", SUB, "--scope", "issues.read:acme/web", "--scope", scope)
    assert f"scope {scope} is wider than the parent's" in err
    assert "denied: scope_escalation" in err


def test_narrower_scopes_are_minted(parent, cli):
    for scope in ("pull_request.create:acme/web", "pull_request.create:acme/a*", "issues.read:acme/web"):
        mint(cli, "--parent", parent, "--to", SUB, "--scope", scope)


def test_a_ttl_past_the_parents_expiry_is_refused_naming_it(parent, cli, tmp_path):
    exp = rfc3339(parts(parent)[1]["exp"])
    err = refused(cli, tmp_path, "--parent", parent, "--to", SUB, "--scope", "issues.read:acme/web", "--ttl", "31m")
    assert f"which expires at {exp}" in err


def test_the_default_ttl_of_a_child_stops_at_its_parents_expiry(parent, cli):
    child = parts(mint(cli, "--parent", parent, "--to", SUB, "--scope", "issues.read:acme/web"))[1]
    assert child["exp"] == parts(parent)[1]["exp"]


def test_max_depth_beyond_the_parents_is_refused(parent, cli, tmp_path):
    err = refused(cli, tmp_path, "--parent", parent, "--to", SUB, "--scope", "issues.read:acme/web", "--max-depth", "1")
    assert "--max-depth 1 is more than the parent allows (0)" in err


def test_redelegating_a_max_depth_0_grant_is_refused(parent, cli, tmp_path):
    child = mint(cli, "--parent", parent, "--to", SUB, "--scope", "issues.read:acme/web")
    assert parts(child)[1]["max_depth"] == 0
    err = refused(cli, tmp_path, "--parent", child, "--to", THIRD, "--scope", "issues.read:acme/web")
    assert "allows no further delegation" in err


def test_an_audience_outside_the_parents_is_refused(cast, cli, tmp_path):
    p = mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a", "--max-depth", "1", "--audience", "api.one")
    err = refused(cli, tmp_path, "--parent", p, "--to", SUB, "--scope", "a", "--audience", "api.two")
    assert "api.two" in err and "api.one" in err


def test_the_holder_cannot_redelegate_to_itself(parent, cli, tmp_path):
    refused(cli, tmp_path, "--parent", parent, "--to", BOT, "--scope", "issues.read:acme/web", code=2)


def test_a_broken_parent_is_refused_with_its_reason(parent, cli, tmp_path):
    bad = parent[:-4] + ("AAAA" if not parent.endswith("AAAA") else "BBBA")
    err = refused(cli, tmp_path, "--parent", bad, "--to", SUB, "--scope", "issues.read:acme/web")
    assert "denied: bad_signature" in err


def test_a_revoked_parent_is_refused(parent, cli, tmp_path):
    assert cli("revoke", "--grant", parts(parent)[1]["jti"]).code == 0
    err = refused(cli, tmp_path, "--parent", parent, "--to", SUB, "--scope", "issues.read:acme/web")
    assert "denied: revoked" in err


def test_ttl_over_max_ttl_is_refused(cast, cli, tmp_path):
    (cast / "config.toml").write_text('max_ttl = "2h"\n')
    err = refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", "a", "--ttl", "3h", code=2)
    assert "--ttl 3h is longer than max_ttl (2h)" in err
    assert parts(mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a", "--ttl", "2h"))[1]
    assert "max_ttl" in refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", "a", "--ttl", "121m", code=2)


def test_the_default_ttl_is_capped_by_max_ttl(cast, cli):
    (cast / "config.toml").write_text('max_ttl = "30m"\n')
    claims = parts(mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a", "--max-depth", "1"))[1]
    assert claims["exp"] - claims["iat"] == 1800
    child = parts(mint(cli, "--parent", mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a", "--max-depth", "1"),
                       "--to", SUB, "--scope", "a"))[1]
    assert child["exp"] - child["iat"] <= 1800


def test_the_default_max_ttl_is_a_day(cast, cli, tmp_path):
    mint(cli, "--from", ALICE, "--to", BOT, "--scope", "a", "--ttl", "24h")
    refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", "a", "--ttl", "25h", code=2)


@pytest.mark.parametrize("ttl", ["0s", "0m", "1y", "-1h", "1.5h", "", "h", "90", "1h30m", " ", "10000d", "1 h"])
def test_bad_durations_are_usage_errors(cast, cli, tmp_path, ttl):
    err = refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", "a", "--ttl", ttl, code=2)
    assert "agentctl: error: bad --ttl" in err


@pytest.mark.parametrize("to", ["agent:nobody", "user:ghost"])
def test_an_unknown_delegate_is_refused(cast, cli, tmp_path, to):
    err = refused(cli, tmp_path, "--from", ALICE, "--to", to, "--scope", "a", code=2)
    assert to in err


@pytest.mark.parametrize("to", ["Agent:X", "agent", "agent:../x", "robot:x"])
def test_a_bad_delegate_name_is_a_usage_error(cast, cli, tmp_path, to):
    err = refused(cli, tmp_path, "--from", ALICE, "--to", to, "--scope", "a", code=2)
    assert "bad principal name" in err


@pytest.mark.parametrize("scope", ["", "a b", "a.*.b", "A.b", "a:", "a:x y", "a:***"])
def test_a_bad_scope_is_a_usage_error(cast, cli, tmp_path, scope):
    err = refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", scope, code=2)
    assert "bad scope" in err


@pytest.mark.parametrize("depth", ["-1", "8", "x"])
def test_a_bad_max_depth_is_a_usage_error(cast, cli, tmp_path, depth):
    refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", "a", "--max-depth", depth, code=2)


def test_a_revoked_delegate_gets_nothing(cast, cli, tmp_path):
    assert cli("revoke", BOT).code == 0
    err = refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", "a")
    assert "revoked" in err


def test_a_revoked_signer_signs_nothing(cast, cli, tmp_path):
    assert cli("revoke", ALICE).code == 0
    refused(cli, tmp_path, "--from", ALICE, "--to", BOT, "--scope", "a")


def test_no_grant_to_oneself(cast, cli, tmp_path):
    refused(cli, tmp_path, "--from", ALICE, "--to", ALICE, "--scope", "a", code=2)


def test_an_imported_principal_cannot_sign(cast, cli, tmp_path):
    other = tmp_path / "elsewhere"
    assert cli("--home", str(other), "keygen", "user:carol").code == 0
    assert cli("import", "user:carol", cli("--home", str(other), "pubkey", "user:carol").stdout.strip()).code == 0
    err = refused(cli, tmp_path, "--from", "user:carol", "--to", BOT, "--scope", "a", code=2)
    assert "no secret key for 'user:carol'" in err


# --- the library refuses the same things ----------------------------------------------------------------


def test_library_refusals_raise_before_signing(home, monkeypatch):
    ctx = Context(Home(home, os.environ), clock=FixedClock(T0), env=os.environ)
    for n in (ALICE, BOT, SUB):
        keygen(ctx, n)
    parent, _ = delegate(ctx, to=BOT, scopes=["a.b"], issuer=ALICE, max_depth=1, ttl=600)
    import agentctl.delegation as d

    def no_signing(*_a, **_k):
        raise AssertionError("signed")

    monkeypatch.setattr(d, "_sign", no_signing)
    with pytest.raises(VerificationError) as e:
        delegate(ctx, to=SUB, scopes=["a.*"], parent=parent)
    assert e.value.reason == "scope_escalation"
    with pytest.raises(VerificationError) as e:
        delegate(ctx, to=SUB, scopes=["a.b"], parent=parent, ttl=601)
    assert rfc3339(T0 + 600) in e.value.detail
    with pytest.raises(VerificationError):
        delegate(ctx, to=SUB, scopes=["a.b"], parent=parent, max_depth=1)
    with pytest.raises(UsageError):
        delegate(ctx, to=SUB, scopes=["a.b"], issuer=ALICE, ttl=86401)
    with pytest.raises(NotFoundError):
        delegate(ctx, to=OTHER, scopes=["a.b"], issuer=ALICE)
    with pytest.raises(UsageError):
        delegate(ctx, to=SUB, scopes=[], issuer=ALICE)


def test_a_mistyped_token_file_is_a_usage_error_not_a_denial(cli, home):
    for args in (("verify", "nosuch-grant.jwt"), ("inspect", "./grants/missing"), ("verify", "/tmp/definitely/not/here")):
        r = cli(*args)
        assert r.code == 2, (args, r.stderr)
        assert r.stderr.startswith("agentctl: error: no such file: "), r.stderr


def test_the_host_audit_key_is_never_the_default_signer(cli, home):
    assert cli("keygen", "user:alice").code == 0
    assert cli("keygen", "agent:bot").code == 0
    assert cli("audit", "checkpoint").code == 0  # creates the host: audit key
    r = cli("--json", "delegate", "--to", "agent:bot", "--scope", "read:docs/*")
    assert r.code == 0, r.stderr
    assert r.json()["iss"] == "user:alice"


def test_an_output_that_is_a_device_is_written_into_not_replaced(cli, home, tmp_path):
    import os
    import stat

    assert cli("keygen", "user:alice").code == 0
    assert cli("keygen", "agent:bot").code == 0
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so that opening it for writing does not block
    try:
        r = cli("delegate", "--from", "user:alice", "--to", "agent:bot", "--scope", "read:x", "-o", str(fifo))
        assert r.code == 0, r.stderr
        assert stat.S_ISFIFO(fifo.stat().st_mode), "the pipe was replaced by a file"
        assert os.read(reader, 65536).decode().count(".") == 2
    finally:
        os.close(reader)
