"""`agentctl sign` and `agentctl verify` of actions, in-process, with an admin, an agent and a tool
home. The CLI reads the system clock; verification time moves with ``verify --at``, never by sleeping.
"""

from __future__ import annotations

import atexit
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agentctl import jws
from agentctl.actions import parse_action
from agentctl.grants import parse_chain
from agentctl.secret import decode_secret

from conftest import snapshot

VERDICT_FIELDS = {"ok", "reason", "detail", "type", "agent", "agent_known", "on_behalf_of", "chain", "action", "resource",
                  "scope", "audience", "expires_at", "jti", "approval", "policy"}
#: A tool home that trusts alice (imported) to grant deploy.* anywhere.
TOOL_CONFIG = 'authority = "roles"\n\n[roles.deploy-lead]\nscopes = ["deploy.*:**"]\nrevoke = true\n'  # alice may revoke there (SPEC "Who may revoke")



def unaudited(path: Path) -> dict:
    """The home's files except the audit log (a refusal is recorded there, as it should be)."""
    return {k: v for k, v in snapshot(path).items() if not k.startswith("audit")}


def at(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class World:
    """user:alice in an admin home, agent:deployer in an agent home (its secret also held by the
    test, to forge with), a tool home that trusts only alice, and a grant from alice to the deployer
    for ``deploy.staging:api/*``.

    Building one takes a dozen commands, so it is built once per session and copied (homes and the
    fake keyring) into each test's own directory; it is rebuilt when its grant is 20 minutes old."""

    _template: tuple[Path, float] | None = None
    GRANT_TTL = "1h"

    def __init__(self, cli, tmp: Path) -> None:
        self.cli, self.tmp = cli, tmp
        self.admin, self.agent, self.tool = tmp / "admin", tmp / "agent", tmp / "tool"
        template = self._get_template(cli, tmp)
        for name in ("admin", "agent", "tool"):
            shutil.copytree(template / name, tmp / name)
        shutil.copyfile(template / "keyring.json", os.environ["AGENTCTL_TEST_KEYRING"])
        self.deployer_seed = decode_secret((template / "deployer.secret").read_text().strip()).seed
        self.grant_file = tmp / "grant.txt"
        shutil.copyfile(template / "grant.txt", self.grant_file)
        self.grant = self.grant_file.read_text().strip()
        self.issued = parse_chain(self.grant).root.iat
        self.payload = tmp / "payload.json"
        self.payload.write_bytes(b'{"image": "web:1.4.2"}\n')

    @classmethod
    def _get_template(cls, cli, tmp: Path) -> Path:
        if cls._template is not None and time.time() - cls._template[1] < 20 * 60:
            return cls._template[0]
        import tempfile

        where = Path(tempfile.mkdtemp(prefix="agentctl-world-"))
        atexit.register(shutil.rmtree, where, True)
        keyring_file = os.environ["AGENTCTL_TEST_KEYRING"]
        os.environ["AGENTCTL_TEST_KEYRING"] = str(where / "keyring.json")
        try:
            run = lambda home, *args: cli("--home", str(where / home), *args)  # noqa: E731

            def ok(home, *args):
                r = run(home, *args)
                assert r.code == 0, (args, r.stderr)
                return r.stdout.strip()

            ok("admin", "keygen", "user:alice")
            (where / "deployer.secret").write_text(ok("agent", "keygen", "agent:deployer", "--export-secret"))
            ok("admin", "import", "agent:deployer", ok("agent", "pubkey", "agent:deployer"))
            (where / "tool").mkdir(mode=0o700)  # the tool trusts someone else's user: it defines roles (SPEC)
            (where / "tool" / "config.toml").write_text(TOOL_CONFIG)
            ok("tool", "import", "user:alice", ok("admin", "pubkey", "user:alice"), "--role", "deploy-lead")
            ok("admin", "delegate", "--from", "user:alice", "--to", "agent:deployer", "--scope", "deploy.staging:api/*",
               "--ttl", cls.GRANT_TTL, "-o", str(where / "grant.txt"))
        finally:
            os.environ["AGENTCTL_TEST_KEYRING"] = keyring_file
        cls._template = (where, time.time())
        return where

    def run(self, home: Path, *args: str, input: str = "", env: dict | None = None):
        return self.cli("--home", str(home), *args, input=input, env=env)

    def ok(self, home: Path, *args: str, **kw):
        r = self.run(home, *args, **kw)
        assert r.code == 0, (args, r.stderr)
        return r

    def sign(self, *extra: str, action: str = "deploy.staging", resource: str = "api/web", data: bool = True) -> str:
        args = ["sign", "--as", "agent:deployer", "--action", action, "--resource", resource, "--grant", str(self.grant_file)]
        if data:
            args += ["--data", str(self.payload)]
        return self.ok(self.agent, *args, *extra).stdout.strip()

    def verify(self, token: str, *extra: str, home: Path | None = None, **kw):
        return self.run(home or self.tool, "verify", token, *extra, **kw)

    def verify_json(self, token: str, *extra: str, home: Path | None = None):
        r = self.run(home or self.tool, "--json", "verify", token, *extra)
        doc = r.json()
        # a denial is the verdict plus the one failure shape (SPEC "Commands")
        failure = {"error", "message", "exit_code"} | ({"hint"} if "hint" in doc else set())
        assert set(doc) == (VERDICT_FIELDS if r.code == 0 else VERDICT_FIELDS | failure)
        assert doc["ok"] is (r.code == 0)
        if r.code:
            assert doc["error"] == "denied" and doc["exit_code"] == 1 and doc["reason"]
        return r.code, doc, r.stderr


@pytest.fixture
def world(cli, tmp_path):
    return World(cli, tmp_path)


def strict(world: World) -> tuple[str, ...]:
    return ("--action", "deploy.staging", "--resource", "api/web", "--data", str(world.payload))


# --- sign -----------------------------------------------------------------------------------------


def test_sign_then_verify(world):
    token = world.sign()
    assert token.startswith(world.grant + "~")  # the grant's presentation, extended by the action
    claims = jws.decode(token.rpartition("~")[2], jws.ACTION).claims
    assert claims["iss"] == "agent:deployer" and claims["sub"] == "user:alice"
    assert claims["grant"] == parse_chain(world.grant).leaf.digest and "data" not in claims["payload"]
    assert claims["exp"] - claims["iat"] == 300  # default lifetime: 5 minutes
    r = world.verify(token, *strict(world))
    assert r.code == 0, r.stderr
    assert r.stdout.startswith("ok: agent:deployer may deploy.staging on api/web on behalf of user:alice")
    code, doc, _ = world.verify_json(token, *strict(world))
    assert code == 0
    assert doc == {
        "ok": True, "reason": None, "detail": None, "type": "action", "agent": "agent:deployer",
        "on_behalf_of": "user:alice", "chain": ["user:alice", "agent:deployer"], "action": "deploy.staging",
        "resource": "api/web", "scope": "deploy.staging:api/*", "expires_at": at(claims["exp"]), "jti": claims["jti"],
        "agent_known": False, "audience": None, "approval": None, "policy": None,  # the tool does not know the agent
    }


def test_json_flag_after_the_command_and_from_the_environment(world):
    token = world.sign()
    r1 = world.run(world.tool, "verify", token, "--json", *strict(world))
    r2 = world.run(world.tool, "verify", token, *strict(world), env={"AGENTCTL_FORMAT": "json"})
    assert r1.code == r2.code == 0
    assert r1.json() == r2.json()


def test_token_from_a_file_and_from_stdin(world):
    token = world.sign()
    f = world.tmp / "action.txt"
    f.write_text(token + "\n")
    assert world.verify(str(f), *strict(world)).code == 0
    assert world.verify("-", *strict(world), input=token + "\n").code == 0


def test_sign_writes_a_file_only_on_success(world):
    out = world.tmp / "signed.txt"
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(world.grant_file), "-o", str(out))
    assert r.code == 0 and r.stdout == "" and "written to" in r.stderr
    assert world.verify(str(out), "--action", "deploy.staging", "--resource", "api/web").code == 0
    refused = world.tmp / "refused.txt"
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.production", "--resource", "api/web",
                  "--grant", str(world.grant_file), "-o", str(refused))
    assert r.code == 1 and not refused.exists()


