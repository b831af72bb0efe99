"""Scopes (SPEC, "Scopes"): ``ACTION[:RESOURCE]``, matching, and covering decided exactly.

Covering is checked three ways: hand-picked examples (the tricky ones named), an exhaustive comparison
with brute force over every short pattern and every short string on a tiny alphabet, and hypothesis
properties for lists of parents (the union case)."""

from __future__ import annotations

import itertools
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentctl.errors import UsageError
from agentctl.scopes import (
    MAX_SCOPE_LENGTH,
    MAX_SCOPES,
    Scope,
    allowed,
    check_action,
    check_resource,
    covered,
    covers,
    format_scopes,
    parse_scopes,
    uncovered,
    witness,
)

S = Scope.parse

# --- parsing -------------------------------------------------------------------------------------------

VALID = [
    ("pull_request.create", "pull_request.create", None),
    ("pull_request.create:acme/*", "pull_request.create", "acme/*"),
    ("pull_request.*:acme/**", "pull_request.*", "acme/**"),
    ("*", "*", None),
    ("*:*", "*", "*"),
    ("*:**", "*", "**"),
    ("a-b_c.0.9", "a-b_c.0.9", None),
    ("repo.read:https://example.com/a?b=c&d=e#f", "repo.read", "https://example.com/a?b=c&d=e#f"),
    ("s3.get:arn:aws:s3:::bucket/*", "s3.get", "arn:aws:s3:::bucket/*"),  # split at the first ':'
    ("a:*a*b**c/**/*", "a", "*a*b**c/**/*"),
    ("a:~!\"#$%&'()+,-./;<=>?@[\\]^_`{|}", "a", "~!\"#$%&'()+,-./;<=>?@[\\]^_`{|}"),
]


@pytest.mark.parametrize("text, action, resource", VALID)
def test_parse_valid_round_trips(text, action, resource):
    scope = S(text)
    assert (scope.action, scope.resource) == (action, resource)
    assert str(scope) == text
    assert S(str(scope)) == scope
    assert Scope(action, resource) == scope
    assert hash(Scope(action, resource)) == hash(scope)


INVALID = [
    ("", "it is empty"),
    (":x", "the action is empty"),
    ("A.b", "action segment 'A' is not lower-case"),
    ("a..b", "empty segment"),
    (".a", "empty segment"),
    ("a.", "empty segment"),
    ("a.*.b", "'*' may only be the last segment"),
    ("*.a", "'*' may only be the last segment"),
    ("*.*", "'*' may only be the last segment"),
    ("a*", "mixes '*'"),
    ("a.b*:x", "mixes '*'"),
    ("**", "mixes '*'"),
    ("a/b", "action segment 'a/b'"),
    ("a:", "the resource after ':' is empty"),
    ("a b", "has a space"),
    ("a:x y", "has a space"),
    (" a", "has a space"),
    ("a\tb", "control or non-ascii"),
    ("a:x\ny", "control or non-ascii"),
    ("a:x\x7f", "control or non-ascii"),
    ("a:caf\u00e9", "control or non-ascii"),
    ("\u00e9", "control or non-ascii"),
    ("a:***", "three or more '*'"),
    ("a:x/****", "three or more '*'"),
    ("a" * (MAX_SCOPE_LENGTH + 1), f"at most {MAX_SCOPE_LENGTH}"),
    ("a:" + "x" * MAX_SCOPE_LENGTH, f"at most {MAX_SCOPE_LENGTH}"),
]


@pytest.mark.parametrize("text, fragment", INVALID)
def test_parse_invalid(text, fragment):
    with pytest.raises(UsageError) as e:
        S(text)
    msg = e.value.message
    assert fragment.lower() in msg.lower()
    assert msg.startswith("bad scope ")
    assert msg.isascii() and msg.isprintable()  # one line; the scope is shown escaped, never raw


