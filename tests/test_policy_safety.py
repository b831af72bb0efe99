"""Rego sets that rego-cpp compiles but OPA refuses (unsafe variables, unknown functions), from the
attacker's side: such a rule is *undefined*, and under ``not`` undefined allows. Every one must be
refused when the set is loaded (usage error, exit 2, file and line), and ordinary safe policies must
still compile and decide as before."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("regopy")

from test_policy import SEED, seed_input, write  # noqa: E402

from agentctl.errors import UsageError  # noqa: E402
from agentctl.policy import load_set  # noqa: E402

HEAD = "package agent.authz\ndefault allow := false\nallow if { not deny }\n"

# the fail-open case of the issue: without the check this set ALLOWS every input
FAIL_OPEN = HEAD + "deny if { y > 1 }\n"

# (name, body, line of the offending expression)
UNSAFE = [
    ("negated-deny", FAIL_OPEN, 4),
    ("unsafe-in-function-body", HEAD + "deny if { f(1) }\nf(a) := r if { r := a + k }\n", 5),
    ("unsafe-in-comprehension", HEAD + "deny if { count([v | v > 1]) > 0 }\n", 4),
    ("comprehension-var-used-outside", HEAD + "deny if { q := [v | v := input.a[_]]; count(q) > 0; v > 0 }\n", 4),
    ("every-var-used-outside", HEAD + "deny if { every w in input.b { w > 0 }; w == 1 }\n", 4),
    ("some-declared-never-bound", HEAD + "deny if { some z; z > 1 }\n", 4),
    ("some-in-then-another-name", HEAD + "deny if { some u in input.c; t > u }\n", 4),
    ("negation-does-not-bind", HEAD + "deny if { not input.a[x]; x == 1 }\n", 4),
    ("binding-in-another-body", HEAD + "deny if { x := input.n; x > 5 }\ndeny if { x > 1 }\n", 5),
    ("binding-in-an-else-branch", HEAD + "deny := true if { x := input.n; x > 5 } else := true if { x > 1 }\n", 4),
    ("two-unbound-vars", HEAD + "deny if { a == b }\n", 4),
    ("misspelt-rule-under-not", "package agent.authz\ndefault allow := false\nallow if { not denny }\ndeny if { input.x }\n", 3),
    ("unsafe-in-partial-set", HEAD + "deny if { count(bad) > 0 }\nbad contains m if { m := input.a }\nbad contains m if { m > 3 }\n", 6),
]

UNKNOWN_FUNCTION = [
    ("negated-helper", HEAD + "deny if { no_such_fn(1) }\n", 4, "no_such_fn"),
    ("in-a-function", HEAD + "deny if { f(1) }\nf(a) if { nope.check(a) }\n", 5, "nope.check"),
    ("not-in-this-engine", HEAD + "deny if { trace(\"x\") }\n", 4, "trace"),
    ("missing-user-function", HEAD + "deny if { data.lib.missing(1) }\n", 4, "missing"),
]


@pytest.mark.parametrize("name,body,line", UNSAFE, ids=[u[0] for u in UNSAFE])
def test_unsafe_variables_are_refused_at_compile(tmp_path, name, body, line):
    path = write(tmp_path, "p.rego", body)
    with pytest.raises(UsageError) as e:
        load_set([path])
    assert e.value.exit_code == 2
    assert f"{path}:{line} does not compile: unsafe variable" in e.value.message
    assert e.value.hint and "bind every variable" in e.value.hint


@pytest.mark.parametrize("name,body,line,func", UNKNOWN_FUNCTION, ids=[u[0] for u in UNKNOWN_FUNCTION])
def test_unknown_functions_are_refused_at_compile(tmp_path, name, body, line, func):
    path = write(tmp_path, "p.rego", body)
    with pytest.raises(UsageError) as e:
        load_set([path])
    assert e.value.exit_code == 2 and f"{path}:{line} does not compile: unknown function" in e.value.message
    assert func in e.value.message


def test_the_fail_open_set_would_allow_without_the_check(tmp_path):
    """The engine itself: the refused set really allows, so the refusal is what closes the hole."""
    import regopy

    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    interp.add_module("p.rego", FAIL_OPEN)
    interp.set_input(regopy.Input({}))
    assert json.loads(str(interp.query("data.agent.authz.allow")))["expressions"] == [True]


def test_the_finding_names_the_file_of_a_multi_file_set(tmp_path):
    a = write(tmp_path, "a.rego", "package agent.authz\nimport data.helper\ndefault allow := false\n"
                                  "allow if { not helper.deny }\n")
    b = write(tmp_path, "b.rego", "package helper\n\ndeny if { input.ok == true }\ndeny if { misspelt }\n")
    with pytest.raises(UsageError) as e:
        load_set([a, b])
    # the engine keeps no line for this body: the file and the rule are named
    assert f"policy {b} does not compile: unsafe variable" in e.value.message
    assert e.value.message.endswith("in rule data.helper.deny")


def test_a_rule_the_query_does_not_reach_is_checked_too(tmp_path):
    # regopy 1.5 plans every rule of the set, so a helper nobody calls yet is refused as OPA would
    a = write(tmp_path, "a.rego", "package agent.authz\nallow if { input.ok == true }\n")
    b = write(tmp_path, "b.rego", "package other\nunused if { y > 1 }\n")
    with pytest.raises(UsageError, match=r"b.rego:2 does not compile: unsafe variable"):
        load_set([a, b])


def test_cli_check_and_eval_refuse_the_fail_open_set(cli, tmp_path):
    path = write(tmp_path, "open.rego", FAIL_OPEN)
    doc = write(tmp_path, "in.json", json.dumps(seed_input()))
    r = cli("policy", "check", path)
    assert r.code == 2 and f"agentctl: error: policy {path}:4 does not compile: unsafe variable" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    r = cli("--json", "policy", "eval", path, "--input", doc)
    assert r.code == 2 and r.json()["error"] == "usage" and "allowed" not in r.json()
    r = cli("policy", "eval", write(tmp_path, "fn.rego", UNKNOWN_FUNCTION[0][1]), "--input", doc)
    assert r.code == 2 and "unknown function no_such_fn" in r.stderr


# --- safe policies compile and decide as before ----------------------------------------------------

SAFE = """package agent.authz
default allow := false

