"""The verification pipeline is one declaration; the docs render the same list, and it runs in that order."""

from __future__ import annotations

import re
from pathlib import Path

from agentctl.verify import steps

DOC = Path(__file__).resolve().parents[1] / "docs" / "token-format.md"


def _doc_steps() -> list[str]:
    text = DOC.read_text("utf-8")
    section = text[text.index("## Verification pipeline"):text.index("## Worked example")]
    found = re.findall(r"^(\d+)\. \*\*([^*]+)\*\* \(([^)]*)\)", section, re.M)
    return [f"{n}. {title} ({reasons})" for n, title, reasons in found]


def test_docs_list_the_declared_steps():
    assert _doc_steps() == steps.ACTION_STEPS.render()


def test_the_declared_lists():
    names = [s.name for s in steps.ACTION_STEPS.steps]
    assert names == ["well_formed", "keys", "signatures", "time", "chain", "revocation", "audience", "authority",
                     "action", "approval", "policy", "once"]
    assert [s.number for s in steps.ACTION_STEPS.steps] == list(range(1, 13))
    assert [s.name for s in steps.GRANT_STEPS.steps] == names[:-1]
    assert [s.name for s in steps.PREFLIGHT_STEPS.steps] == names[:6]


def test_every_reason_is_a_contract_reason():
    from agentctl.errors import REASONS

    spec_only = {"stale_revocations", "stale_trust", "approval_required", "approval_invalid", "policy_denied"}
    for step in steps.STEPS:
        for reason in step.reasons:
            assert reason in REASONS or reason in spec_only, (step, reason)
