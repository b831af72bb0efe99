"""One intent written twice, in Rego and in Cedar, decides a shared table of cases identically: through
the library (every case) and through ``agentctl verify --policy`` (a real home, real tokens). Then the
fail-closed cases through the command: a second set that denies what the first allows, a division by
zero, a non-boolean result and a time-out each deny with ``policy_denied``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("regopy")
pytest.importorskip("cedarpy")

from agentctl.policy import decide_all, load_set, load_sets  # noqa: E402
from agentctl.policy.input import Approval, Delegation, Hop, build_input  # noqa: E402

# Reviewer agents may open or review pull requests on repositories the tool server tags "sandbox", for
# an engineer, within 30 minutes of the engineer's delegation; never anything on acme/secrets.
REGO = """package agent.authz
default allow = false
allow if {
  "reviewer" in input.agent.roles
  input.action in {"pull_request.create", "pull_request.review"}
  "sandbox" in input.resource.tags
  "engineer" in input.delegation.user_roles
  input.now >= input.delegation.issued_at
  input.now - input.delegation.issued_at <= 1800
  input.resource.id != "acme/secrets"
}
"""
CEDAR = """@id("reviewers-on-sandbox")
permit(principal in Agentctl::Role::"reviewer",
       action in [Agentctl::Action::"pull_request.create", Agentctl::Action::"pull_request.review"],
       resource)
when { resource has tags && resource.tags.contains("sandbox")
       && context has delegation && context.delegation.user in Agentctl::Role::"engineer"
       && context.now >= context.delegation.issued_at
       && context.now - context.delegation.issued_at <= 1800 };
