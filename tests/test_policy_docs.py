"""The examples of docs/policy.md run as tests: every ```rego and ```cedar block is extracted, compiled
as written and asked the cases the page names for its intent. A block whose intent the table below
does not know fails, so no example goes untested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("regopy")
pytest.importorskip("cedarpy")

from agentctl.policy import load_set  # noqa: E402
from agentctl.policy.input import Delegation, Hop, build_input  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "policy.md"
ISSUED = 1_000_000  # the root grant's iat


def doc_input(*, agent="agent:code-reviewer:prod", known=True, roles=("reviewer",), action="pull_request.create",
              resource="acme/api", user="user:alice", user_roles=("engineer",), context=None, now=ISSUED + 60,
              grant=True) -> dict:
    delegation = Delegation(user=user, user_roles=tuple(user_roles),
                            chain=(Hop(user, agent, ("**",), ISSUED, ISSUED + 7200, "j1"),)) if grant else None
    return build_input(agent_id=agent, agent_kid="kid-1", agent_known=known, agent_roles=list(roles), agent_attrs={},
                       action=action, resource_id=resource, delegation=delegation, approval=None,
                       token={"type": "action", "jti": "a1", "iat": now, "exp": now + 300, "aud": None},
                       payload={"sha256": "00"}, context=context if context is not None else {}, now=now)


REPO = {"resource": {"repo": "acme/api"}}
SANDBOX = {"resource": {"tags": ["sandbox", "python"]}}
BILLING = {"agent": "agent:billing-bot", "roles": ["billing"], "resource": "billing/acct-42"}

# intent -> [(what, input, allowed)]
CASES: dict[str, list[tuple[str, dict, bool]]] = {
    "seed": [
        ("the seed case", doc_input(context=REPO), True),
        ("another acme repo", doc_input(context={"resource": {"repo": "acme/web"}}), True),
        ("another org", doc_input(context={"resource": {"repo": "evil/api"}}), False),
        ("no repo in the context", doc_input(), False),
        ("another action", doc_input(action="pull_request.merge", context=REPO), False),
        ("another agent", doc_input(agent="agent:linter", context=REPO), False),
        ("alice in sales", doc_input(user_roles=("sales",), context=REPO), False),
        ("no grant", doc_input(grant=False, context=REPO), False),
    ],
    "billing": [
        ("metadata read with the role", doc_input(**BILLING, action="billing.metadata.read"), True),
        ("invoice export with the role", doc_input(**BILLING, action="billing.invoice.export"), False),
        ("metadata read without the role", doc_input(agent="agent:billing-bot", roles=(), action="billing.metadata.read"), False),
        ("an unknown delegate claiming the name", doc_input(agent="agent:billing-bot", known=False, roles=("billing",),
                                                            action="billing.metadata.read"), False),
    ],
    "sandbox": [
        ("tagged sandbox", doc_input(context=SANDBOX), True),
        ("only sandbox", doc_input(context={"resource": {"tags": ["sandbox"]}}), True),
        ("no tags", doc_input(), False),
        ("other tags", doc_input(context={"resource": {"tags": ["prod"]}}), False),
        ("a string, not a list", doc_input(context={"resource": {"tags": "sandbox"}}), False),
        ("tags outside resource", doc_input(context={"tags": ["sandbox"]}), False),
        ("a merge", doc_input(action="pull_request.merge", context=SANDBOX), False),
    ],
    "window": [
        ("at issue", doc_input(now=ISSUED), True),
        ("a minute in", doc_input(now=ISSUED + 60), True),
        ("exactly 30 minutes", doc_input(now=ISSUED + 1800), True),
        ("a second late", doc_input(now=ISSUED + 1801), False),
        ("a day late", doc_input(now=ISSUED + 86400), False),
        ("before the grant", doc_input(now=ISSUED - 1), False),
        ("no grant", doc_input(grant=False), False),
        ("bob's delegation", doc_input(user="user:bob"), False),
    ],
}


def intent_of(block: str) -> str:
    if "billing" in block:
        return "billing"
    if "sandbox" in block:
        return "sandbox"
    if "issued_at" in block:
        return "window"
    if "acme/" in block and "pull_request.create" in block:
        return "seed"
    raise AssertionError(f"docs/policy.md has a policy example the tests do not know:\n{block}")


def blocks() -> list[tuple[str, str]]:
    return re.findall(r"^```(rego|cedar)\n(.*?)^```", DOC.read_text("utf-8"), flags=re.M | re.S)


def test_the_page_has_every_intent_in_rego_and_in_cedar():
    found = {(lang, intent_of(text)) for lang, text in blocks()}
    assert found == {(lang, intent) for lang in ("rego", "cedar") for intent in CASES}


def test_every_case_table_allows_and_denies():
    for intent, cases in CASES.items():
        assert {allowed for _, _, allowed in cases} == {True, False}, intent


@pytest.mark.parametrize("n", range(len(blocks())))
def test_each_example_decides_its_cases(tmp_path, n):
    lang, text = blocks()[n]
    path = tmp_path / f"example{n}.{lang}"
    path.write_text(text)
    s = load_set([str(path)])
    assert s.engine == lang
    got = [(what, s.decide(doc)) for what, doc, _ in CASES[intent_of(text)]]
    wrong = [(what, d.detail) for (what, d), (_, _, want) in zip(got, CASES[intent_of(text)]) if d.allowed is not want]
    assert not wrong, f"{lang} example {n} ({intent_of(text)}):\n{text}"


SPEC_SEED = """package agent.authz
default allow = false
allow if {
  input.agent.id == "agent:code-reviewer:prod"
  input.action == "pull_request.create"
  startswith(input.resource.repo, "acme/")
  input.delegation.user_role == "engineer"
}
"""


def test_the_seed_example_is_the_spec_seed_policy_exactly():
    from agentctl._cli.demo import SEED_POLICY

    seed = [text for lang, text in blocks() if lang == "rego" and intent_of(text) == "seed"]
    assert seed == [SPEC_SEED] and SEED_POLICY == SPEC_SEED  # the page and the demo run SPEC's text
