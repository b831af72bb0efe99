"""Policy sets from the attacker's side: only an exact yes allows; everything else denies, names what
happened, and never crashes the process or writes to stdout."""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("regopy")
pytest.importorskip("cedarpy")

from agentctl.encoding import canonical_json  # noqa: E402
from agentctl.errors import OperationalError, UsageError  # noqa: E402
from agentctl.policy import decide_all, load_set, load_sets, policy_digest  # noqa: E402
from agentctl.policy.input import Approval, Delegation, Hop, build_input, check_context  # noqa: E402

from agentctl._cli.demo import SEED_POLICY as SEED  # noqa: E402 - SPEC's seed policy (test_policy_docs checks it is SPEC's text)


def seed_input(**over) -> dict:
    args = dict(
        agent_id="agent:code-reviewer:prod", agent_kid="kid-1", agent_known=True, agent_roles=["reviewer"],
        agent_attrs={}, action="pull_request.create", resource_id="acme/api",
        delegation=Delegation(user="user:alice", user_roles=("engineer",),
                              chain=(Hop("user:alice", "agent:code-reviewer:prod", ("pull_request.*:acme/*",), 100, 1900, "j1"),)),
        approval=None, token={"type": "action", "jti": "a1", "iat": 1000, "exp": 1300, "aud": None},
        payload={"sha256": "00"}, context={"resource": {"repo": "acme/api"}}, now=1000,
    )
    args.update(over)
    return build_input(**args)


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def rego(tmp_path, body: str, name: str = "p.rego", query: str = "data.agent.authz.allow", timeout: float = 1.0):
    return load_set([write(tmp_path, name, body)], query, timeout)


# --- the seed policy ------------------------------------------------------------------------------


def test_seed_policy_allows_exactly_as_written(tmp_path):
    s = rego(tmp_path, SEED)
    d = s.decide(seed_input())
    assert d.allowed and d.result is True and d.engine == "rego" and d.query == "data.agent.authz.allow"


@pytest.mark.parametrize("change", [
    {"action": "pull_request.merge"},
    {"agent_id": "agent:other"},
    {"context": {"resource": {"repo": "evil/api"}}},
    {"context": {}},
    {"delegation": None},
    {"delegation": Delegation(user="user:alice", user_roles=("engineer", "admin"),
                              chain=(Hop("user:alice", "agent:code-reviewer:prod", ("x",), 1, 2, "j"),))},
])
def test_seed_policy_denies_anything_else(tmp_path, change):
    d = rego(tmp_path, SEED).decide(seed_input(**change))
    assert not d.allowed


def test_primary_role_attribute_picks_the_user_role(tmp_path):
    deleg = Delegation(user="user:alice", user_roles=("admin", "engineer"), user_attrs={"primary_role": "engineer"},
                       chain=(Hop("user:alice", "agent:code-reviewer:prod", ("x",), 1, 2, "j"),))
    doc = seed_input(delegation=deleg)
    assert doc["delegation"]["user_role"] == "engineer" and doc["delegation"]["user_roles"] == ["admin", "engineer"]
    assert rego(tmp_path, SEED).decide(doc).allowed


# --- the input document ---------------------------------------------------------------------------


def test_input_document_shape():
    doc = seed_input(approval=Approval(by="user:carol", at=5, jti="ap1", note="ok"))
    assert set(doc) == {"agent", "action", "resource", "delegation", "approval", "token", "payload", "context", "now"}
    assert doc["resource"] == {"id": "acme/api", "repo": "acme/api"}
    assert doc["context"] == {}
    d = doc["delegation"]
    assert d["depth"] == 1 and d["issued_at"] == 100 and d["expires_at"] == 1900
    assert d["chain"][0] == {"iss": "user:alice", "holder": "agent:code-reviewer:prod", "scope": ["pull_request.*:acme/*"],
                             "iat": 100, "exp": 1900, "jti": "j1"}
    assert doc["approval"] == {"by": "user:carol", "at": 5, "note": "ok", "jti": "ap1"}


def test_unknown_agent_has_no_roles_or_attrs_whatever_is_passed():
    doc = seed_input(agent_known=False, agent_roles=["admin"], agent_attrs={"team": "x"})
    assert doc["agent"]["known"] is False and doc["agent"]["roles"] == [] and doc["agent"]["attrs"] == {}


@pytest.mark.parametrize("ctx", [[], "x", {"resource": []}, {"resource": {"id": "other"}}])
def test_bad_context_is_a_usage_error(ctx):
    with pytest.raises(UsageError):
        check_context(ctx)