def test_error_names_the_scope():
    with pytest.raises(UsageError, match=r"bad scope 'a\.\*\.b'"):
        S("a.*.b")
    with pytest.raises(UsageError, match=r"bad scope 'a:x\\x01'"):
        S("a:x\x01")
    with pytest.raises(UsageError, match=r"\.\.\.'"):  # a long scope is cut short in the message
        S("a:" + "x" * 300)


def test_direct_construction_is_validated():
    with pytest.raises(UsageError):
        Scope("a:b")
    with pytest.raises(UsageError):
        Scope("a", "")
    with pytest.raises(UsageError):
        Scope(3)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        S(None)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        S("a").action = "b"  # type: ignore[misc]


def test_longest_scope_is_accepted():
    assert str(S("a:" + "x" * (MAX_SCOPE_LENGTH - 2))) == "a:" + "x" * (MAX_SCOPE_LENGTH - 2)


def test_parse_scopes_string_and_list():
    want = (S("a.b:x"), S("c.*"))
    assert parse_scopes("a.b:x c.*") == want
    assert parse_scopes("  a.b:x   c.*  ") == want
    assert parse_scopes(["a.b:x", "c.*"]) == want
    assert parse_scopes([S("a.b:x"), "c.*"]) == want
    assert parse_scopes(("a.b:x", "c.*", "a.b:x")) == want  # duplicates dropped, order kept
    assert parse_scopes("c.* a.b:x c.*") == (S("c.*"), S("a.b:x"))
    assert format_scopes(want) == "a.b:x c.*"
    assert parse_scopes(format_scopes(want)) == want


@pytest.mark.parametrize("bad", ["", "   ", [], ()])
def test_parse_scopes_refuses_empty(bad):
    with pytest.raises(UsageError, match="no scopes given"):
        parse_scopes(bad)


def test_parse_scopes_refuses_bad_items_and_too_many():
    with pytest.raises(UsageError, match="has a space"):
        parse_scopes(["a b"])  # in a list each item is one scope
    with pytest.raises(UsageError, match=r"bad scope 'a\.\*\.b'"):
        parse_scopes("ok a.*.b")
    with pytest.raises(UsageError, match="control"):
        parse_scopes("a\tb")
    with pytest.raises(UsageError, match="expected text or a list"):
        parse_scopes(7)  # type: ignore[arg-type]
    many = [f"a{i}" for i in range(MAX_SCOPES)]
    assert len(parse_scopes(many)) == MAX_SCOPES
    assert len(parse_scopes(many + many)) == MAX_SCOPES
    with pytest.raises(UsageError, match=f"at most {MAX_SCOPES}"):
        parse_scopes(" ".join(many + ["b"]))


# --- a reference matcher, independent of the automata ---------------------------------------------------


def reference_match(scope: Scope, action: str, resource: str) -> bool:
    """The SPEC's words as regular expressions: the brute-force checks below lean on this, not on the
    automata under test."""
    if scope.action == "*":
        action_ok = True
    elif scope.action.endswith(".*"):
        action_ok = action.startswith(scope.action[:-1]) and len(action) > len(scope.action) - 1
    else:
        action_ok = action == scope.action
    if scope.resource is None:
        return action_ok
    parts = re.split(r"(\*\*|\*)", scope.resource)
    regex = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return action_ok and re.fullmatch(regex, resource, re.DOTALL) is not None


_glob_text = st.lists(st.sampled_from(["a", "b", "/", ".", "*", "**"]), min_size=1, max_size=10).map("".join).filter(lambda r: "***" not in r)


@settings(max_examples=300, deadline=None)
@given(pattern=_glob_text, resources=st.lists(st.text(alphabet="ab/.x", min_size=1, max_size=12), min_size=1, max_size=30))
def test_resource_matching_agrees_with_the_reference(pattern, resources):
    scope = S("a:" + pattern)
    for r in resources:
        assert scope.matches("a", r) is reference_match(scope, "a", r), (pattern, r)


