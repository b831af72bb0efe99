"""Covering: whether one list of scopes stays inside another, decided exactly (SPEC, "Scopes").

The grammar and matching live in :mod:`agentctl.scopes`, which re-exports :func:`covers`,
:func:`covered`, :func:`witness` and :func:`uncovered` from here; see its docstring for the method
(product automata over literal classes, a subset construction for resources, breadth-first search for a
shortest counterexample) and for the work budget, :data:`agentctl.scopes._MAX_WORK`, read at each
decision so that it stays one setting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from . import scopes as _grammar
from .errors import UsageError
from .scopes import _OTHER_CHARS, Scope, _Actions, _Glob, _scope_list

__all__ = ["covers", "covered", "witness", "uncovered"]



class _Budget:
    def __init__(self, child: Scope) -> None:
        self.left = _grammar._MAX_WORK  # looked up now: one setting, in scopes
        self.child = child

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise UsageError(
                f"scope {self.child} is too complex to compare with the parent's scopes",
                hint="use fewer wildcards or fewer scopes",
            )


def _other(taken: Iterable[str], candidates: Iterable[str]) -> str | None:
    taken = set(taken)
    return next((c for c in candidates if c not in taken), None)


def _action_regions(child: _Actions, parents: Sequence[_Actions], budget: _Budget) -> dict[frozenset[int], str]:
    """For each set S of parents such that some action is allowed by the child and by exactly the parents
    in S, one shortest such action (in breadth-first order, so the result is deterministic)."""
    literals = sorted({seg for a in (child, *parents) for seg in a.prefix})
    other = _other(literals, (f"x{i}" if i else "x" for i in range(len(literals) + 1)))
    assert other is not None  # one more candidate than literals
    classes = [other, *literals]
    regions: dict[frozenset[int], str] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    queue = deque([((0, (0,) * len(parents)), "")])
    while queue:
        (c, ps), path = queue.popleft()
        for seg in classes:
            budget.spend(1 + len(parents))
            c2 = child.step(c, seg)
            if c2 < 0:
                continue
            ps2 = tuple(p.step(s, seg) for p, s in zip(parents, ps))
            if (c2, ps2) in seen:
                continue
            seen.add((c2, ps2))
            action = f"{path}.{seg}" if path else seg
            if child.accepts(c2):
                regions.setdefault(frozenset(i for i, (p, s) in enumerate(zip(parents, ps2)) if p.accepts(s)), action)
            queue.append(((c2, ps2), action))
    return regions


def _bits(state: int) -> Iterable[int]:
    while state:
        low = state & -state
        yield low
        state ^= low


def _resource_witness(child: _Glob, parents: Sequence[_Glob], budget: _Budget) -> str | None:
    """A shortest non-empty concrete resource the child matches and no parent does, or None.

    The parents are determinized (a subset of NFA states each); the child need not be, since a
    counterexample is one run of the child, so the search is over (child NFA state, parents' subsets)."""
    if any(p.start & p.universal for p in parents):
        return None
    literals = sorted(child.literals.union(*(p.literals for p in parents)) - {"/"})
    other = _other(literals, _OTHER_CHARS)
    classes = ([other] if other else []) + literals + ["/"]
    start = tuple(p.start for p in parents)
    seen: set[tuple[int, tuple[int, ...]]] = set()
    parents_after: dict[tuple[tuple[int, ...], str], tuple[tuple[int, ...] | None, bool]] = {}
    queue = deque((q, start, "") for q in _bits(child.start))
    while queue:
        q, ps, text = queue.popleft()
        for ch in classes:
            moved = child.step(q, ch)
            budget.spend(1)
            if not moved:
                continue
            after = parents_after.get((ps, ch))
            if after is None:
                budget.spend(len(parents))
                ps2 = tuple(p.step(s, ch) for p, s in zip(parents, ps))
                if any(s & p.universal for p, s in zip(parents, ps2)):
                    after = parents_after[ps, ch] = (None, False)
                else:
                    after = parents_after[ps, ch] = (ps2, not any(s & p.accept for p, s in zip(parents, ps2)))
            maybe, rejected = after
            if maybe is None:
                continue
            ps2 = maybe
            for q2 in _bits(moved):
                budget.spend(1)
                if q2 == child.accept and rejected:
                    return text + ch
                if (q2, ps2) not in seen:
                    seen.add((q2, ps2))
                    queue.append((q2, ps2, text + ch))
    return None


def _witness(child: Scope, parents: tuple[Scope, ...], budget: _Budget) -> tuple[str, str] | None:
    if child in parents:
        return None
    regions = _action_regions(child._actions, [p._actions for p in parents], budget)
    for which, action in regions.items():
        globs = {parents[i].resource: parents[i]._glob for i in sorted(which)}
        resource = _resource_witness(child._glob, list(globs.values()), budget)
        if resource is not None:
            return action, resource
    return None


def witness(child: Scope | str, parents: str | Iterable[Scope | str]) -> tuple[str, str] | None:
    """A concrete ``(action, resource)`` that ``child`` allows and none of ``parents`` does, or None when
    the parents together cover the child (an empty list of parents covers nothing). For error messages:
    "scope X is wider than the parent's: it allows ACTION on RESOURCE"."""
    child = Scope.parse(child)
    return _witness(child, _scope_list(parents, empty_ok=True), _Budget(child))


def covered(child: Scope | str, parents: str | Iterable[Scope | str]) -> bool:
    """Whether everything ``child`` allows is allowed by at least one of ``parents`` (their union)."""
    return witness(child, parents) is None


def covers(parent: Scope | str, child: Scope | str) -> bool:
    """Whether everything ``child`` allows, ``parent`` allows too."""
    return witness(child, [parent]) is None


def uncovered(
    children: str | Iterable[Scope | str], parents: str | Iterable[Scope | str]
) -> tuple[Scope, str, str] | None:
    """The first of ``children`` that ``parents`` do not cover, with its :func:`witness`, or None.

    One search budget serves the whole list, so checking a hop of a chain costs no more than checking
    one scope (calling :func:`witness` per child scope gives each its own)."""
    parent_list = parents if _parsed(parents) else _scope_list(parents, empty_ok=True)
    child_list = children if _parsed(children) else _scope_list(children, empty_ok=True)
    if not child_list:
        return None
    memo_key = (child_list, parent_list)
    if memo_key in _UNCOVERED:  # a verifier meets the same chain again and again
        return _UNCOVERED[memo_key]
    found = _uncovered(child_list, parent_list)
    if len(_UNCOVERED) >= 4096:
        _UNCOVERED.clear()
    _UNCOVERED[memo_key] = found
    return found


_UNCOVERED: dict = {}


def _parsed(scopes: object) -> bool:
    """Whether ``scopes`` is already what :func:`_scope_list` would return for it (a parsed claim):
    a tuple of distinct Scopes, within the limit."""
    return (type(scopes) is tuple and len(scopes) <= _grammar.MAX_SCOPES and all(type(s) is Scope for s in scopes)
            and len(set(scopes)) == len(scopes))


def _uncovered(child_list, parent_list) -> tuple[Scope, str, str] | None:
    budget = _Budget(child_list[0])
    for child in child_list:
        budget.child = child
        found = _witness(child, parent_list, budget)
        if found is not None:
            return child, *found
    return None
