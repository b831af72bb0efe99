"""Step 11 (SPEC "Policy") inside verification, from the attacker's side: the input document holds only
verified facts, every set must allow, anything but an exact yes is ``policy_denied``, and each decision
is recorded so that ``policy input`` and ``policy eval`` reproduce it."""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("regopy")
pytest.importorskip("cedarpy")

from agentctl.clock import FixedClock  # noqa: E402
from agentctl.encoding import canonical_json  # noqa: E402
from agentctl.errors import REASONS, UsageError, VerificationError  # noqa: E402
from agentctl.models import Key, Principal  # noqa: E402
from agentctl.policy import load_set, load_sets  # noqa: E402
from agentctl.recording import MemoryRecorder  # noqa: E402
from agentctl.verify import NO_AUDIT, StaticTrust, Verifier  # noqa: E402

from test_library_verifier import NOW, Agent, make_action, make_grant  # noqa: E402

from agentctl._cli.demo import SEED_POLICY as SEED  # noqa: E402 - SPEC's seed policy (test_policy_docs checks it is SPEC's text)

SEED_CEDAR = """@id("seed")
permit (
  principal == Agentctl::Agent::"agent:code-reviewer:prod",
  action == Agentctl::Action::"pull_request.create",
  resource
) when {
  resource has repo && resource.repo like "acme/*" &&
  context has delegation && context.delegation has user_role &&
  context.delegation.user_role == "engineer"
};
"""

CTX = {"resource": {"repo": "acme/api"}}
ALICE, BOT = Agent.new("user:alice"), Agent.new("agent:code-reviewer:prod")


def principal(agent: Agent, roles=(), attrs=()) -> Principal:
    return Principal(agent.name, "local", 0.0, (Key(agent.public, 0.0),), roles=tuple(roles), attrs=tuple(attrs))


def verifier(policies, *, alice_roles=("engineer",), bot_known=True, recorder=NO_AUDIT, bot_roles=()) -> Verifier:
    people = {"user:alice": principal(ALICE, alice_roles)}
    if bot_known:
        people[BOT.name] = principal(BOT, bot_roles)
    return Verifier(StaticTrust(people), recorder=recorder, clock=FixedClock(NOW + 5), policies=policies)


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.fixture(params=["rego", "cedar"])
def seed_set(request, tmp_path):
    if request.param == "rego":
        return load_set([write(tmp_path, "seed.rego", SEED)])
    return load_set([write(tmp_path, "seed.cedar", SEED_CEDAR)])


def pr_action(repo="acme/api", action="pull_request.create") -> str:
    grant = make_grant(ALICE, BOT, "pull_request.*:acme/*")
    return make_action(BOT, action, repo, grant=grant)


def test_policy_denied_is_a_reason_code_between_payload_and_replay():
    assert REASONS.index("payload_mismatch") < REASONS.index("policy_denied") < REASONS.index("replayed")


def test_the_seed_policy_allows_alice_the_engineers_agent(seed_set):
    result = verifier([seed_set]).verify(pr_action(), context=CTX)
    pol = result.verdict()["policy"]
    assert pol["engine"] == seed_set.engine and pol["digest"] == seed_set.digest
    assert pol["result"] in (True, "Allow") and len(pol["input_sha256"]) == 64


@pytest.mark.parametrize("case", ["role", "repo", "no_context", "other_action", "no_grant"])
def test_the_seed_policy_denies(seed_set, case):
    roles, ctx, token, known = ("engineer",), CTX, pr_action(), True
    if case == "role":
        roles = ("sales",)
    elif case == "repo":
        ctx = {"resource": {"repo": "evil/api"}}
    elif case == "no_context":
        ctx = None
    elif case == "other_action":
        token = pr_action(action="pull_request.merge")
    elif case == "no_grant":  # the agent acts on its own: no delegation, so no user_role
        token = make_action(BOT, "pull_request.create", "acme/api")
    v = verifier([seed_set], alice_roles=roles, bot_known=known or case == "no_grant",
                 bot_roles=("engineer",) if case == "no_grant" else ())
    if case == "no_grant":  # bot needs authority of its own to reach step 11: give it some
        v = Verifier(StaticTrust({"user:alice": principal(ALICE, roles), BOT.name: principal(BOT)},
                                 authority={BOT.name: ["pull_request.*:**"]}), recorder=NO_AUDIT,
                     clock=FixedClock(NOW + 5), policies=[seed_set])
    with pytest.raises(VerificationError) as e:
        v.verify(token, context=ctx)
    assert e.value.reason == "policy_denied"
    assert seed_set.files[0] in e.value.detail  # the detail names the set
    assert e.value.verdict["policy"]["digest"] == seed_set.digest