def test_sign_payload_from_stdin(world):
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(world.grant_file), "--data", "-", input=world.payload.read_text())
    assert r.code == 0
    assert world.verify(r.stdout.strip(), *strict(world)).code == 0


def test_embedded_payload(world):
    token = world.sign("--embed")
    act = parse_action(token)
    assert act.data == world.payload.read_bytes()
    assert world.verify(token, "--action", "deploy.staging", "--resource", "api/web").code == 0
    assert world.verify(token, *strict(world)).code == 0
    other = world.tmp / "other.json"
    other.write_bytes(b"{}")
    r = world.verify(token, "--data", str(other))
    assert r.code == 1 and r.stderr.startswith("agentctl: denied: payload_mismatch: ")


def test_embed_is_limited(world):
    big = world.tmp / "big.bin"
    big.write_bytes(b"x" * (32 * 1024 + 1))
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(world.grant_file), "--data", str(big), "--embed")
    assert r.code == 2 and "--embed" in r.stderr and r.stdout == ""
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(world.grant_file), "--data", str(big))
    assert r.code == 0  # the digest binds a payload of any size


def test_sign_refuses_what_the_grant_does_not_allow(world):
    before = unaudited(world.agent)
    for action, resource in (("deploy.production", "api/web"), ("deploy.staging", "db/main"), ("deploy.staging", "api/web/x")):
        r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", action, "--resource", resource,
                      "--grant", str(world.grant_file))
        assert r.code == 1, (action, resource)
        assert r.stdout == ""
        assert r.stderr.startswith("agentctl: denied: scope_denied: the grant does not allow")
    assert unaudited(world.agent) == before


