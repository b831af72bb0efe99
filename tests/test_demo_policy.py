"""`agentctl demo` shows a policy allowing one action and denying another when the Rego engine is
installed, and says in one line how to install it when it is not (a plain install has no regopy: the
README's first command must keep working without it)."""

from __future__ import annotations

import sys

import pytest


def _verify_steps(doc: dict) -> dict[str, dict]:
    return {s["command"][2]: s for s in doc["steps"] if s["command"][1] == "verify" and "--policy" in s["command"]}


def test_the_demo_shows_a_policy_allow_and_a_policy_denial(cli, home):
    pytest.importorskip("regopy")
    r = cli("--json", "demo")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["ok"] and "skipped" not in doc
    by_token = _verify_steps(doc)
    allowed, denied = by_token["pr-create.jwt"], by_token["pr-merge.jwt"]
    assert allowed["exit_code"] == 0 and allowed["stdout"].startswith("ok:")
    assert denied["exit_code"] == 1
    assert "policy_denied: policy set seed.rego: data.agent.authz.allow is false" in denied["stderr"]
    # the denial is the policy's, not the grant's: the same merge is inside alice's grant
    sign_merge = next(s for s in doc["steps"] if s["command"][1] == "sign" and "pull_request.merge" in s["command"])
    assert sign_merge["exit_code"] == 0


def test_the_demo_prints_the_seed_policy_it_runs(cli, home):
    pytest.importorskip("regopy")
    from agentctl._cli.demo import SEED_POLICY

    r = cli("demo")
    assert r.code == 0, r.stderr
    for line in SEED_POLICY.splitlines():
        assert "    " + line in r.stdout.splitlines()
    assert "Policy steps skipped" not in r.stdout


def test_without_the_rego_engine_the_demo_still_runs_and_says_how_to_install_it(cli, home, monkeypatch):
    monkeypatch.setitem(sys.modules, "regopy", None)  # `import regopy` fails, as on a plain install
    r = cli("demo")
    assert r.code == 0, r.stdout + r.stderr
    hint = [line for line in r.stdout.splitlines() if "Policy steps skipped" in line]
    assert len(hint) == 1 and "pip install -e '.[rego]'" in hint[0]
    assert "--policy" not in r.stdout and "policy_denied" not in r.stdout
    assert "error" not in r.stderr
    # the rest of the story is unchanged: the approvals and the audit still run
    assert "audit verify --checkpoint checkpoint.txt" in r.stdout


def test_without_the_rego_engine_the_json_demo_says_what_it_skipped(cli, home, monkeypatch):
    monkeypatch.setitem(sys.modules, "regopy", None)
    r = cli("--json", "demo")
    assert r.code == 0, r.stderr
    doc = r.json()
    assert doc["ok"] and "pip install -e '.[rego]'" in doc["skipped"]
    assert _verify_steps(doc) == {}
    assert not any(s["command"][-1] in ("pr-create.jwt", "pr-merge.jwt") for s in doc["steps"])