def test_a_context_cannot_replace_a_verified_field(tmp_path):
    """The context lands under "context" (and resource members beside resource.id); agent, action,
    delegation, token and approval stay what was verified. A resource id in the context is refused."""
    trusting = write(tmp_path, "trust.rego", """package agent.authz
allow if { input.agent.id == "agent:root:admin" }
allow if { input.action == "admin.everything" }
allow if { input.delegation.user == "user:root" }
allow if { input.token.type == "forged" }
allow if { input.approval.by == "user:carol" }
allow if { input.resource.id == "prod/db" }
allow if { input.now == 1 }
""")
    v = verifier(load_sets(policies=[trusting]))
    forged = {"agent": {"id": "agent:root:admin"}, "action": "admin.everything", "delegation": {"user": "user:root"},
              "token": {"type": "forged"}, "approval": {"by": "user:carol"}, "now": 1, "resource": {"repo": "x"}}
    with pytest.raises(VerificationError) as e:
        v.verify(pr_action(), context=forged)
    assert e.value.reason == "policy_denied"
    doc = v.policy_input(pr_action(), context=forged)
    assert doc["agent"]["id"] == BOT.name and doc["action"] == "pull_request.create" and doc["approval"] is None
    assert doc["context"]["agent"] == {"id": "agent:root:admin"}  # what was claimed stays where claims go
    with pytest.raises(UsageError):
        v.verify(pr_action(), context={"resource": {"id": "prod/db"}})
    with pytest.raises(UsageError):
        v.verify(pr_action(), context=["not", "an", "object"])


def test_an_unknown_agent_has_no_roles_and_cannot_satisfy_a_role_policy(tmp_path):
    by_role = load_set([write(tmp_path, "role.rego", 'package agent.authz\nallow if { "engineer" in input.agent.roles }\n')])
    known = verifier([by_role], bot_roles=("engineer",))
    known.verify(pr_action())
    stranger = verifier([by_role], bot_known=False)
    doc = stranger.policy_input(pr_action())
    assert doc["agent"] == {"id": BOT.name, "kid": BOT.kid, "known": False, "roles": [], "attrs": {}}
    with pytest.raises(VerificationError) as e:
        stranger.verify(pr_action(), context={"agent": {"roles": ["engineer"]}})
    assert e.value.reason == "policy_denied"


@pytest.mark.parametrize("body, words", [
    ("package agent.authz\nallow if { 1 / 0 }\n", "error"),
    ("package agent.authz\nallow := 1 / 0\n", "error"),
    ("package agent.authz\nallow := \"yes\"\n", "not true"),
    ("package agent.authz\nallow if { input.nothing == 1 }\n", "undefined"),
    ("package agent.authz\ndefault allow := false\n", "false"),
])
def test_anything_but_exactly_true_denies(tmp_path, body, words):
    s = load_set([write(tmp_path, "p.rego", body)])
    with pytest.raises(VerificationError) as e:
        verifier([s]).verify(pr_action(), context=CTX)
    assert e.value.reason == "policy_denied" and words in e.value.detail


def test_a_second_set_that_denies_wins_and_both_are_named(tmp_path):
    allow = load_set([write(tmp_path, "allow.rego", "package agent.authz\nallow := true\n")])
    deny = load_set([write(tmp_path, "deny.cedar", 'forbid (principal, action, resource);\n')])
    with pytest.raises(VerificationError) as e:
        verifier([allow, deny]).verify(pr_action(), context=CTX)
    pol = e.value.verdict["policy"]
    assert e.value.reason == "policy_denied" and "deny.cedar" in e.value.detail
    assert pol["engine"] == "cedar" and [s["allowed"] for s in pol["sets"]] == [True, False]
    assert pol["digest"] not in (allow.digest, deny.digest)  # over both sets' files, in order