def test_sign_refuses_someone_elses_grant(world):
    world.ok(world.agent, "keygen", "agent:other")
    r = world.run(world.agent, "sign", "--as", "agent:other", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(world.grant_file))
    assert r.code == 2 and r.stdout == ""
    assert "the grant was given to agent:deployer, not agent:other" in r.stderr
    assert "agentctl: hint: sign with --as agent:deployer" in r.stderr


@pytest.mark.parametrize("args, message", [
    (("--action", "deploy.*", "--resource", "api/web"), "bad --action"),
    (("--action", "Deploy", "--resource", "api/web"), "bad --action"),
    (("--action", "deploy.staging", "--resource", "api web"), "bad --resource"),
    (("--action", "deploy.staging", "--resource", "api/*"), "bad --resource"),
    (("--action", "deploy.staging", "--resource", "api/web", "--ttl", "0s"), "bad --ttl"),
    (("--action", "deploy.staging", "--resource", "api/web", "--data", "/no/such/file"), "no such file"),
])
def test_sign_usage_errors(world, args, message):
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--grant", str(world.grant_file), *args)
    assert r.code == 2 and r.stdout == ""
    assert message in r.stderr and "Traceback" not in r.stderr


def test_action_lifetime_is_capped_by_the_grant(world):
    token = world.sign("--ttl", "1h")
    act = parse_action(token)
    assert act.exp == parse_chain(world.grant).leaf.exp


def test_sign_refuses_a_grant_in_its_last_seconds(world, tmp_path):
    """A grant within the leeway of its expiry passes preflight; an action signed under it would be
    born expired (exp <= iat, a malformed token). sign refuses it as expired instead."""
    from agentctl.clock import FixedClock
    from agentctl.context import Context
    from agentctl.errors import VerificationError
    from agentctl.signing import sign_action

    exp = parse_chain(world.grant).leaf.exp
    ctx = Context.for_home(str(world.agent), clock=FixedClock(exp + 10))
    with pytest.raises(VerificationError) as info:
        sign_action(ctx, as_="agent:deployer", action="deploy.staging", resource="api/web", grant=world.grant)
    assert info.value.reason == "expired"
    ctx = Context.for_home(str(world.agent), clock=FixedClock(exp - 10))
    token = sign_action(ctx, as_="agent:deployer", action="deploy.staging", resource="api/web", grant=world.grant)
    assert parse_action(token).exp == exp


def test_sign_on_own_authority(world):
    token = world.ok(world.agent, "sign", "--as", "agent:deployer", "--action", "report.send", "--resource", "daily").stdout.strip()
    act = parse_action(token)
    assert act.grant is None and act.sub == "agent:deployer"
    r = world.verify(token)  # the tool home does not know the agent
    assert r.code == 1 and "denied: untrusted_root" in r.stderr
    # The admin home imported it, but an agent has no authority of its own (quick-start): it acts
    # only under a grant (SPEC, "Authority and roles").
    code, doc, err = world.verify_json(token, home=world.admin)
    assert code == 1 and doc["reason"] == "scope_denied" and "authority = quick-start" in doc["detail"]


# --- verify ---------------------------------------------------------------------------------------


def test_denial_verdict(world):
    token = world.sign()
    code, doc, err = world.verify_json(token, "--action", "deploy.production", "--resource", "api/web")
    assert code == 1
    assert doc["ok"] is False and doc["reason"] == "scope_denied" and doc["type"] == "action"
    assert doc["action"] == "deploy.production" and doc["resource"] == "api/web"
    assert err == f"agentctl: denied: scope_denied: {doc['detail']}\n"


