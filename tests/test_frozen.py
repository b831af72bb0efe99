"""agentctl.frozen builds the same classes as dataclasses for the subset the cold path uses: compared
side by side, method by method (init, defaults, factories, post-init, repr, eq, hash, frozenness,
slots, and dataclasses.fields/replace/asdict on the result)."""

from __future__ import annotations

import dataclasses

import pytest

from agentctl import frozen


def _pair(frozen_flag: bool, slots: bool = False):
    made = []
    for dc, fld in ((dataclasses.dataclass, dataclasses.field), (frozen.dataclass, frozen.field)):
        @dc(frozen=frozen_flag, slots=slots)
        class Value:
            name: str
            size: int = 3
            tags: list = fld(default_factory=list)
            secret: bytes = fld(default=b"k", repr=False)
            memo: dict = fld(default_factory=dict, init=False, repr=False, compare=False)

            def __post_init__(self) -> None:
                if self.size < 0:
                    raise ValueError("negative")
                self.memo["seen"] = True

        made.append(Value)
    return made


@pytest.mark.parametrize("frozen_flag", [True, False])
def test_the_same_values_as_dataclasses(frozen_flag):
    real, lite = _pair(frozen_flag)
    for args, kw in ((("a",), {}), (("a", 5), {"tags": [1]}), ((), {"name": "b", "secret": b"s"})):
        r, v = real(*args, **kw), lite(*args, **kw)
        assert repr(r).replace(real.__qualname__, "X") == repr(v).replace(lite.__qualname__, "X")
        assert [getattr(r, f) for f in ("name", "size", "tags", "secret", "memo")] == \
               [getattr(v, f) for f in ("name", "size", "tags", "secret", "memo")]
        assert v == lite(*args, **kw) and v != r  # another class is never equal
        other = lite(*args, **kw)
        other.memo["x"] = 1  # compare=False: no part of equality
        assert other == v
        assert [f.name for f in dataclasses.fields(v)] == [f.name for f in dataclasses.fields(r)]
        assert dataclasses.asdict(v) == dataclasses.asdict(r)
        assert dataclasses.replace(v, size=9) == lite(v.name, 9, v.tags, v.secret) and dataclasses.is_dataclass(v)
    assert lite("a").tags is not lite("a").tags  # a fresh list each time
    with pytest.raises(ValueError):
        lite("a", -1)  # __post_init__ runs
    with pytest.raises(TypeError):
        lite()  # the required field
    assert lite.__match_args__ == real.__match_args__


def test_frozen_is_frozen_and_hashable_by_its_compared_fields():
    real, lite = _pair(True)
    v = lite("a", tags=(1,))
    assert hash(v) == hash(lite("a", tags=(1,))) == hash(real("a", tags=(1,)))
    for attempt in (lambda: setattr(v, "name", "b"), lambda: delattr(v, "size"), lambda: setattr(v, "new", 1)):
        with pytest.raises(dataclasses.FrozenInstanceError):  # the very class dataclasses raises
            attempt()
    assert v.name == "a" and v.size == 3


def test_not_frozen_is_mutable_and_unhashable_and_slots_are_slots():
    _, lite = _pair(False)
    v = lite("a")
    v.size = 4
    assert v.size == 4
    with pytest.raises(TypeError):
        hash(v)

    @frozen.dataclass(slots=True)
    class S:
        a: int
        b: str | None = None

    s = S(1)
    assert (s.a, s.b, S.__slots__) == (1, None, ("a", "b")) and not hasattr(s, "__dict__")
    with pytest.raises(AttributeError):
        s.c = 1  # type: ignore[attr-defined]
    assert repr(s) == "test_not_frozen_is_mutable_and_unhashable_and_slots_are_slots.<locals>.S(a=1, b=None)"


def test_a_class_that_defines_its_own_hash_keeps_it():
    @frozen.dataclass(frozen=True)
    class H:
        a: int

        def __hash__(self) -> int:
            return 7

    assert hash(H(1)) == 7


def test_what_it_does_not_build_goes_to_dataclasses():
    @frozen.dataclass(frozen=True, order=True)
    class O:
        a: int
        b: list = frozen.field(default_factory=list)

    assert O(1) < O(2) and O(1).b == [] and "dataclasses" in type(O.__dataclass_fields__["a"]).__module__


def test_the_cold_path_values_are_built_here():
    from agentctl.events import Event
    from agentctl.models import Key
    from agentctl.scopes import Scope

    for cls in (Event, Key, Scope):
        assert isinstance(cls.__dict__["__dataclass_fields__"], frozen._LazyFields) or dataclasses.is_dataclass(cls)
        assert cls.__init__.__module__ == "agentctl.frozen" or cls.__init__.__qualname__.startswith(cls.__qualname__)


def test_methods_are_compiled_when_first_called_and_then_replace_their_stub():
    @frozen.dataclass(frozen=True)
    class P:
        a: int
        b: str = "x"

    stub_init, stub_eq = P.__dict__["__init__"], P.__dict__["__eq__"]
    early = P.__init__  # a reference taken before the first call still works
    p = P(1)
    assert P.__dict__["__init__"] is not stub_init and P.__dict__["__eq__"] is stub_eq  # only what was called
    q = P.__new__(P)
    early(q, 2, "y")
    assert (q.a, q.b) == (2, "y") and q != p and p == P(1) and P.__dict__["__eq__"] is not stub_eq
    assert hash(p) == hash(P(1)) and repr(p).endswith("P(a=1, b='x')")
    with pytest.raises(TypeError):
        P(1, "x", 3)  # the compiled __init__'s own signature
    for cls in (P,):
        for name in ("__init__", "__eq__", "__hash__", "__repr__"):
            assert cls.__dict__[name].__qualname__ == f"{cls.__qualname__}.{name}"


def test_a_frozen_instance_refuses_assignment_before_any_method_is_compiled():
    @frozen.dataclass(frozen=True)
    class F:
        a: int

    v = F.__new__(F)
    with pytest.raises(AttributeError):
        v.a = 1