@settings(max_examples=300, deadline=None)
@given(scope=st.sampled_from(["*", "a", "a.b", "a.*", "a.b.*", "ab.*"]).map(S), action=st.lists(st.sampled_from(["a", "b", "ab"]), min_size=1, max_size=4).map(".".join))
def test_action_matching_agrees_with_the_reference(scope, action):
    assert scope.matches(action, "r") is reference_match(scope, action, "r")


# --- concrete values and matching ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["a", "pull_request.create", "a-b_c.0.d9"])
def test_concrete_action_ok(action):
    assert check_action(action) == action


@pytest.mark.parametrize(
    "action, fragment",
    [("", "empty"), ("a.*", "no '*'"), ("*", "no '*'"), ("A", "lower-case"), ("a..b", "lower-case"), ("a:b", "lower-case"), (None, "expected text")],
)
def test_concrete_action_bad(action, fragment):
    with pytest.raises(UsageError, match=fragment):
        check_action(action)


@pytest.mark.parametrize("resource", ["x", "/", "acme/web", "https://h/a?b#c", "a:b:c", "~"])
def test_concrete_resource_ok(resource):
    assert check_resource(resource) == resource


@pytest.mark.parametrize(
    "resource, fragment",
    [("", "empty"), ("acme/*", "no '\\*'"), ("a b", "space"), ("a\x00", "control"), ("\u00e9", "(?i)non-ascii"), (3, "expected text")],
)
def test_concrete_resource_bad(resource, fragment):
    with pytest.raises(UsageError, match=fragment):
        check_resource(resource)


MATCHES = [
    # scope, action, resource, matches
    ("pull_request.create:acme/*", "pull_request.create", "acme/web", True),
    ("pull_request.create:acme/*", "pull_request.create", "acme/", True),  # '*' may match nothing
    ("pull_request.create:acme/*", "pull_request.create", "acme/web/x", False),
    ("pull_request.create:acme/*", "pull_request.create", "acme", False),
    ("pull_request.create:acme/*", "pull_request.merge", "acme/web", False),
    ("pull_request.create:acme/**", "pull_request.create", "acme/web/x/y", True),
    ("pull_request.create:acme/**", "pull_request.create", "acme/", True),
    ("pull_request.create:acme/**", "pull_request.create", "acmex", False),
    ("pull_request.*", "pull_request.create", "anything/at/all", True),
    ("pull_request.*", "pull_request.review.submit", "r", True),
    ("pull_request.*", "pull_request", "r", False),
    ("pull_request.*", "pull_requests.create", "r", False),
    ("pull_request.*", "issues.create", "r", False),
    ("*", "a", "r", True),
    ("*", "a.b.c.d", "r/s/t", True),
    ("*:*", "a.b", "r/s", False),
    ("*:*", "a.b", "rs", True),
    ("*:**", "a.b", "r/s", True),
    ("a", "a", "r", True),
    ("a", "a.b", "r", False),
    ("a.b", "a", "r", False),
    ("a:x", "a", "x", True),
    ("a:x", "a", "xx", False),
    ("a:*a*b**c", "a", "ab/c", True),
    ("a:*a*b**c", "a", "xaxb/x/c", True),
    ("a:*a*b**c", "a", "x/ab/c", False),
    ("a:*a*b**c", "a", "a/b/c", False),
    ("a:**/x", "a", "/x", True),
    ("a:**/x", "a", "a/b/x", True),
    ("a:**/x", "a", "x", False),
    ("a:*/*", "a", "/", True),
    ("a:*/*", "a", "a/b/c", False),
    ("s3.get:arn:aws:s3:::b/*", "s3.get", "arn:aws:s3:::b/k", True),
]


@pytest.mark.parametrize("scope, action, resource, expected", MATCHES)
def test_matches(scope, action, resource, expected):
    assert S(scope).matches(action, resource) is expected
    assert reference_match(S(scope), action, resource) is expected
    assert (allowed([scope], action, resource) is not None) is expected