@id("never-secrets")
forbid(principal, action, resource == Agentctl::Resource::"acme/secrets");
"""

T0 = 1_000_000
SANDBOX = {"resource": {"tags": ["sandbox"]}}


def case(*, agent="agent:code-reviewer:prod", known=True, roles=("reviewer",), action="pull_request.create",
         resource="acme/api", user_roles=("engineer",), context=SANDBOX, now=T0 + 60, grant=True, approval=None) -> dict:
    delegation = Delegation(user="user:alice", user_roles=tuple(user_roles),
                            chain=(Hop("user:alice", agent, ("pull_request.*:acme/*",), T0, T0 + 7200, "j1"),)) if grant else None
    return build_input(agent_id=agent, agent_kid="kid-1", agent_known=known, agent_roles=list(roles), agent_attrs={},
                       action=action, resource_id=resource, delegation=delegation, approval=approval,
                       token={"type": "action", "jti": "a1", "iat": now, "exp": now + 300, "aud": None},
                       payload={"sha256": "00"}, context=context, now=now)


TABLE: list[tuple[str, dict, bool]] = [
    ("create on a sandbox repo", case(), True),
    ("review on a sandbox repo", case(action="pull_request.review"), True),
    ("among other tags", case(context={"resource": {"tags": ["python", "sandbox"]}, "ticket": "T-1"}), True),
    ("at the delegation's second", case(now=T0), True),
    ("at exactly 30 minutes", case(now=T0 + 1800), True),
    ("with an approval nobody asked for", case(approval=Approval("user:carol", T0, "ok", "ap1")), True),
    ("a merge", case(action="pull_request.merge"), False),
    ("no tags", case(context={}), False),
    ("prod only", case(context={"resource": {"tags": ["prod"]}}), False),
    ("a tag string, not a list", case(context={"resource": {"tags": "sandbox"}}), False),
    ("sandbox outside resource", case(context={"tags": ["sandbox"]}), False),
    ("an agent without the role", case(roles=()), False),
    ("an unknown delegate claiming the role", case(known=False), False),
    ("a user in sales", case(user_roles=("sales",)), False),
    ("no grant", case(grant=False), False),
    ("a second late", case(now=T0 + 1801), False),
    ("before the delegation", case(now=T0 - 1), False),
    ("acme/secrets, even tagged sandbox", case(resource="acme/secrets"), False),
]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("table")
    (d / "table.rego").write_text(REGO)
    (d / "table.cedar").write_text(CEDAR)
    return load_set([str(d / "table.rego")]), load_set([str(d / "table.cedar")])


def test_the_table_has_ten_or_more_cases_both_ways():
    assert len(TABLE) >= 10
    assert sum(1 for *_, a in TABLE if a) >= 5 and sum(1 for *_, a in TABLE if not a) >= 5


@pytest.mark.parametrize("what, doc, allowed", TABLE, ids=[t[0] for t in TABLE])
def test_rego_and_cedar_decide_alike(sets, what, doc, allowed):
    rego, cedar = sets
    r, c = rego.decide(doc), cedar.decide(doc)
    assert (r.allowed, c.allowed) == (allowed, allowed), (r.detail, c.detail)
    assert (r.engine, c.engine) == ("rego", "cedar")
    if not allowed:  # a plain no, not a failure (Cedar alone errs on a tag that is not a set, and an error denies)
        assert "error" not in r.detail
        assert ("evaluation error" in c.detail) is (what == "a tag string, not a list"), c.detail


def test_the_cedar_forbid_is_what_denies_secrets(sets):
    _, cedar = sets
    d = cedar.decide(case(resource="acme/secrets"))
    assert d.result == "Deny" and "never-secrets" in d.detail


def test_a_set_of_each_engine_together_must_both_allow(sets, tmp_path):
    rego, cedar = sets
    permissive = tmp_path / "any.rego"
    permissive.write_text("package agent.authz\nallow := true\n")
    both = load_sets(policies=[str(permissive), cedar.files[0]])
    for what, doc, allowed in TABLE:
        decisions = decide_all(both, doc)
        assert decisions[-1].allowed is allowed, what
        assert decisions[0].allowed  # the first set allowed every one; the Cedar set decided


# --- through the command --------------------------------------------------------------------------


@pytest.fixture
def table_home(cli, home, tmp_path):
    """alice (engineer) delegates pull requests in acme to the code reviewer (role reviewer), which signs
    a create on acme/api, a merge on acme/api and a create on acme/secrets."""
    env = {"AGENTCTL_KEYSTORE": "file"}
    assert cli("keygen", "user:alice", "--role", "engineer", env=env).code == 0
    assert cli("keygen", "agent:code-reviewer:prod", "--role", "reviewer", env=env).code == 0
    g = tmp_path / "g.jwt"
    assert cli("delegate", "--from", "user:alice", "--to", "agent:code-reviewer:prod", "--scope", "pull_request.*:acme/*",
               "--ttl", "2h", "-o", str(g)).code == 0
    files = {}
    for name, action, resource in (("create", "pull_request.create", "acme/api"), ("merge", "pull_request.merge", "acme/api"),
                                   ("secrets", "pull_request.create", "acme/secrets")):
        files[name] = str(tmp_path / f"{name}.jwt")
        assert cli("sign", "--as", "agent:code-reviewer:prod", "--action", action, "--resource", resource,
                   "--grant", str(g), "--ttl", "1h", "-o", files[name]).code == 0
    for name, text in (("table.rego", REGO), ("table.cedar", CEDAR)):
        (tmp_path / name).write_text(text)
        files[name] = str(tmp_path / name)
    for name, doc in (("sandbox", SANDBOX), ("prod", {"resource": {"tags": ["prod"]}})):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        files[name] = str(tmp_path / f"{name}.json")
    iat = _claims(files["create"])["iat"]  # the grant was minted in the same second or just before
    files["in"], files["late"] = _rfc3339(iat + 60), _rfc3339(_grant_iat(g) + 1801)
    return files


def _claims(token_file: str) -> dict:
    from agentctl.encoding import b64u_decode

    return json.loads(b64u_decode(open(token_file).read().strip().rpartition("~")[2].split(".")[1]))


def _grant_iat(grant) -> int:
    from agentctl.encoding import b64u_decode

    return json.loads(b64u_decode(grant.read_text().strip().split(".")[1]))["iat"]


def _rfc3339(t: int) -> str:
    from agentctl.clock import rfc3339

    return rfc3339(t)


CLI_CASES = [  # (token, context, at, allowed)
    ("create", "sandbox", "in", True),
    ("create", "prod", "in", False),
    ("merge", "sandbox", "in", False),
    ("secrets", "sandbox", "in", False),
    ("create", "sandbox", "late", False),
]


@pytest.mark.parametrize("token, context, at, allowed", CLI_CASES)
def test_the_command_decides_the_same_with_either_engine(cli, table_home, token, context, at, allowed):
    f = table_home
    got = {}
    for policy in ("table.rego", "table.cedar"):
        r = cli("--json", "verify", f[token], "--policy", f[policy], "--context", f[context], "--at", f[at])
        got[policy] = r.code
        doc = r.json()
        assert doc["policy"]["engine"] == policy.split(".")[1]
        if not allowed:
            assert doc["reason"] == "policy_denied", doc  # every earlier step held: the policy said no
    assert got == {"table.rego": 0 if allowed else 1, "table.cedar": 0 if allowed else 1}


def test_the_command_in_batch_decides_like_one_at_a_time(cli, table_home):
    f = table_home
    lines = "".join(json.dumps({"token": open(f[t]).read().strip(), "context": json.loads(open(f[c]).read())}) + "\n"
                    for t, c, at, _ in CLI_CASES if at == "in")
    want = [a for _, _, at, a in CLI_CASES if at == "in"]
    for policy in ("table.rego", "table.cedar"):
        r = cli("verify", "--batch", "--policy", f[policy], "--at", f["in"], input=lines)
        got = [json.loads(line)["ok"] for line in r.stdout.splitlines()]
        assert got == want, (policy, r.stdout, r.stderr)


# --- fail closed, through the command --------------------------------------------------------------


def test_a_cedar_set_denies_what_the_rego_set_allows(cli, table_home, tmp_path):
    f = table_home
    forbid = tmp_path / "forbid.cedar"
    forbid.write_text('@id("freeze")\nforbid(principal, action, resource);\npermit(principal, action, resource);\n')
    allowed = cli("verify", f["create"], "--policy", f["table.rego"], "--context", f["sandbox"], "--at", f["in"])
    assert allowed.code == 0, allowed.stderr
    r = cli("--json", "verify", f["create"], "--policy", f["table.rego"], "--policy", str(forbid),
            "--context", f["sandbox"], "--at", f["in"])
    doc = r.json()
    assert r.code == 1 and doc["reason"] == "policy_denied"
    assert doc["policy"]["engine"] == "cedar" and [s["allowed"] for s in doc["policy"]["sets"]] == [True, False]


@pytest.mark.parametrize("body, words", [
    ("package agent.authz\ndefault allow := true\nallow := false if { 1 / count(input.resource.tags) == 1 }\n",
     "evaluation error"),  # division by zero: with no tags the deny rule errs, and an error is not "undefined"
    ('package agent.authz\nallow := "true"\n', '"true", not true'),
    ("package agent.authz\nallow := 1\n", "1, not true"),
    ('package agent.authz\nallow := {"ok": true}\n', "not true"),
])
def test_a_runtime_error_or_a_non_boolean_denies(cli, table_home, tmp_path, body, words):
    f = table_home
    p = tmp_path / "p.rego"
    p.write_text(body)
    empty = tmp_path / "empty.json"
    empty.write_text('{"resource": {"tags": []}}')
    r = cli("verify", f["create"], "--policy", str(p), "--context", str(empty), "--at", f["in"])
    assert r.code == 1 and "policy_denied" in r.stderr and words in r.stderr, r.stderr


def test_a_policy_that_does_not_finish_in_time_denies(cli, home, table_home, tmp_path):
    f = table_home
    slow = tmp_path / "slow.rego"
    slow.write_text("package agent.authz\nallow if { count([x | some x in numbers.range(1, 2000000)]) > 0 }\n")
    (home / "config.toml").write_text((home / "config.toml").read_text() + '\n[policy]\ntimeout = "1ms"\n')
    r = cli("verify", f["create"], "--policy", str(slow), "--at", f["in"])
    assert r.code == 1 and "policy_denied" in r.stderr and "time-out" in r.stderr, r.stderr
