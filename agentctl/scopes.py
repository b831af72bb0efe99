"""Scopes: ``ACTION[:RESOURCE]``, what a grant allows, and whether one list of scopes stays inside another.

The language (SPEC, "Scopes"), split at the first ``:``:

- ACTION is dot-separated segments of ``[a-z0-9_-]+``. ``*`` as the last segment matches one or more
  segments (``pull_request.*`` matches ``pull_request.create`` and ``pull_request.review.submit`` but not
  ``pull_request``); ``*`` alone matches every action. ``*`` anywhere else is refused.
- RESOURCE is printable ASCII without spaces, non-empty. ``*`` matches any run of characters except
  ``/`` (possibly empty), ``**`` any run at all. A run of three or more ``*`` is refused. No resource
  (no ``:``) means any resource.

What an agent does is concrete: a concrete action has no ``*``, and a concrete resource is non-empty
printable ASCII without spaces *and without* ``*``. A ``*`` in a concrete resource is refused rather than
taken literally: a pattern has no way to name a literal ``*``, so such a resource would be matched only by
accident of a wildcard, and a caller that passes a pattern where a concrete value belongs is told so.

Covering is decided exactly, never by string prefix. A scope is the product set actions × resources; a
child is covered by a list of parents when every (action, resource) it matches is matched by at least one
parent (so ``a.*:x/*`` and ``a.*:y/*`` together cover ``a.b:x/1``, while ``a.b:*`` and ``a.c:*`` do not
cover ``a.*``). Both halves are regular languages. Actions are read segment by segment and resources
character by character, each over a finite set of classes (every literal that occurs in one of the
patterns, plus one stand-in for "anything else", plus ``/`` for resources), which loses nothing. The
reachable product of the child's action automaton with every parent's yields, for each kind of action the
child allows, the set S of parents that allow it too; the child's resources must then lie inside the union
of the resources of S, checked by a subset construction over the same kind of product. Breadth-first
search makes the counterexample that :func:`witness` returns short: the shortest action of the first
region that fails, with the shortest resource that fails there.

Sizes are capped so that a decision is always quick: at most :data:`MAX_SCOPES` scopes in a list, at most
:data:`MAX_SCOPE_LENGTH` characters in a scope, and a bounded number of automaton steps per decision
(about a second at worst). Real scopes use a few thousand; a pathological list past the bound is refused
with a :class:`UsageError` ("too complex to compare"), never allowed, and the bound is a count, not a
clock, so the same scopes get the same answer on every machine. Concrete values have no length limit:
matching is linear in their length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .errors import UsageError
from .frozen import dataclass, field

__all__ = [
    "MAX_SCOPES",
    "MAX_SCOPE_LENGTH",
    "Scope",
    "parse_scopes",
    "format_scopes",
    "check_action",
    "check_resource",
    "covers",
    "covered",
    "witness",
    "uncovered",
    "allowed",
]

MAX_SCOPES = 32
MAX_SCOPE_LENGTH = 256
#: Work allowed for one covering decision, in automaton steps (each parent's step counts).
_MAX_WORK = 200_000

_SEGMENT = re.compile(r"[a-z0-9_-]+")
_CONCRETE_ACTION = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_HINT = "a scope looks like pull_request.create:acme/* (ACTION[:RESOURCE]); give each scope on its own"
#: Characters tried first when a counterexample needs "some other character" or "some other segment".
_OTHER_CHARS = "xyzqjkvwuo0123456789" + "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "*/")


def _show(text: str) -> str:
    """``text`` quoted for a one-line message: ASCII only, and cut short when long."""
    return ascii(text if len(text) <= 64 else text[:61] + "...")


def _bad_scope(text: str, why: str) -> UsageError:
    return UsageError(f"bad scope {_show(text)}: {why}", hint=_HINT)


def _char_problem(text: str) -> str | None:
    """Why ``text`` is not printable ASCII without spaces ("has ..."), or None."""
    for ch in text:
        if ch == " ":
            return "has a space"
        if not ("\x21" <= ch <= "\x7e"):
            return f"has a control or non-ASCII character ({ascii(ch)})"
    return None


# --- actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Actions:
    """An action pattern as a tiny automaton over segments.

    States: ``i`` (0..k) after reading the first ``i`` segments of ``prefix``; ``k + 1`` after the
    wildcard took one or more segments; -1 dead."""

    prefix: tuple[str, ...]
    wild: bool

    def step(self, state: int, seg: str) -> int:
        k = len(self.prefix)
        if state < 0:
            return -1
        if state < k:
            return state + 1 if seg == self.prefix[state] else -1
        return k + 1 if self.wild else -1

    def accepts(self, state: int) -> bool:
        return state == len(self.prefix) + (1 if self.wild else 0)

    def matches(self, action: str) -> bool:
        segs = action.split(".")
        if self.wild:
            return len(segs) > len(self.prefix) and tuple(segs[: len(self.prefix)]) == self.prefix
        return tuple(segs) == self.prefix


def _compile_action(scope: str, action: str) -> _Actions:
    if not action:
        raise _bad_scope(scope, "the action is empty")
    segs = action.split(".")
    for i, seg in enumerate(segs):
        if seg == "*":
            if i != len(segs) - 1:
                raise _bad_scope(scope, "'*' may only be the last segment of the action")
        elif not seg:
            raise _bad_scope(scope, "the action has an empty segment")
        elif "*" in seg:
            raise _bad_scope(scope, f"action segment {_show(seg)} mixes '*' with other characters")
        elif not _SEGMENT.fullmatch(seg):
            raise _bad_scope(scope, f"action segment {_show(seg)} is not lower-case [a-z0-9_-]+")
    wild = segs[-1] == "*"
    return _Actions(tuple(segs[:-1] if wild else segs), wild)


# --- resources ----------------------------------------------------------------------------------------


class _Glob:
    """A resource pattern as a bit-parallel NFA.

    Tokens are literal characters, ``*`` and ``**``; bit ``i`` of a state means "before token ``i``", bit
    ``m`` (m tokens) means "matched". Two wildcard tokens are never adjacent (``***`` is refused), so the
    epsilon closure (skipping a wildcard) takes a single shift.

    States are kept small by dropping positions whose language another position in the state contains:
    every position before a ``**``, and every position before a ``*`` with no ``/`` and no ``**`` in
    between (what the earlier position still has to read, the wildcard reads too). A state stands for
    the union of its positions' languages, which this leaves unchanged, so every answer stays exact,
    and the subset construction below meets far fewer distinct states."""

    __slots__ = ("literals", "_lit", "_stars", "_dstars", "_shadow", "start", "accept", "universal")

    def __init__(self, tokens: Sequence[str]) -> None:
        self._lit: dict[str, int] = {}
        self._stars = self._dstars = 0
        self._shadow: dict[int, int] = {}  # wildcard bit -> the positions it makes redundant
        barrier = 0
        for i, tok in enumerate(tokens):
            if tok == "*" or tok == "**":
                self._stars |= 1 << i
                if tok == "**":
                    self._dstars |= 1 << i
                self._shadow[1 << i] = (1 << i) - (1 << (0 if tok == "**" else barrier))
                if tok == "**":
                    barrier = i + 1
            else:
                self._lit[tok] = self._lit.get(tok, 0) | (1 << i)
                if tok == "/":
                    barrier = i + 1
        self.literals = frozenset(self._lit)
        m = len(tokens)
        self.accept = 1 << m
        # Before a final "**" every continuation matches: nothing can be a counterexample from there.
        self.universal = 1 << (m - 1) if m and tokens[-1] == "**" else 0
        self.start = self._close(1)

    def _close(self, state: int) -> int:
        state |= (state & self._stars) << 1
        wild = state & self._stars
        while wild:
            top = 1 << (wild.bit_length() - 1)
            state &= ~self._shadow[top]
            wild &= state & (top - 1)
        return state

    def step(self, state: int, ch: str) -> int:
        moved = (state & self._lit.get(ch, 0)) << 1
        moved |= state & (self._dstars if ch == "/" else self._stars)
        return self._close(moved)

    def matches(self, text: str) -> bool:
        # step() inlined: this runs for every action a verifier checks
        state, lit, stars, dstars, close = self.start, self._lit, self._stars, self._dstars, self._close
        for ch in text:
            moved = (state & lit.get(ch, 0)) << 1
            moved |= state & (dstars if ch == "/" else stars)
            state = close(moved) if moved & stars else moved
            if not state:
                return False
        return bool(state & self.accept)


_ANY_RESOURCE = _Glob(["**"])


def _compile_resource(scope: str, resource: str) -> _Glob:
    if not resource:
        raise _bad_scope(scope, "the resource after ':' is empty (leave out ':' for any resource)")
    problem = _char_problem(resource)
    if problem:
        raise _bad_scope(scope, f"the resource {problem}")
    tokens: list[str] = []
    for run in re.finditer(r"\*+|[^*]", resource):
        tok = run.group()
        if tok.startswith("*") and len(tok) > 2:
            raise _bad_scope(scope, "the resource has a run of three or more '*' (use '*' or '**')")
        tokens.append(tok)
    return _Glob(tokens)


# --- scopes -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """One scope, validated on construction; ``str(scope)`` gives back the text it was parsed from."""

    action: str
    resource: str | None = None
    _actions: _Actions = field(init=False, repr=False, compare=False)
    _glob: _Glob = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or not (self.resource is None or isinstance(self.resource, str)):
            raise UsageError(f"bad scope: expected text, got {type(self.action).__name__}/{type(self.resource).__name__}")
        text = str(self)
        if len(text) > MAX_SCOPE_LENGTH:
            raise _bad_scope(text, f"it is {len(text)} characters (at most {MAX_SCOPE_LENGTH})")
        problem = _char_problem(self.action)
        if problem:
            raise _bad_scope(text, f"the action {problem}")
        if ":" in self.action:
            raise _bad_scope(text, "the action has a ':'")
        object.__setattr__(self, "_actions", _compile_action(text, self.action))
        glob = _ANY_RESOURCE if self.resource is None else _compile_resource(text, self.resource)
        object.__setattr__(self, "_glob", glob)

    @classmethod
    def parse(cls, text: str | Scope) -> Scope:
        """Parse ``ACTION[:RESOURCE]``; raises :class:`UsageError` naming the scope and what is wrong."""
        if isinstance(text, Scope):
            return text
        if not isinstance(text, str):
            raise UsageError(f"bad scope: expected text, got {type(text).__name__}", hint=_HINT)
        if not text:
            raise _bad_scope(text, "it is empty")
        if len(text) > MAX_SCOPE_LENGTH:
            raise _bad_scope(text, f"it is {len(text)} characters (at most {MAX_SCOPE_LENGTH})")
        if " " in text:
            raise _bad_scope(text, "it has a space (scopes in a list are separated by spaces; give one at a time)")
        action, sep, resource = text.partition(":")
        return cls(action, resource if sep else None)

    def __hash__(self) -> int:  # what the dataclass would compute, once: scopes key the coverage memo
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.action, self.resource))
            object.__setattr__(self, "_hash", h)
        return h

    def __str__(self) -> str:
        return self.action if self.resource is None else f"{self.action}:{self.resource}"

    def matches(self, action: str, resource: str) -> bool:
        """Whether this scope allows the concrete ``action`` on the concrete ``resource``.

        Raises :class:`UsageError` when either is not concrete (see :func:`check_action`)."""
        return self._matches(check_action(action), check_resource(resource))

    def _matches(self, action: str, resource: str) -> bool:
        return self._actions.matches(action) and self._glob.matches(resource)


def check_action(action: str) -> str:
    """Return ``action`` if it is a concrete action (segments of ``[a-z0-9_-]+``, no ``*``), else raise."""
    if isinstance(action, str) and _CONCRETE_ACTION.fullmatch(action):
        return action
    if not isinstance(action, str):
        why = f"expected text, got {type(action).__name__}"
    elif not action:
        why = "it is empty"
    elif "*" in action:
        why = "a concrete action has no '*' (wildcards belong in scopes)"
    else:
        why = "it is not dot-separated lower-case segments of [a-z0-9_-]+"
    shown = _show(action) if isinstance(action, str) else "value"
    raise UsageError(f"bad action {shown}: {why}")


def check_resource(resource: str) -> str:
    """Return ``resource`` if it is concrete: non-empty printable ASCII, no space and no ``*``; else raise."""
    if not isinstance(resource, str):
        raise UsageError(f"bad resource: expected text, got {type(resource).__name__}")
    problem = _char_problem(resource)
    why = "it is empty" if not resource else f"it {problem}" if problem else None
    if why is None and "*" in resource:
        why = "a concrete resource has no '*' (wildcards belong in scopes)"
    if why:
        raise UsageError(f"bad resource {_show(resource)}: {why}")
    return resource


def _scope_list(scopes: str | Scope | Iterable[str | Scope], *, empty_ok: bool) -> tuple[Scope, ...]:
    if isinstance(scopes, str):
        items: Iterable[str | Scope] = (s for s in scopes.split(" ") if s)
    elif isinstance(scopes, Scope):
        items = (scopes,)
    else:
        try:
            items = iter(scopes)
        except TypeError:
            raise UsageError(f"bad scope list: expected text or a list, got {type(scopes).__name__}") from None
    out: dict[Scope, None] = {}
    for item in items:
        out[Scope.parse(item)] = None
        if len(out) > MAX_SCOPES:
            raise UsageError(f"too many scopes: at most {MAX_SCOPES} in one list", hint="use wildcards to say more with fewer")
    if not out and not empty_ok:
        raise UsageError("no scopes given: at least one is needed", hint=_HINT)
    return tuple(out)


def parse_scopes(scopes: str | Iterable[str | Scope]) -> tuple[Scope, ...]:
    """Scopes from a space-separated string (RFC 8693 ``scope``) or a list, duplicates dropped in order.

    An empty list and more than :data:`MAX_SCOPES` distinct scopes are refused. In a list each item is
    one scope (an item with a space in it is refused, not split)."""
    if type(scopes) is str:  # a claim: the same few strings over and over, and Scopes are immutable
        parsed = _PARSED_CLAIMS.get(scopes)
        if parsed is None:
            parsed = _scope_list(scopes, empty_ok=False)
            if len(_PARSED_CLAIMS) >= 4096:
                _PARSED_CLAIMS.clear()
            _PARSED_CLAIMS[scopes] = parsed
        return parsed
    return _scope_list(scopes, empty_ok=False)


_PARSED_CLAIMS: dict[str, tuple[Scope, ...]] = {}


def format_scopes(scopes: Iterable[Scope]) -> str:
    """The space-separated form of ``scopes`` (for a ``scope`` claim); the inverse of :func:`parse_scopes`."""
    return " ".join(str(s) for s in scopes)


def allowed(scopes: str | Iterable[str | Scope], action: str, resource: str) -> Scope | None:
    """The first of ``scopes`` that allows ``action`` on ``resource``, or None."""
    action, resource = check_action(action), check_resource(resource)
    if type(scopes) is not tuple or not all(type(s) is Scope for s in scopes):  # a parsed claim already is
        scopes = _scope_list(scopes, empty_ok=True)
    for scope in scopes:
        if scope._matches(action, resource):
            return scope
    return None


# Covering (whether one list of scopes stays inside another) is its own module, built on this one; its
# names are part of this one's interface, loaded on first use (PEP 562) so that neither import waits on
# the other.
_COVERING = ("covers", "covered", "witness", "uncovered")


def __getattr__(name: str):
    if name in _COVERING:
        from . import scope_cover

        return getattr(scope_cover, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