def test_matches_refuses_patterns_where_concrete_values_belong():
    with pytest.raises(UsageError, match="no '\\*'"):
        S("*:**").matches("a", "acme/*")
    with pytest.raises(UsageError, match="no '\\*'"):
        S("*").matches("a.*", "x")


def test_allowed_returns_the_first_match():
    scopes = parse_scopes("issues.*:acme/* pull_request.*:acme/** pull_request.create:acme/web")
    assert allowed(scopes, "pull_request.create", "acme/web") == S("pull_request.*:acme/**")
    assert allowed(scopes, "issues.close", "acme/web") == S("issues.*:acme/*")
    assert allowed(scopes, "issues.close", "acme/web/1") is None
    assert allowed("a:x b", "b", "y") == S("b")
    assert allowed([], "b", "y") is None
    with pytest.raises(UsageError):
        allowed(scopes, "issues.close", "acme/*")


def test_matching_a_long_resource_is_linear(monkeypatch):
    # Counted, not timed: the automaton takes one step per character, whatever the pattern.
    scope = S("a:" + "*a" * 60 + "b")
    cls = type(scope._glob)
    calls = []
    real_close = cls._close
    monkeypatch.setattr(cls, "_close", lambda self, state: calls.append(1) or real_close(self, state))
    assert not scope.matches("a", "a" * 100_000)
    assert 0 < len(calls) <= 100_000


# --- covering: examples --------------------------------------------------------------------------------

COVERS = [
    # parent, child, covers
    ("a:**", "a:*", True),
    ("a:*", "a:**", False),
    ("a:a/**", "a:a/*", True),
    ("a:a/*", "a:a/**", False),
    ("a:a**", "a:a*b", True),
    ("a:a*b", "a:a**", False),
    ("a:a*", "a:a*b", True),
    ("a:a*", "a:a**", False),
    ("a:*b", "a:a*b", True),
    ("a:**b", "a:*/*b", True),
    ("a:*/*b", "a:**b", False),
    ("a:*a*", "a:*aa*", True),
    ("a:*aa*", "a:*a*", False),
    ("a:*a*a*", "a:*aa*", True),
    ("a:*aa*", "a:*a*a*", False),
    ("a:**", "a", True),  # no resource means any resource, and "**" is exactly that
    ("a", "a:**", True),
    ("a:*", "a", False),
    ("a", "a:x/**", True),
    ("a:x", "a:x", True),
    ("a:x", "a:y", False),
    ("a:acme/*", "a:acme/web", True),
    ("a:acme/*", "a:acme", False),
    ("a:acme*", "a:acme/*", False),  # a prefix on the string is not a prefix on the language
    ("a:acme/**", "a:acme-evil/*", False),
    ("pull_request.*", "pull_request", False),
    ("pull_request", "pull_request.*", False),
    ("pull_request.*", "pull_request.create", True),
    ("pull_request.*", "pull_request.review.*", True),
    ("pull_request.review.*", "pull_request.*", False),
    ("pull_request.*", "pull_requests.create", False),
    ("*", "anything.at.all:x/**", True),
    ("*", "*", True),
    ("*:**", "*", True),
    ("*:*", "*", False),
    ("a.*", "*", False),
    ("*", "a", True),
    ("a.b", "a.b:x", True),
    ("a.b:x", "a.b", False),
]


@pytest.mark.parametrize("parent, child, expected", COVERS)
def test_covers(parent, child, expected):
    assert covers(S(parent), S(child)) is expected
    assert covered(child, [parent]) is expected
    w = witness(child, [parent])
    if expected:
        assert w is None
    else:
        assert S(child).matches(*w) and not S(parent).matches(*w)
        assert reference_match(S(child), *w) and not reference_match(S(parent), *w)


def test_every_scope_covers_itself():
    for text, _, _ in VALID:
        assert covers(text, text)


