"""Audit events as values: what a command records (no SQLite here, so commands import it cheaply)."""

from __future__ import annotations

from .frozen import dataclass, field

__all__ = ["Event", "OUTCOMES"]

OUTCOMES = ("allow", "deny", "ok", "error")


@dataclass(frozen=True)
class Event:
    """What a command records. ``seq``, ``time``, ``host`` and ``version`` are filled in on append."""

    event: str
    outcome: str
    principal: str | None = None
    on_behalf_of: str | None = None
    chain: tuple[str, ...] = ()
    action: str | None = None
    resource: str | None = None
    reason: str | None = None
    jtis: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"bad outcome {self.outcome!r}")