allow if { not deny; some_allow }

some_allow if { "reviewer" in input.agent.roles }
some_allow if { every s in input.scopes { startswith(s, "read:") }; count(input.scopes) > 0 }
some_allow if { xs := [s | some s in input.list; s > 1]; count(xs) > 2 }
some_allow if { st := {s | some s in input.list}; 42 in st }
some_allow if { o := {k: v | some k, v in input.obj; v != null}; o.magic == 1 }
some_allow if { input.try_admin; is_admin with input.agent.roles as ["admin"] }
some_allow if { double(input.n) == 8 }
some_allow if { input.tags[_] == "sandbox" }
some_allow if { some i; input.arr[i] == "x"; i > 0 }
some_allow if { [a, b] := input.pair; a == b }
some_allow if { window_ok } else := false if { input.never }

is_admin if { "admin" in input.agent.roles }
double(x) := y if { y := x * 2 }
double(x) := 0 if { x < 0 }
window_ok if { input.now - input.issued_at <= 1800 }

deny if { input.action == "repo.delete" }
deny if { x := input.n; x > 100 }
deny if { x := input.m; x > 100 }
deny if { some r in input.agent.roles; r == "banned" }
deny if { not input.agent.known }
"""

BASE = {"agent": {"roles": [], "known": True}, "action": "read", "scopes": [], "list": [], "obj": {}, "n": 0,
        "m": 0, "tags": [], "arr": [], "pair": [1, 2], "now": 0, "issued_at": -10000, "try_admin": False}

SAFE_CASES = [
    ({}, False),
    ({"agent": {"roles": ["reviewer"], "known": True}}, True),
    ({"agent": {"roles": ["reviewer", "banned"], "known": True}}, False),
    ({"agent": {"roles": ["reviewer"], "known": False}}, False),
    ({"agent": {"roles": ["reviewer"], "known": True}, "action": "repo.delete"}, False),
    ({"agent": {"roles": ["reviewer"], "known": True}, "n": 101}, False),
    ({"agent": {"roles": ["reviewer"], "known": True}, "m": 101}, False),
    ({"scopes": ["read:a", "read:b"]}, True),
    ({"scopes": ["read:a", "write:b"]}, False),
    ({"list": [2, 3, 4]}, True),
    ({"list": [42]}, True),
    ({"obj": {"magic": 1, "other": None}}, True),
    ({"try_admin": True}, True),
    ({"n": 4}, True),
    ({"tags": ["prod", "sandbox"]}, True),
    ({"arr": ["y", "x"]}, True),
    ({"arr": ["x"]}, False),
    ({"pair": [3, 3]}, True),
    ({"now": 100, "issued_at": 0}, True),
]


@pytest.mark.parametrize("change,allowed", SAFE_CASES)
def test_safe_policies_compile_and_decide(tmp_path, change, allowed):
    s = load_set([write(tmp_path, "safe.rego", SAFE)])
    d = s.decide({**BASE, **change})
    assert d.allowed is allowed, d.detail


def test_seed_policy_still_compiles_and_decides(tmp_path):
    s = load_set([write(tmp_path, "seed.rego", SEED)])
    assert s.decide(seed_input()).allowed and not s.decide(seed_input(action="x")).allowed


# --- the input as the engine sees it --------------------------------------------------------------

@pytest.mark.parametrize("doc,what", [
    # regopy's input conversion cuts at NUL: without the guard these equal "acme/api" and allow
    ({"resource": {"id": "acme/api\x00/../billing"}}, "a string with a NUL character at input.resource.id"),
    ({"resource": {"id\x00x": "acme/api", "id": "other/repo"}}, "a key with a NUL character at input.resource"),
    # and wraps integers beyond 64 bits: 2**64 + 1 would be 1
    ({"n": 2**64 + 1}, "an integer beyond 64 bits at input.n"),
    ({"n": float("inf")}, "a number JSON cannot hold at input.n"),
    ({"n": float("nan")}, "a number JSON cannot hold at input.n"),
])
def test_input_the_engine_would_alter_denies(tmp_path, doc, what):
    body = 'package agent.authz\nallow if { input.resource.id == "acme/api" }\nallow if { input.n == 1 }\n'
    s = load_set([write(tmp_path, "p.rego", body)])
    d = s.decide(doc)
    assert not d.allowed and d.result is None and d.detail.endswith(f"input not taken: {what}")
    assert s.decide({"resource": {"id": "acme/api"}}).allowed and s.decide({"n": 1}).allowed


def test_large_but_64_bit_integers_and_unicode_pass(tmp_path):
    body = 'package agent.authz\nallow if { input.n == 9223372036854775807; input.s == "héllo 😀" }\n'
    s = load_set([write(tmp_path, "p.rego", body)])
    assert s.decide({"n": 2**63 - 1, "s": "héllo 😀"}).allowed