UNION = [
    # parents, child, covered
    (["a.*:x/*", "a.*:y/*"], "a.b:x/1", True),
    (["a.*:x/*", "a.*:y/*"], "a.b:*/1", False),
    (["a.b:*", "a.c:*"], "a.*", False),
    (["a.b", "a.c"], "a.*:x", False),
    (["a.b", "a.*"], "a.*", True),
    (["a.b:x/*", "a.*:x/**"], "a.b:x/**", True),
    (["a.b:x/*", "a.c:x/**"], "a.b:x/**", False),  # each parent alone falls short, and a.c adds nothing
    (["a.*:x/*", "a.b:x/*/**"], "a.b:x/**", True),  # x/ + one segment, or x/ + more: the union is x/**
    (["a.*:x/*", "a.b:x/*/*"], "a.b:x/**", False),
    (["a:*a*", "a:*b*"], "a:*ab*", True),
    (["a:*/*", "a:*"], "a:**", False),
    (["a:a*", "a:*b"], "a:*", False),
    (["a.b.*", "a.c"], "a.b.*:x", True),
    (["x", "y"], "a", False),
    ([], "a:x", False),
    (["*:*", "*:*/**"], "*", True),  # no '/' at all, or at least one
    (["*:*", "*:*/*"], "*", False),
]


@pytest.mark.parametrize("parents, child, expected", UNION)
def test_covered_by_a_union(parents, child, expected):
    assert covered(child, parents) is expected
    w = witness(child, parents)
    if expected:
        assert w is None
    else:
        assert S(child).matches(*w) and reference_match(S(child), *w)
        assert not any(S(p).matches(*w) or reference_match(S(p), *w) for p in parents)


def test_witness_is_shortest_and_readable():
    assert witness("pull_request.*", ["pull_request"]) == ("pull_request.x", "x")
    assert witness("a:a/**", ["a:a/*"]) == ("a", "a//")
    assert witness("a:**", ["a:*"]) == ("a", "/")
    assert witness("*", ["a.*"]) == ("x", "x")
    assert witness("a.*", ["a.b:*", "a.c:*"]) == ("a.x", "x")


def test_uncovered_names_the_first_wider_scope():
    parents = parse_scopes("pull_request.*:acme/* issues.read")
    assert uncovered("pull_request.create:acme/web issues.read:x", parents) is None
    assert uncovered("pull_request.create:acme/web issues.*", parents) == (S("issues.*"), "issues.x", "x")
    assert uncovered([], parents) is None


def test_strings_and_scopes_are_both_accepted():
    assert covers("a.*", "a.b") and covers(S("a.*"), S("a.b"))
    assert covered("a.b", "a.c a.*") and covered(S("a.b"), (S("a.c"), S("a.*")))


def test_parent_lists_are_capped():
    parents = [f"a{i}" for i in range(MAX_SCOPES + 1)]
    with pytest.raises(UsageError, match=f"at most {MAX_SCOPES}"):
        covered("a0", parents)


def test_a_pathological_comparison_is_refused_quickly():
    # Thirty-two parents that each count one letter up to three: the product of their automata is
    # exponential, and the shortest counterexample is 33 characters deep. The guard refuses (fail
    # closed) rather than grinding; the bound is a count of steps, so the outcome is the same everywhere.
    letters = "abcdefghijklmnopqrstuvwxyz0123-_"
    parents = [f"a:**{c}**{c}**{c}**" for c in letters]
    child = "a:" + "".join(f"{c}**" for c in letters) + "/"
    with pytest.raises(UsageError, match="too complex") as e:
        covered(child, parents)
    assert e.value.message.startswith(f"scope {child} ")


