"""`agentctl verify --batch`: JSON Lines in, one verdict per line out, in order; a grant that recurs is
verified once; batch, single-command and library verdicts agree."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

import agentctl.crypto
from agentctl.clock import FixedClock
from agentctl.encoding import b64u_encode
from agentctl.errors import VerificationError
from agentctl.models import Revocation, Revocations
from agentctl.verify import NO_AUDIT, StaticTrust, Verifier

from test_library_verifier import NOW, Agent, make_action, make_grant

AT = datetime.fromtimestamp(NOW + 5, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
N = 10_000
BAD_LINE = 5_000


class Keys:
    alice = Agent.new("user:alice")
    deployer = Agent.new("agent:deployer")
    lead = Agent.new("agent:lead")
    worker = Agent.new("agent:worker")


@pytest.fixture(scope="module")
def grant() -> str:
    return make_grant(Keys.alice, Keys.deployer, "deploy.staging:api/*")


@pytest.fixture(scope="module")
def many(grant) -> list[str]:
    """10,000 distinct actions (each its own jti and signature) under one grant, made in-process."""
    return [make_action(Keys.deployer, "deploy.staging", f"api/web-{i % 97}", grant=grant, data=b"x") for i in range(N)]


def trusting_alice(home) -> None:
    """A home where the role deploy-lead may grant deploy.* on api/** (imported principals have no
    authority under quick-start: SPEC, "Authority and roles")."""
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text('authority = "roles"\n\n[roles.deploy-lead]\nscopes = ["deploy.*:api/**"]\nrevoke = true\n')


@pytest.fixture
def tool(cli, tmp_path):
    """A tool home that trusts user:alice; ``tool(*args, input=)`` runs agentctl there at NOW + 5 s."""
    home = tmp_path / "tool"
    trusting_alice(home)
    r = cli("--home", str(home), "import", "user:alice", b64u_encode(Keys.alice.public), "--role", "deploy-lead")
    assert r.code == 0, r.stderr

    def run(*args, input="", at=True):
        return cli("--home", str(home), *args, *(("--at", AT) if at else ()), input=input)

    run.home = home
    return run


def verdicts(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def count_signature_checks(monkeypatch):
    import threading

    calls = {"n": 0}
    real = agentctl.crypto.verify
    lock = threading.Lock()  # --batch checks lines on several threads

    def counting(public, message, signature):
        with lock:
            calls["n"] += 1
        return real(public, message, signature)

    monkeypatch.setattr(agentctl.crypto, "verify", counting)
    return calls


# --- format ---------------------------------------------------------------------------------------


def test_plain_tokens_and_objects_in_order(tool, grant):
    good = make_action(Keys.deployer, "deploy.staging", "api/web", grant=grant, data=b'{"v":1}')
    outside = make_action(Keys.deployer, "deploy.production", "api/web", grant=grant)
    lines = [
        good,
        json.dumps({"token": good, "action": "deploy.staging", "resource": "api/web", "data": '{"v":1}'}),
        "",
        json.dumps({"token": good, "action": "deploy.staging", "resource": "api/web", "data": '{"v":2}'}),
        outside,
        json.dumps({"token": good, "action": "deploy.staging", "resource": "api/db"}),
        json.dumps({"token": good, "data_b64": b64u_encode(b'{"v":1}')}),
        grant,
    ]
    r = tool("verify", "--batch", input="\n".join(lines) + "\n")
    assert r.code == 1
    out = verdicts(r)
    assert [v["line"] for v in out] == [1, 2, 4, 5, 6, 7, 8]  # the blank line 3 gets no verdict
    assert [v["reason"] for v in out] == [None, None, "payload_mismatch", "scope_denied", "scope_denied", None, None]
    assert [v["type"] for v in out] == ["action"] * 6 + ["grant"]
    for v in out:
        assert set(v) == {"ok", "reason", "detail", "type", "agent", "agent_known", "on_behalf_of", "chain", "action",
                          "resource", "scope", "audience", "expires_at", "jti", "approval", "policy", "line"}
        assert v["ok"] is (v["reason"] is None)
    assert out[0]["agent"] == "agent:deployer" and out[0]["on_behalf_of"] == "user:alice"
    assert "at least one line did not verify" in r.stderr


def test_exit_0_when_every_line_holds(tool, grant):
    tokens = [make_action(Keys.deployer, "deploy.staging", "api/web", grant=grant) for _ in range(3)]
    r = tool("verify", "--batch", input="\n".join(tokens) + "\n")
    assert r.code == 0 and [v["ok"] for v in verdicts(r)] == [True] * 3
    assert r.stderr == ""


def test_flags_give_the_default_for_every_line(tool, grant):
    token = make_action(Keys.deployer, "deploy.staging", "api/web", grant=grant)
    lines = [token, json.dumps({"token": token, "action": "deploy.staging", "resource": "api/web"})]
    r = tool("verify", "--batch", "--action", "deploy.production", "--resource", "api/web", input="\n".join(lines))
    assert [v["reason"] for v in verdicts(r)] == ["scope_denied", None]


def test_malformed_lines_fail_alone(tool, grant):
    token = make_action(Keys.deployer, "deploy.staging", "api/web", grant=grant)
    lines = [
        "{not json",
        '{"token": "a", "token": "b"}',
        json.dumps({"action": "deploy.staging"}),
        json.dumps({"token": 5}),
        json.dumps({"token": token, "data": 7}),
        json.dumps({"token": token, "data_b64": "***"}),
        json.dumps({"token": token, "action": "deploy.*", "resource": "api/web"}),
        "garbage",
        token,
    ]
    r = tool("verify", "--batch", input="\n".join(lines))
    out = verdicts(r)
    assert r.code == 1
    assert [v["reason"] for v in out] == ["malformed"] * 8 + [None]
    assert [v["line"] for v in out] == list(range(1, 10))


def test_empty_batch(tool):
    r = tool("verify", "--batch", input="")
    assert r.code == 1 and r.stdout == "" and "no tokens on stdin" in r.stderr
    r = tool("verify", "--batch", input="\n\n")
    assert r.code == 1 and r.stdout == ""


def test_batch_usage_errors(tool, grant):
    r = tool("verify", grant, "--batch")
    assert r.code == 2 and "--batch reads stdin" in r.stderr
    r = tool("verify", "--batch", "--data", "x.json", input=grant)
    assert r.code == 2 and "--data does not go with --batch" in r.stderr


def test_batch_once(cli, tmp_path):
    """--once uses the real clock: mint actions for now and run them twice in one batch."""
    import time

    now = int(time.time())
    alice, deployer = Agent.new("user:alice"), Agent.new("agent:deployer")
    grant = make_grant(alice, deployer, "deploy.staging:api/*", now=now)
    a, b = (make_action(deployer, "deploy.staging", "api/web", grant=grant, now=now) for _ in range(2))
    home = str(tmp_path / "tool")
    trusting_alice(tmp_path / "tool")
    assert cli("--home", home, "import", "user:alice", b64u_encode(alice.public), "--role", "deploy-lead").code == 0
    r = cli("--home", home, "verify", "--batch", "--once", input="\n".join([a, b, a, grant]) + "\n")
    assert [v["reason"] for v in verdicts(r)] == [None, None, "replayed", "malformed"]
    assert r.code == 1
    r = cli("--home", home, "verify", "--batch", "--once", input=b + "\n")
    assert [v["reason"] for v in verdicts(r)] == ["replayed"]


# --- 10,000 lines ---------------------------------------------------------------------------------


def test_ten_thousand_lines_one_bad(tool, many, count_signature_checks):
    lines = list(many)
    lines[BAD_LINE - 1] = json.dumps({"token": many[BAD_LINE - 1], "data": "not x"})
    r = tool("verify", "--batch", input="\n".join(lines) + "\n")
    assert r.code == 1
    out = verdicts(r)
    assert len(out) == N
    assert [v["line"] for v in out] == list(range(1, N + 1))
    failed = [v for v in out if not v["ok"]]
    assert [(v["line"], v["reason"]) for v in failed] == [(BAD_LINE, "payload_mismatch")]
    assert out[BAD_LINE - 2]["ok"] and out[BAD_LINE]["ok"]
    assert out[0]["resource"] == "api/web-0" and out[N - 1]["resource"] == f"api/web-{(N - 1) % 97}"
    # the grant was verified once: one check per action, plus one for the grant
    assert count_signature_checks["n"] == N + 1


def test_library_checks_a_recurring_grant_once(many, count_signature_checks):
    verifier = Verifier(StaticTrust({"user:alice": Keys.alice.public}, authority={"user:alice": ["deploy.*:api/**"]}), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    for token in many:
        verifier.verify_action(token, data=b"x")
    assert count_signature_checks["n"] == N + 1


def test_three_hop_grant_is_checked_once_too(count_signature_checks):
    g1 = make_grant(Keys.alice, Keys.lead, "deploy.*:api/**", max_depth=2)
    g2 = make_grant(Keys.lead, Keys.deployer, "deploy.staging:api/**", parent=g1, max_depth=1)
    g3 = make_grant(Keys.deployer, Keys.worker, "deploy.staging:api/*", parent=g2)
    tokens = [make_action(Keys.worker, "deploy.staging", "api/web", grant=g3) for _ in range(500)]
    count_signature_checks["n"] = 0
    verifier = Verifier(StaticTrust({"user:alice": Keys.alice.public}, authority={"user:alice": ["deploy.*:api/**"]}), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    for t in tokens:
        assert verifier.verify_action(t).chain == ("user:alice", "agent:lead", "agent:deployer", "agent:worker")
    assert count_signature_checks["n"] == 500 + 3


def test_a_bad_grant_recurring_is_refused_every_time(tool, grant):
    """The cache keeps a refusal as well as an acceptance: every line under a bad grant fails alike."""
    forged = make_grant(Agent("user:alice", Keys.deployer.seed), Keys.deployer, "deploy.staging:api/*")
    tokens = [make_action(Keys.deployer, "deploy.staging", "api/web", grant=forged) for _ in range(5)]
    good = make_action(Keys.deployer, "deploy.staging", "api/web", grant=grant)
    r = tool("verify", "--batch", input="\n".join(tokens[:3] + [good] + tokens[3:]))
    assert [v["reason"] for v in verdicts(r)] == ["unknown_key"] * 3 + [None] + ["unknown_key"] * 2


# --- batch, single command and library agree ------------------------------------------------------


def _cases(grant):
    revoked_agent = Agent.new("agent:gone")
    g_gone = make_grant(Keys.alice, revoked_agent, "deploy.staging:api/*")
    base = dict(action="deploy.staging", resource="api/web", data=b"payload")
    tok = lambda **kw: make_action(Keys.deployer, "deploy.staging", "api/web", grant=grant, data=b"payload", **kw)  # noqa: E731
    good = tok()
    before, _, last = good.rpartition("~")
    h, p, s = last.split(".")
    return [
        ("good", good, base),
        ("other action", good, dict(base, action="deploy.production")),
        ("other resource", good, dict(base, resource="api/db")),
        ("other payload", good, dict(base, data=b"other")),
        ("outside the grant", make_action(Keys.deployer, "deploy.production", "api/web", grant=grant), {}),
        ("expired", tok(now=NOW - 1000), base),
        ("future", tok(now=NOW + 1000), base),
        ("bad signature", f"{before}~{h}.{p}.{s[:-4]}AAAA", base),
        ("truncated", good[:-30], base),
        ("untrusted root", make_action(Keys.deployer, "deploy.staging", "api/web",
                                       grant=make_grant(Agent.new("user:mallory"), Keys.deployer, "deploy.*")), {}),
        ("revoked agent", make_action(revoked_agent, "deploy.staging", "api/web", grant=g_gone), {}),
        ("stolen grant", make_action(Keys.worker, "deploy.staging", "api/web", grant=grant), {}),
        ("a grant", grant, dict(action="deploy.staging", resource="api/web")),
        ("a grant, outside", grant, dict(action="deploy.production", resource="api/web")),
    ]


def test_batch_single_and_library_agree(tool, grant, tmp_path):
    cases = _cases(grant)
    revs = Revocations((Revocation("principal", "agent:gone", NOW),))
    # the tool home learns the revocation the way a machine does: a list signed by alice
    from agentctl import jws

    rl = jws.encode(jws.REVOCATIONS, {"iss": "user:alice", "iat": NOW, "jti": "r" * 22, "version": 1,
                                      "revoked": {"principals": [{"id": "agent:gone", "at": AT}]}}, Keys.alice.seed)
    (tmp_path / "rl.txt").write_text(rl)
    assert tool("revocations", "import", str(tmp_path / "rl.txt"), at=False).code == 0

    verifier = Verifier(StaticTrust({"user:alice": Keys.alice.public}, revs, authority={"user:alice": ["deploy.*:api/**"]}), recorder=NO_AUDIT, clock=FixedClock(NOW + 5))
    library = []
    for _name, token, ask in cases:
        try:
            if token == grant:
                verifier.verify_grant(token, action=ask.get("action"), resource=ask.get("resource"))
            else:
                verifier.verify_action(token, **ask)
            library.append(None)
        except VerificationError as e:
            library.append(e.reason)

    single = []
    for name, token, ask in cases:
        args = []
        for flag in ("action", "resource"):
            if flag in ask:
                args += [f"--{flag}", ask[flag]]
        if "data" in ask:
            f = tmp_path / f"data-{len(single)}"
            f.write_bytes(ask["data"])
            args += ["--data", str(f)]
        r = tool("verify", token, "--json", *args)
        doc = r.json()
        assert r.code == (0 if doc["ok"] else 1), (name, r.stderr)
        single.append(doc["reason"])

    lines = []
    for _name, token, ask in cases:
        req = {"token": token, **{k: v for k, v in ask.items() if k != "data"}}
        if "data" in ask:
            req["data"] = ask["data"].decode()
        lines.append(json.dumps(req))
    batch = [v["reason"] for v in verdicts(tool("verify", "--batch", input="\n".join(lines)))]

    expected = [None, "scope_denied", "scope_denied", "payload_mismatch", "scope_denied", "expired", "not_yet_valid",
                "bad_signature", "malformed", "untrusted_root", "revoked", "chain_broken", None, "scope_denied"]
    named = dict(zip((c[0] for c in cases), expected))
    assert dict(zip((c[0] for c in cases), library)) == named
    assert dict(zip((c[0] for c in cases), single)) == named
    assert dict(zip((c[0] for c in cases), batch)) == named


def test_batch_with_a_rolled_back_revocation_list(tool, grant, tmp_path):
    """A refused --revocations list fails the whole batch closed: no verdicts, exit 1."""
    from agentctl import jws

    def rl(version: int) -> str:
        f = tmp_path / f"rl{version}.txt"
        f.write_text(jws.encode(jws.REVOCATIONS, {"iss": "user:alice", "iat": NOW, "jti": f"v{version}" * 11,
                                                  "version": version, "revoked": {}}, Keys.alice.seed))
        return str(f)

    assert tool("revocations", "import", rl(2), at=False).code == 0
    token = make_action(Keys.deployer, "deploy.staging", "api/web", grant=grant)
    r = tool("verify", "--batch", "--revocations", rl(1), input=token + "\n")
    assert r.code == 1 and r.stdout == ""
    assert r.stderr.startswith("agentctl: denied: replayed: revocation list version 1 from user:alice")
    r = tool("verify", "--batch", "--revocations", rl(3), input=token + "\n")
    assert r.code == 0 and verdicts(r)[0]["ok"]


def test_an_overlong_line_is_its_own_malformed_verdict_and_is_never_read_whole(monkeypatch):
    """An endless line (``/dev/zero``) cannot exhaust memory: it is read up to the limit, skipped, and
    answered as malformed; the lines after it are still verified."""
    import io

    from agentctl._cli import batch_cmds

    monkeypatch.setattr(batch_cmds, "MAX_BATCH_LINE", 64)
    stream = io.BytesIO(b"a" * 1000 + b"\n" + b"short\n" + b"b" * 65)
    got = list(batch_cmds._bounded_lines(stream, 64))
    assert got == [None, b"short\n", None]
