"""A small runner of named steps: each step checks one thing and raises a reason code; the first
failure wins (SPEC, "Verification").

A :class:`Step` whose outcome depends only on the token's exact bytes and on what the verifier trusts
(not on the time, the audience or the request) is ``timeless``: the runner memoizes its outcome, pass
or failure, in a :class:`Memo` kept per token, so a token met again skips the work but still fails at
the same step, in the same order, as the first time.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import VerificationError

__all__ = ["Step", "Pipeline", "Memo"]


class Memo:
    """What the timeless steps found out about one token: their outcomes, and what they produced
    (the parsed chain) for the later steps."""

    __slots__ = ("outcomes", "chain", "extra")

    def __init__(self) -> None:
        self.outcomes: dict[str, VerificationError | None] = {}
        self.chain: Any = None
        self.extra: dict = {}


class Step:
    """One named step of the pipeline. Subclasses set ``number``, ``name``, ``title`` and ``reasons``
    and implement :meth:`grant` (the chain's part) and/or :meth:`action` (the action's own part)."""

    number: int = 0
    name: str = ""
    title: str = ""
    reasons: tuple[str, ...] = ()
    timeless: bool = False  # the chain's part depends only on the token and the trust: memoized

    def grant(self, v: Any, c: Any) -> None:
        """The chain's part of this step (``c.chain`` is set)."""

    def action(self, v: Any, c: Any) -> None:
        """The action's own part of this step (``c.act`` is set)."""

    def run(self, v: Any, c: Any) -> None:
        if c.chain is not None:
            memo = c.memo
            if self.timeless and memo is not None:
                outcome = memo.outcomes.get(self.name, _MISSING)
                if outcome is _MISSING:
                    try:
                        self.grant(v, c)
                    except VerificationError as e:
                        memo.outcomes[self.name] = e
                        raise
                    memo.outcomes[self.name] = None
                elif outcome is not None:
                    raise VerificationError(outcome.reason, outcome.detail)
            else:
                self.grant(v, c)
        if c.act is not None:
            self.action(v, c)

    def __repr__(self) -> str:
        return f"<step {self.number} {self.name}>"


_MISSING: Any = object()


def _planned(step: Step) -> tuple:
    """(its own run or None, its chain part or None, its action part or None, timeless, name)."""
    cls = type(step)
    if cls.run is not Step.run:
        return step.run, None, None, False, step.name
    grant = step.grant if cls.grant is not Step.grant else None
    action = step.action if cls.action is not Step.action else None
    return None, grant, action, step.timeless, step.name


class Pipeline:
    """An ordered, declared list of steps; :meth:`run` runs them in order and the first failure wins."""

    def __init__(self, name: str, steps: Sequence[Step]) -> None:
        self.name = name
        self.steps = tuple(steps)
        numbers = [s.number for s in self.steps]
        if numbers != sorted(numbers):
            raise ValueError(f"pipeline {name}: steps out of order: {numbers}")

        self._plan = tuple(_planned(s) for s in self.steps)

    def run(self, v: Any, c: Any) -> None:
        """Each step in the declared order, as :meth:`Step.run` would run it, without its call: a step
        with a run of its own runs it; otherwise its chain part (memoized when timeless) and its action
        part, where the step has them."""
        for custom, grant, action, timeless, name in self._plan:
            if custom is not None:
                custom(v, c)
                continue
            if grant is not None and c.chain is not None:
                memo = c.memo
                if timeless and memo is not None:
                    outcomes = memo.outcomes
                    outcome = outcomes.get(name, _MISSING)
                    if outcome is _MISSING:
                        try:
                            grant(v, c)
                        except VerificationError as e:
                            outcomes[name] = e
                            raise
                        outcomes[name] = None
                    elif outcome is not None:
                        raise VerificationError(outcome.reason, outcome.detail)
                else:
                    grant(v, c)
            if action is not None and c.act is not None:
                action(v, c)

    def render(self) -> list[str]:
        """The steps as the docs list them: ``N. Title (reason, reason)``."""
        return [f"{s.number}. {s.title} ({', '.join(s.reasons)})" if s.reasons else f"{s.number}. {s.title}" for s in self.steps]