def test_realistic_lists_decide_fast():
    parents = parse_scopes(
        " ".join(
            [f"repo.*:org{i}/web-*/**" for i in range(10)]
            + [f"pull_request.*:org{i}/*" for i in range(10)]
            + [f"deploy.{e}.*:https://deploy.example.com/org{i}/**" for i, e in enumerate(["dev", "stage", "prod"])]
            + ["issues.read", "ci.run:org*/*/pipelines/*", "*:public/**"]
        )
    )
    children = ["repo.read:org3/web-api/src/**", "pull_request.create:org9/web", "deploy.prod.rollout:https://deploy.example.com/org2/x", "issues.read:a/b", "ci.run:org7/r/pipelines/12", "x.y:public/a/b"]
    start = time.perf_counter()
    for _ in range(10):
        assert uncovered(children, parents) is None
        assert witness("repo.*:org3/**", parents) is not None
    assert time.perf_counter() - start < 2


# --- covering: brute force -----------------------------------------------------------------------------
# Over the alphabet {a, b, /} every character outside the patterns behaves alike, so one stand-in ("x",
# the one the search itself uses) completes the universe; all strings up to length SHORT then decide
# every pair of patterns of at most three characters (their shortest counterexamples are shorter).

SHORT = 5
STRINGS = ["".join(t) for n in range(1, SHORT + 1) for t in itertools.product("ab/x", repeat=n)]
PATTERNS = sorted(
    {"".join(t) for n in range(1, 4) for t in itertools.product("ab/*", repeat=n)}
    | {"".join(t) for t in itertools.product("a/*", repeat=4)}
    | {"".join(t) for t in itertools.product("a*", repeat=5)}
)
PATTERNS = [p for p in PATTERNS if "***" not in p]


def _mask(scope: Scope, strings=STRINGS) -> int:
    return sum(1 << i for i, s in enumerate(strings) if reference_match(scope, "a", s))


def test_covers_agrees_with_brute_force_on_every_short_pattern_pair():
    scopes = [S("a:" + p) for p in PATTERNS]
    masks = [_mask(s) for s in scopes]
    longest = 0
    for parent, pmask in zip(scopes, masks):
        for child, cmask in zip(scopes, masks):
            brute = cmask & ~pmask == 0
            w = witness(child, [parent])
            assert (w is None) is brute, (str(parent), str(child), w)
            if w is not None:
                assert reference_match(child, *w) and not reference_match(parent, *w)
                longest = max(longest, len(w[1]))
    assert longest <= SHORT  # the brute force was long enough to be decisive


def test_action_covering_agrees_with_brute_force():
    patterns = ["*"] + [".".join(t) + tail for n in (1, 2) for t in itertools.product("ab", repeat=n) for tail in ("", ".*")]
    actions = [".".join(t) for n in (1, 2, 3) for t in itertools.product("abx", repeat=n)]
    for p, c in itertools.product(patterns, repeat=2):
        brute = all(reference_match(S(p), a, "r") for a in actions if reference_match(S(c), a, "r"))
        assert covers(p, c) is brute, (p, c)


# --- covering: properties ------------------------------------------------------------------------------

_segment = st.sampled_from(["a", "b", "c"])
_action_pattern = st.one_of(
    st.just("*"),
    st.builds(lambda segs, wild: ".".join(segs) + (".*" if wild else ""), st.lists(_segment, min_size=1, max_size=3), st.booleans()),
)
_resource_pattern = (
    st.lists(st.sampled_from(["a", "b", "/", "*", "**"]), min_size=1, max_size=6)
    .map("".join)
    .filter(lambda r: "***" not in r)
)
_scope = st.builds(lambda a, r: a if r is None else f"{a}:{r}", _action_pattern, st.none() | _resource_pattern).map(S)
_concrete_action = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4).map(".".join)
_concrete_resource = st.text(alphabet="ab/x", min_size=1, max_size=8)
_FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(child=_scope, parents=st.lists(_scope, max_size=4), probes=st.lists(st.tuples(_concrete_action, _concrete_resource), max_size=40))
def test_covered_is_sound_and_witness_is_real(child, parents, probes):
    w = witness(child, parents)
    assert covered(child, parents) is (w is None)
    if w is None:
        for action, resource in probes:
            if reference_match(child, action, resource):
                assert any(reference_match(p, action, resource) for p in parents), (str(child), [str(p) for p in parents], action, resource)
    else:
        assert child.matches(*w) and reference_match(child, *w)
        assert not any(p.matches(*w) or reference_match(p, *w) for p in parents)