def test_context_cannot_replace_a_verified_field():
    doc = seed_input(context={"agent": {"id": "agent:evil"}, "action": "x", "delegation": None, "token": {},
                              "approval": {"by": "user:mallory"}, "resource": {"repo": "acme/api"}, "now": 0})
    assert doc["agent"]["id"] == "agent:code-reviewer:prod" and doc["action"] == "pull_request.create"
    assert doc["delegation"]["user"] == "user:alice" and doc["approval"] is None and doc["now"] == 1000
    assert doc["resource"]["id"] == "acme/api"
    assert doc["context"]["agent"] == {"id": "agent:evil"}  # kept, but only under "context"


# --- fail closed --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ['"true"', "1", '{"x": 1}', "[true]", "false"])
def test_only_exactly_true_allows(tmp_path, value):
    d = rego(tmp_path, f"package agent.authz\nallow := {value}\n").decide({})
    assert not d.allowed and d.result == json.loads(value)


def test_undefined_denies(tmp_path):
    d = rego(tmp_path, "package agent.authz\nallow if { input.x == 1 }\n").decide({"x": 2})
    assert not d.allowed and d.result == "undefined" and "undefined" in d.detail


def test_division_by_zero_is_an_error_not_undefined(tmp_path):
    # without strict built-in errors the failing deny rule would be undefined and the default allow
    body = "package agent.authz\ndefault allow := true\nallow := false if { 1 / input.z == 1 }\n"
    d = rego(tmp_path, body).decide({"z": 0})
    assert not d.allowed and "evaluation error" in d.detail


def test_unknown_function_in_a_deny_rule_does_not_compile(tmp_path):
    # rego-cpp would find it only at evaluation; under "not" an undefined deny would allow
    body = "package agent.authz\ndefault allow := false\nallow if { not deny }\ndeny if { no_such_fn(1) }\n"
    with pytest.raises(UsageError, match=r"p.rego:4 does not compile: unknown function no_such_fn"):
        rego(tmp_path, body)


def test_unsafe_variable_in_allow_does_not_compile(tmp_path):
    with pytest.raises(UsageError, match=r"p.rego:2 does not compile: unsafe variable"):
        rego(tmp_path, "package agent.authz\nallow if { y > 1 }\n")


def test_conflicting_values_deny(tmp_path):
    body = "package agent.authz\nallow := true if { input.x == 1 }\nallow := false if { input.x == 1 }\n"
    d = rego(tmp_path, body).decide({"x": 1})
    assert not d.allowed and "evaluation error" in d.detail


def test_two_defaults_do_not_compile_and_do_not_crash(tmp_path):
    body = "package agent.authz\ndefault allow := false\ndefault allow := true\n"
    with pytest.raises(UsageError, match="does not compile"):
        rego(tmp_path, body)