def test_a_grant_verified_alone_is_asked_with_what_was_asked(tmp_path):
    s = load_set([write(tmp_path, "g.rego", 'package agent.authz\nallow if { input.token.type == "grant"; input.action == "pull_request.create"; input.resource.id == "acme/api" }\n')])
    v = verifier([s])
    grant = make_grant(ALICE, BOT, "pull_request.*:acme/*")
    assert v.verify_grant(grant, action="pull_request.create", resource="acme/api").verdict()["policy"]["result"] is True
    with pytest.raises(VerificationError) as e:
        v.verify_grant(grant)
    assert e.value.reason == "policy_denied"
    doc = v.policy_input(grant)
    assert doc["action"] is None and doc["resource"] == {"id": None} and doc["payload"] is None
    assert doc["delegation"]["user"] == "user:alice" and doc["delegation"]["depth"] == 1


def test_policy_runs_only_after_the_cryptography_holds(tmp_path):
    s = load_set([write(tmp_path, "allow.rego", "package agent.authz\nallow := true\n")])
    forged = make_action(BOT, "pull_request.create", "acme/api", grant=make_grant(ALICE, BOT, "pull_request.*:acme/*"),
                         seed=Agent.new("agent:x").seed)
    with pytest.raises(VerificationError) as e:
        verifier([s]).verify(forged)
    assert e.value.reason in ("chain_broken", "bad_signature") and e.value.verdict["policy"] is None


def test_the_event_names_the_decision_and_reproduces_it(tmp_path):
    s = load_set([write(tmp_path, "seed.rego", SEED)])
    rec = MemoryRecorder()
    v = verifier([s], recorder=rec)
    token = pr_action()
    v.verify(token, context=CTX)
    with pytest.raises(VerificationError):
        v.verify(token, context={"resource": {"repo": "evil/x"}})
    allowed, denied = (e.metadata["policy"] for e in rec.events)
    assert allowed["digest"] == denied["digest"] == s.digest and allowed["query"] == "data.agent.authz.allow"
    assert allowed["engine"] == "rego" and allowed["result"] is True and denied["result"] is False
    doc = v.policy_input(token, context=CTX)
    assert allowed["input_sha256"] == hashlib.sha256(canonical_json(doc)).hexdigest()
    assert s.decide(json.loads(json.dumps(doc))).allowed


def test_the_verifier_refuses_what_is_not_a_policy_set():
    with pytest.raises(UsageError):
        Verifier(StaticTrust({}), recorder=NO_AUDIT, policies=["seed.rego"])


# --- the CLI: verify --policy/--context, --batch, policy input ------------------------------------



def within(token_file: str) -> str:
    """A fixed time inside the action's life, for --at: the same ``now`` in verify and policy input."""
    from agentctl.clock import rfc3339
    from agentctl.encoding import b64u_decode

    claims = json.loads(b64u_decode(open(token_file).read().strip().rpartition("~")[2].split(".")[1]))
    return rfc3339(claims["iat"] + 10)