@_FAST
@given(parent=_scope, child=_scope)
def test_covers_is_a_preorder(parent, child):
    assert covers(child, child)
    assert covers(parent, child) is covered(child, [parent])
    if covers(parent, child):
        assert covered(child, [parent, child]) and covered(child, [S("*")])


@_FAST
@given(a=_scope, b=_scope, c=_scope)
def test_covers_is_transitive(a, b, c):
    if covers(a, b) and covers(b, c):
        assert covers(a, c)


_UNIVERSE_ACTIONS = [".".join(t) for n in (1, 2, 3) for t in itertools.product("abx", repeat=n)]
_UNIVERSE_STRINGS = ["".join(t) for n in range(1, 5) for t in itertools.product("ab/x", repeat=n)]
_small_resource = (
    st.lists(st.sampled_from(["a", "b", "/", "*", "**"]), min_size=1, max_size=3).map("".join).filter(lambda r: "***" not in r)
)
_small_action = st.sampled_from(["*", "a", "b", "a.*", "b.*", "a.b", "a.a", "a.b.*"])
_small_scope = st.builds(lambda a, r: a if r is None else f"{a}:{r}", _small_action, st.none() | _small_resource).map(S)


@settings(max_examples=60, deadline=None)
@given(child=_small_scope, parents=st.lists(_small_scope, min_size=1, max_size=3))
def test_union_agrees_with_brute_force(child, parents):
    # The product set is decided region by region: compare with every (action, resource) in a small
    # universe that is large enough for these patterns (the witness, when there is one, lies inside it).
    w = witness(child, parents)
    child_actions = Scope(child.action)
    brute = next(
        (
            (a, r)
            for a in _UNIVERSE_ACTIONS
            if reference_match(child_actions, a, "r")
            for r in _UNIVERSE_STRINGS
            if reference_match(child, a, r) and not any(reference_match(p, a, r) for p in parents)
        ),
        None,
    )
    assert (w is None) is (brute is None), (str(child), [str(p) for p in parents], w, brute)
    if w is not None:
        assert w[0] in _UNIVERSE_ACTIONS and w[1] in _UNIVERSE_STRINGS


def test_resources_are_text_not_paths_and_the_docs_and_help_say_so(cli):
    """The contract (issue 9 item 14): `**` matches `..` segments. Users must be told, where they write scopes."""
    from pathlib import Path

    from agentctl.scopes import parse_scopes

    assert parse_scopes("x:acme/**")[0].matches("x", "acme/../../etc/shadow")
    assert parse_scopes("x:acme/*")[0].matches("x", "acme/..")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "delegation.md").read_text()
    assert "acme/../../etc/shadow" in doc and "normalise" in doc and "without `**`" in doc
    help_text = " ".join(cli("delegate", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "acme/** also matches acme/../../etc/shadow" in help_text and "normalise the path" in help_text


def test_the_scope_modules_stay_small_and_keep_their_names():
    """STYLE's module size: the grammar and matching in scopes.py, exact covering in scope_cover.py;
    callers keep importing every name from agentctl.scopes."""
    from pathlib import Path

    import agentctl.scope_cover
    import agentctl.scopes

    for module in (agentctl.scopes, agentctl.scope_cover):
        assert len(Path(module.__file__).read_text().splitlines()) <= 400, module.__name__
    for name in agentctl.scopes.__all__:
        assert getattr(agentctl.scopes, name) is not None
    assert agentctl.scopes.witness is agentctl.scope_cover.witness