def test_action_and_resource_must_match_exactly(world):
    token = world.sign()
    for a, r in (("deploy.staging", "api/we"), ("deploy.staging", "api/web/"), ("deploy", "api/web"),
                 ("deploy.staging.now", "api/web")):
        res = world.verify(token, "--action", a, "--resource", r)
        assert res.code == 1 and "denied: scope_denied" in res.stderr, (a, r)
    # one without the other cannot be checked for a grant; for an action each is compared alone
    assert world.verify(token, "--action", "deploy.staging").code == 0
    assert world.verify(token, "--action", "deploy.production").code == 1


def test_bad_action_flag_is_a_usage_error(world):
    token = world.sign()
    r = world.verify(token, "--action", "deploy.*", "--resource", "api/web")
    assert r.code == 2 and "bad --action" in r.stderr  # the library's check, named by the flag


def test_time_window_with_at_and_leeway(world):
    token = world.sign()
    act = parse_action(token)
    assert world.verify(token, "--at", at(act.iat + 60)).code == 0
    late = world.verify(token, "--at", at(act.exp + 30))  # within the default 60 s leeway
    assert late.code == 0, late.stderr
    r = world.verify(token, "--at", at(act.exp + 30), "--leeway", "0")
    assert r.code == 1 and "denied: expired: the action expired at" in r.stderr
    r = world.verify(token, "--at", at(act.exp + 61))
    assert r.code == 1 and "denied: expired" in r.stderr
    r = world.verify(token, "--at", at(act.iat - 120))
    assert r.code == 1 and "denied: not_yet_valid" in r.stderr
    r = world.verify(token, "--at", "not-a-time")
    assert r.code == 2 and "bad time" in r.stderr


def test_audience(world):
    aimed = world.tmp / "aimed.txt"
    world.ok(world.admin, "delegate", "--from", "user:alice", "--to", "agent:deployer", "--scope", "deploy.staging:api/*",
             "--audience", "tools.example", "-o", str(aimed))
    token = world.ok(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                     "--grant", str(aimed)).stdout.strip()
    assert parse_action(token).aud == ("tools.example",)  # taken from the grant
    assert "denied: audience_mismatch" in world.verify(token).stderr
    assert "denied: audience_mismatch" in world.verify(token, "--audience", "other.example").stderr
    assert world.verify(token, "--audience", "tools.example").code == 0
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", str(aimed), "--audience", "other.example")
    assert r.code == 1 and "denied: audience_mismatch" in r.stderr


def test_verify_a_grant(world):
    code, doc, _ = world.verify_json(world.grant, "--action", "deploy.staging", "--resource", "api/web")
    assert code == 0 and doc["type"] == "grant" and doc["scope"] == "deploy.staging:api/*"
    assert doc["jti"] == parse_chain(world.grant).leaf.jti
    code, doc, _ = world.verify_json(world.grant, "--action", "deploy.production", "--resource", "api/web")
    assert code == 1 and doc["reason"] == "scope_denied" and doc["type"] == "grant"


def test_a_grant_where_an_action_is_required_is_denied(world):
    """--data and --once need an action; the token comes from the requester, so a grant there is a
    token of the wrong type (malformed, exit 1), not a usage error in the verifier's script."""
    for extra in (("--data", str(world.payload)), ("--once",)):
        code, doc, err = world.verify_json(world.grant, "--action", "deploy.staging", "--resource", "api/web", *extra)
        assert code == 1 and doc["reason"] == "malformed" and doc["type"] == "grant"
        assert "expected an action token" in err


def test_other_token_types_are_not_verified(world):
    rl = world.ok(world.admin, "revocations", "export", "--sign-as", "user:alice").stdout.strip()
    r = world.verify(rl)
    assert r.code == 1 and "denied: malformed" in r.stderr


def test_verify_needs_a_token(world):
    r = world.run(world.tool, "verify")
    assert r.code == 2 and "give a token" in r.stderr
    r = world.run(world.tool, "verify", "-", "--data", "-", input="x")
    assert r.code == 2 and "cannot both read stdin" in r.stderr
    r = world.verify(world.sign(), "--data", str(world.tmp / "missing.json"))
    assert r.code == 2 and "no such file" in r.stderr


# --- --once ---------------------------------------------------------------------------------------


def test_once(world):
    token = world.sign()
    assert world.verify(token, "--once", *strict(world)).code == 0
    r = world.verify(token, "--once", *strict(world))
    assert r.code == 1 and r.stderr.startswith("agentctl: denied: replayed: action ")
    # without --once it is still a valid action; in another home it has not been used
    assert world.verify(token, *strict(world)).code == 0
    assert world.verify(token, "--once", *strict(world), home=world.admin).code == 0


