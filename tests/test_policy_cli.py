"""agentctl policy eval | check | schema, in process."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("regopy")
pytest.importorskip("cedarpy")

from test_policy import CEDAR_SEED, SEED, seed_input  # noqa: E402


@pytest.fixture
def files(tmp_path):
    (tmp_path / "seed.rego").write_text(SEED)
    (tmp_path / "seed.cedar").write_text(CEDAR_SEED)
    (tmp_path / "in.json").write_text(json.dumps(seed_input()))
    return tmp_path


def test_eval_allow_and_deny(cli, files):
    r = cli("--json", "policy", "eval", str(files / "seed.rego"), "--input", str(files / "in.json"))
    assert r.code == 0 and r.json()["allowed"] is True and r.json()["engine"] == "rego"
    assert len(r.json()["input_sha256"]) == 64
    doc = seed_input(action="repo.delete")
    r = cli("policy", "eval", str(files / "seed.rego"), "--input", "-", input=json.dumps(doc))
    assert r.code == 1 and r.stdout.startswith("deny: ")


def test_eval_cedar(cli, files):
    r = cli("--json", "policy", "eval", str(files / "seed.cedar"), "--input", str(files / "in.json"))
    assert r.code == 0 and r.json()["result"] == "Allow"


def test_eval_missing_rule_is_exit_2(cli, files):
    r = cli("--json", "policy", "eval", str(files / "seed.rego"), "--input", str(files / "in.json"), "--query", "data.x.allow")
    assert r.code == 2 and r.json()["error"] == "usage"


def test_eval_bad_input_is_exit_2(cli, files):
    r = cli("policy", "eval", str(files / "seed.rego"), "--input", "-", input="[1]")
    assert r.code == 2 and "agentctl: error:" in r.stderr


def test_eval_printing_policy_prints_one_json_document(cli, files, capfd):
    (files / "p.rego").write_text('package agent.authz\nallow if { print("noise"); true }\n')
    r = cli("--json", "policy", "eval", str(files / "p.rego"), "--input", str(files / "in.json"))
    out, _ = capfd.readouterr()
    assert r.code == 0 and json.loads(r.stdout)["allowed"] is True and "noise" not in out


def test_check_and_schema(cli, files):
    assert cli("policy", "check", str(files / "seed.rego")).code == 0
    r = cli("--json", "policy", "check", str(files / "seed.cedar"))
    assert r.code == 0 and r.json()["schema_findings"] == []
    r = cli("policy", "schema", "--cedar")
    assert r.code == 0 and "entity Agent in [Role]" in r.stdout
    assert cli("policy", "schema").code == 2
