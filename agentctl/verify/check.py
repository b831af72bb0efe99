"""What one run of the verification pipeline works on (:class:`Check`)."""

from __future__ import annotations

from typing import Any

from ..frozen import dataclass
from .pipeline import Memo

__all__ = ["Check"]


@dataclass(slots=True)
class Check:
    """The subject of one run of the pipeline: what was given, and what the steps found."""

    token: object
    now: float
    kind: str  # "grant" or "action"
    asked_action: str | None = None
    asked_resource: str | None = None
    data: bytes | None = None
    audience: str | None = None
    once: bool = False
    real_now: float = 0.0
    root_optional: bool = False  # preflight: a holder may not know the root
    act: Any = None  # the ActionToken, once parsed
    grant_token: object = None
    chain: Any = None
    memo: Memo | None = None
    root_key: Any = None
    scope: Any = None
    context: Any = None  # --context: a checked JSON object, only ever beside the verified fields
    policy: Any = None  # step 11's description of its decision (the verdict's "policy" field)
    approval: Any = None  # the ApprovalToken that travels (parsed, not yet verified)
    accepted: Any = None  # the approval step 10 accepted