def test_once_records_only_what_verified(world):
    token = world.sign()
    assert world.verify(token, "--once", "--action", "deploy.production", "--resource", "api/web").code == 1
    assert world.verify(token, "--once", *strict(world)).code == 0


def test_once_store_names_files_by_digest(world):
    token = world.sign()
    assert world.verify(token, "--once").code == 0
    files = list((world.tool / "seen").iterdir())
    assert len(files) == 1
    name = files[0].name
    assert len(name) == 64 and set(name) <= set("0123456789abcdef")
    act = parse_action(token)
    assert int(files[0].read_text()) == act.exp + 600  # the largest leeway, whatever this call's was
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"


def test_once_does_not_go_with_at(world):
    token = world.sign()
    r = world.verify(token, "--once", "--at", at(parse_action(token).iat + 10))
    assert r.code == 2 and "--once" in r.stderr and "--at" in r.stderr
    assert not (world.tool / "seen").exists()


def test_once_sweeps_only_expired_records(world, tmp_path):
    from agentctl.home import Home
    from agentctl.seen import HomeSeenStore

    h = Home(tmp_path / "sweep")
    h.ensure("seen")
    seen = h.path / "seen"
    (seen / "old").write_text("100")
    (seen / "live").write_text("300")
    (seen / "being-written").write_text("")  # another process between create and write
    assert HomeSeenStore(h).sweep(200) == 1
    assert sorted(p.name for p in seen.iterdir()) == ["being-written", "live"]


# --- the fast path and the Typer application agree ------------------------------------------------


def test_fast_path_and_typer_agree(world, capsys, monkeypatch):
    import io
    import sys

    import agentctl._cli.entry as entry

    typer_app = entry.run_typer

    def not_here(args):
        raise AssertionError(f"the fast path gave {args} to Typer")

    token = world.sign()
    home = ["--home", str(world.tool)]
    cases = [
        [*home, "verify", token, *strict(world)],
        [*home, "--json", "verify", token, *strict(world)],
        [*home, "verify", token, "--json", "--action", "deploy.production", "--resource", "api/web"],
        [*home, "verify", token, "--action=deploy.staging", "--resource=api/db"],
        [*home, "verify", world.grant, "--data", str(world.payload)],
        [*home, "verify", token[:-5]],
        [*home, "verify", token, "--at", "bogus"],
        [*home, "verify", token, "--once", "--leeway", "0s"],
    ]
    for args in cases:
        results = []
        for fast in (True, False):
            monkeypatch.setattr(sys, "stdin", io.StringIO(""))
            if fast:
                monkeypatch.setattr(entry, "run_typer", not_here)
                code = entry.main(list(args))
                monkeypatch.setattr(entry, "run_typer", typer_app)
            else:
                code = typer_app(list(args))
            out = capsys.readouterr()
            results.append((code, out.out, out.err))
        if "--once" in args:  # the first run used the action up
            assert (results[0][0], results[1][0]) == (0, 1) and "replayed" in results[1][2]
        else:
            assert results[0] == results[1], args


def test_more_usage_errors(world):
    token = world.sign()
    r = world.verify(token, "--leeway", "soon")
    assert r.code == 2 and "--leeway" in r.stderr
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", "-", "--data", "-", input=world.grant)
    assert r.code == 2 and "cannot both read stdin" in r.stderr and r.stdout == ""
    r = world.run(world.agent, "sign", "--as", "agent:deployer", "--action", "deploy.staging", "--resource", "api/web",
                  "--grant", "-", input=world.grant + "\n")
    assert r.code == 0 and world.verify(r.stdout.strip(), "--action", "deploy.staging", "--resource", "api/web").code == 0


def test_the_fast_path_accepts_exactly_the_verify_options_typer_defines():
    """fast.py parses verify without Typer: its option lists must be the command's (issue 8)."""
    import inspect as pyinspect

    import typer

    from agentctl._cli import action_app as app_module, fast

    defaults = pyinspect.signature(app_module.verify).parameters.values()
    options = [p.default for p in defaults if isinstance(p.default, typer.models.OptionInfo)]
    names = {n for o in options for n in o.param_decls if n.startswith("--")}
    flags = {n for o in options for n in o.param_decls if n.startswith("--") and o.default is False}
    assert set(fast._VERIFY_VALUES) == names - flags
    assert set(fast._VERIFY_FLAGS) == flags