@pytest.fixture
def seed_home(cli, home, tmp_path):
    """alice (engineer) delegates to the code reviewer, which signs a pull request on acme/api."""
    for args in (("keygen", "user:alice", "--role", "engineer"), ("keygen", "agent:code-reviewer:prod")):
        assert cli(*args, env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    g, a = tmp_path / "g.jwt", tmp_path / "a.jwt"
    assert cli("delegate", "--from", "user:alice", "--to", "agent:code-reviewer:prod", "--scope", "pull_request.*:acme/*",
               "--ttl", "1h", "-o", str(g)).code == 0
    assert cli("sign", "--as", "agent:code-reviewer:prod", "--action", "pull_request.create", "--resource", "acme/api",
               "--grant", str(g), "--ttl", "30m", "-o", str(a)).code == 0
    files = {"grant": str(g), "action": str(a)}
    for name, text in (("seed.rego", SEED), ("seed.cedar", SEED_CEDAR)):
        files[name] = write(tmp_path, name, text)
    for name, doc in (("ctx", CTX), ("evil", {"resource": {"repo": "evil/api"}})):
        files[name] = write(tmp_path, f"{name}.json", json.dumps(doc))
    return files


def test_a_new_home_says_quick_start_once_and_never_overwrites(cli, home):
    assert cli("keygen", "user:alice", env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    assert 'authority = "quick-start"' in (home / "config.toml").read_text()
    (home / "config.toml").write_text('authority = "roles"\n')
    assert cli("keygen", "user:bob", env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    assert (home / "config.toml").read_text() == 'authority = "roles"\n'


@pytest.mark.parametrize("policy", ["seed.rego", "seed.cedar"])
def test_the_seed_policy_end_to_end(cli, seed_home, policy):
    f = seed_home
    ok = cli("--json", "verify", f["action"], "--policy", f[policy], "--context", f["ctx"])
    assert ok.code == 0, ok.stderr
    assert ok.json()["policy"]["engine"] == policy.split(".")[1]
    bad = cli("verify", f["action"], "--policy", f[policy], "--context", f["evil"])
    assert bad.code == 1 and "denied: policy_denied: policy set" in bad.stderr and policy in bad.stderr
    assert cli("role", "remove", "user:alice", "engineer").code == 0
    assert cli("role", "add", "user:alice", "sales").code == 0
    r = cli("--json", "verify", f["action"], "--policy", f[policy], "--context", f["ctx"])
    assert r.code == 1 and r.json()["reason"] == "policy_denied" and r.json()["policy"]["digest"]


def test_the_config_policy_is_one_set_every_set_must_allow(cli, home, seed_home, tmp_path):
    f = seed_home
    (home / "seed.rego").write_text(SEED)
    (home / "config.toml").write_text('[policy]\nfiles = ["seed.rego"]\ntimeout = "500ms"\n')
    assert cli("verify", f["action"], "--context", f["ctx"]).code == 0
    assert cli("verify", f["action"], "--context", f["evil"]).code == 1
    deny = write(tmp_path, "deny.rego", "package agent.authz\ndefault allow := false\n")
    r = cli("verify", f["action"], "--context", f["ctx"], "--policy", deny)
    assert r.code == 1 and "deny.rego" in r.stderr


@pytest.mark.parametrize("config, words", [
    ('[policy]\nfile = ["x.rego"]\n', "unknown key 'file'"),
    ('[policy]\nfiles = "x.rego"\n', "list of file names"),
    ('[policy]\ntimeout = "forever"\n', "timeout"),
    ('[policy]\ntimeout = "2m"\n', "at most 60s"),
    ('policy = "x.rego"\n', "must be a table"),
])
def test_a_bad_policy_table_is_a_usage_error(cli, home, seed_home, config, words):
    (home / "config.toml").write_text(config)
    r = cli("verify", seed_home["action"])
    assert r.code == 2 and words in r.stderr


def test_policy_failures_have_their_exit_codes(cli, seed_home, tmp_path, monkeypatch):
    f = seed_home
    broken = write(tmp_path, "broken.rego", "package agent.authz\nallow if {\n  input.x ==\n")
    r = cli("verify", f["action"], "--policy", broken)
    assert r.code == 2 and "broken.rego:2 does not compile" in r.stderr
    errs = write(tmp_path, "errs.rego", "package agent.authz\nallow if { 1 / 0 }\n")
    r = cli("verify", f["action"], "--policy", errs)
    assert r.code == 1 and "policy_denied" in r.stderr
    assert cli("verify", f["action"], "--policy", str(tmp_path / "missing.rego")).code == 2
    assert cli("verify", f["action"], "--query", "data.x.allow").code == 2  # --query without --policy
    import sys

    monkeypatch.setitem(sys.modules, "regopy", None)  # the extra is not installed
    import agentctl.policy as policy

    monkeypatch.setattr(policy, "_CACHE", {})
    r = cli("verify", f["action"], "--policy", f["seed.rego"])
    assert r.code == 3 and "pip install" in r.stderr


@pytest.mark.parametrize("context, words", [
    ('["a"]', "JSON object"), ('{"resource": {"id": "prod/db"}}', '"id"'), ('{"resource": "acme/api"}', "object"), ("{", "not JSON"),
])
def test_a_bad_context_is_exit_2_and_in_batch_a_malformed_line(cli, seed_home, tmp_path, context, words):
    f = seed_home
    r = cli("verify", f["action"], "--policy", f["seed.rego"], "--context", write(tmp_path, "c.json", context))
    assert r.code == 2 and words in r.stderr
    token = open(f["action"]).read().strip()
    if context != "{":
        line = json.dumps({"token": token, "context": json.loads(context)})
        r = cli("verify", "--batch", "--policy", f["seed.rego"], input=line + "\n")
        assert r.code == 1 and json.loads(r.stdout)["reason"] == "malformed"


def test_batch_lines_carry_their_own_context_unless_the_flag_gives_one(cli, seed_home):
    f = seed_home
    token = open(f["action"]).read().strip()
    lines = [json.dumps({"token": token, "context": CTX}), json.dumps({"token": token, "context": {"resource": {"repo": "evil/x"}}}),
             json.dumps({"token": token, "policy": "allow-all.rego"})]
    r = cli("verify", "--batch", "--policy", f["seed.rego"], input="\n".join(lines) + "\n")
    verdicts = [json.loads(x) for x in r.stdout.splitlines()]
    assert [v["ok"] for v in verdicts] == [True, False, False] and r.code == 1
    assert [v["reason"] for v in verdicts] == [None, "policy_denied", "malformed"]
    r = cli("verify", "--batch", "--policy", f["seed.rego"], "--context", f["ctx"], input=lines[0] + "\n" + token + "\n")
    verdicts = [json.loads(x) for x in r.stdout.splitlines()]
    assert verdicts[0]["reason"] == "malformed" and "--context" in verdicts[0]["detail"] and verdicts[1]["ok"]


def test_policy_input_and_eval_reproduce_a_recorded_decision(cli, seed_home, tmp_path):
    f = seed_home
    at = within(f["action"])
    for ctx, allowed in (("ctx", True), ("evil", False)):
        r = cli("verify", f["action"], "--policy", f["seed.rego"], "--context", f[ctx], "--at", at)
        assert (r.code == 0) is allowed
        event = cli("--json", "audit", "--limit", "1").json()["events"][0]
        recorded = event["metadata"]["policy"]
        printed = cli("policy", "input", f["action"], "--context", f[ctx], "--at", at)
        assert printed.code == 0
        text = printed.stdout.rstrip("\n")
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == recorded["input_sha256"]
        assert text.encode("utf-8") == canonical_json(json.loads(text))
        doc_file = write(tmp_path, "input.json", text)
        ev = cli("--json", "policy", "eval", f["seed.rego"], "--input", doc_file)
        assert (ev.code == 0) is allowed and ev.json()["digest"] == recorded["digest"]
        assert ev.json()["input_sha256"] == recorded["input_sha256"]


def test_policy_input_refuses_what_does_not_verify_and_context_that_replaces(cli, seed_home, tmp_path):
    f = seed_home
    token = open(f["action"]).read().strip()
    prefix, _, last = token.rpartition("~")  # a presentation: tamper with the action, its last token
    head, body, sig = last.split(".")
    tampered = f"{head}.{body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
    r = cli("policy", "input", f"{prefix}~{tampered}" if prefix else tampered)
    assert r.code == 1 and "denied: bad_signature" in r.stderr and r.stdout == ""
    r = cli("policy", "input", f["action"], "--context", write(tmp_path, "c.json", '{"resource": {"id": "prod/db"}}'))
    assert r.code == 2
    forged = write(tmp_path, "f.json", json.dumps({"agent": {"id": "agent:root"}, "delegation": None, "action": "x"}))
    doc = cli("--json", "policy", "input", f["action"], "--context", forged).json()["input"]
    assert doc["agent"]["id"] == "agent:code-reviewer:prod" and doc["delegation"]["user"] == "user:alice"
    assert doc["action"] == "pull_request.create" and doc["context"]["agent"] == {"id": "agent:root"}
    grant = cli("--json", "policy", "input", f["grant"], "--action", "pull_request.create", "--resource", "acme/api").json()["input"]
    assert grant["token"]["type"] == "grant" and grant["resource"]["id"] == "acme/api" and grant["payload"] is None