def test_a_set_without_the_queried_rule_does_not_compile(tmp_path):
    with pytest.raises(UsageError, match="does not define data.agent.authz.allow"):
        rego(tmp_path, "package agent.authz\nother := true\n# allow := true\nx := \"allow := true\"\n")


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.rego", "package agent.authz\n\nallow if {\n  input.x == 1\n")
    with pytest.raises(UsageError) as e:
        load_set([path])
    assert f"{path}:" in e.value.message and "does not compile" in e.value.message


def test_a_printing_policy_keeps_stdout_clean(tmp_path, capfd):
    d = rego(tmp_path, 'package agent.authz\nallow if { print("from the policy"); true }\n').decide({})
    out, err = capfd.readouterr()
    assert d.allowed and "from the policy" not in out and "from the policy" in err


def test_time_out_denies(tmp_path):
    body = "package agent.authz\nallow if { count([x | some x in numbers.range(1, 200000)]) > 0 }\n"
    d = rego(tmp_path, body, timeout=0.005).decide({})
    assert not d.allowed and "time-out" in d.detail


def test_every_set_must_allow(tmp_path):
    a = write(tmp_path, "a.rego", "package agent.authz\nallow := true\n")
    b = write(tmp_path, "b.rego", "package agent.authz\nallow := false\n")
    decisions = decide_all(load_sets(policies=[a, b]), {})
    assert [d.allowed for d in decisions] == [True, False] and b in decisions[-1].detail


def test_config_files_are_one_set(tmp_path):
    a = write(tmp_path, "a.rego", "package agent.authz\nallow if { helper }\n")
    b = write(tmp_path, "b.rego", "package agent.authz\nhelper := true\n")
    sets = load_sets([a, b])
    assert len(sets) == 1 and sets[0].files == (a, b) and sets[0].decide({}).allowed


def test_digest_is_over_paths_and_file_hashes_in_order(tmp_path):
    a = write(tmp_path, "a.rego", "package agent.authz\nallow := true\n")
    b = write(tmp_path, "b.rego", "package agent.authz\nx := 1\n")
    s = load_set([a, b])
    pairs = [[a, hashlib.sha256(open(a, "rb").read()).hexdigest()], [b, hashlib.sha256(open(b, "rb").read()).hexdigest()]]
    assert s.digest == hashlib.sha256(canonical_json(pairs)).hexdigest()
    assert load_set([b, a]).digest != s.digest
    assert policy_digest([(a, open(a, "rb").read()), (b, open(b, "rb").read())]) == s.digest


def test_missing_engine_is_operational_with_an_honest_hint(tmp_path, monkeypatch):
    import sys

    from agentctl import policy

    monkeypatch.setitem(sys.modules, "regopy", None)  # import fails
    monkeypatch.setattr(policy, "_CACHE", {})
    with pytest.raises(OperationalError) as e:
        rego(tmp_path, SEED)
    assert e.value.exit_code == 3 and "pip install -e '.[rego]'" in e.value.hint
    assert "pip install agentctl" not in e.value.hint and "'agentctl[" not in e.value.hint


def test_mixed_and_unknown_files_are_usage_errors(tmp_path):
    a = write(tmp_path, "a.rego", SEED)
    c = write(tmp_path, "c.cedar", "permit(principal, action, resource);")
    with pytest.raises(UsageError):
        load_set([a, c])
    with pytest.raises(UsageError):
        load_set([write(tmp_path, "x.txt", "allow")])


# --- Cedar ------------------------------------------------------------------------------------------

CEDAR_SEED = """@id("engineers-open-prs")
permit(principal == Agentctl::Agent::"agent:code-reviewer:prod",
       action == Agentctl::Action::"pull_request.create",
       resource)
when { context has delegation && context.delegation.user in Agentctl::Role::"engineer"
       && resource has repo && resource.repo like "acme/*" };
"""


def cedar(tmp_path, body: str):
    return load_set([write(tmp_path, "p.cedar", body)])


def test_cedar_seed_intent_allows_and_names_the_policy(tmp_path):
    d = cedar(tmp_path, CEDAR_SEED).decide(seed_input())
    assert d.allowed and d.engine == "cedar" and "engineers-open-prs" in d.detail


def test_cedar_denies_otherwise(tmp_path):
    s = cedar(tmp_path, CEDAR_SEED)
    assert not s.decide(seed_input(context={"resource": {"repo": "evil/x"}})).allowed
    assert not s.decide(seed_input(delegation=None)).allowed


def test_cedar_forbid_overrides_permit(tmp_path):
    body = CEDAR_SEED + '@id("no-api")\nforbid(principal, action, resource == Agentctl::Resource::"acme/api");\n'
    d = cedar(tmp_path, body).decide(seed_input())
    assert not d.allowed and d.result == "Deny" and "no-api" in d.detail


def test_cedar_agent_roles_are_parents(tmp_path):
    s = cedar(tmp_path, 'permit(principal in Agentctl::Role::"reviewer", action, resource);')
    assert s.decide(seed_input()).allowed
    assert not s.decide(seed_input(agent_known=False)).allowed  # an unknown agent has no roles


def test_cedar_error_denies_even_when_another_policy_permits(tmp_path):
    body = 'permit(principal, action, resource);\npermit(principal, action, resource) when { resource.nosuch == 1 };\n'
    d = cedar(tmp_path, body).decide(seed_input())
    assert not d.allowed and "evaluation error" in d.detail


def test_cedar_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path, "bad.cedar", "permit(principal, action, resource) when { 1 + };")
    with pytest.raises(UsageError, match="bad.cedar"):
        load_set([path])


def test_shared_cases_decide_alike(tmp_path):
    r, c = rego(tmp_path, SEED), cedar(tmp_path, CEDAR_SEED)
    cases = [seed_input(), seed_input(action="x.y"), seed_input(agent_id="agent:zz"), seed_input(delegation=None),
             seed_input(context={"resource": {"repo": "acme/web"}}), seed_input(context={"resource": {"repo": "acme"}})]
    assert [r.decide(x).allowed for x in cases] == [c.decide(x).allowed for x in cases] == [True, False, False, False, True, False]
