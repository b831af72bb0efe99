"""``dataclass`` and ``field`` for the modules a cold ``agentctl verify`` loads, without the cost.

The standard :mod:`dataclasses` costs a cold process about a third of a ``python -c "import
nacl.signing"`` to import (it loads inspect, ast, dis) and about half a millisecond per class to
build (one ``exec`` per generated method, and ``inspect.signature`` for the docstring). This module
builds the same methods for the subset agentctl's hot-path values use, each compiled (one ``exec``)
only when it is first called, so a cold process pays for the ``__init__`` of the classes it makes and
nothing for the rest:

- ``@dataclass``, ``@dataclass(frozen=True)``, ``@dataclass(slots=True)`` (not frozen);
- ``field(default=…, default_factory=…, init=…, repr=…, compare=…)``;
- ``__init__`` (defaults, factories, ``init=False`` fields, ``__post_init__``), ``__repr__``,
  ``__eq__`` (same class only, the compare fields as a tuple), ``__hash__`` (frozen: the hash of that
  tuple, unless the class defines its own; not frozen: unhashable), frozen ``__setattr__`` and
  ``__delattr__`` raising :class:`FrozenInstanceError`, ``__match_args__``.

Anything else (``order``, ``kw_only``, ``unsafe_hash``, inheriting fields, ``ClassVar``/``InitVar``)
is handed to :func:`dataclasses.dataclass` itself. ``dataclasses.fields``, ``replace`` and ``asdict``
work on these classes: ``__dataclass_fields__`` is built (importing :mod:`dataclasses`) the first time
something asks for it. :class:`FrozenInstanceError` *is* ``dataclasses.FrozenInstanceError`` once
:mod:`dataclasses` is loaded: :func:`_frozen_error` raises whichever is loaded. Values are still frozen
dataclasses in every sense the code and its tests rely on (tests/test_frozen.py compares both, method
by method). Modules off the cold path use :mod:`dataclasses` as usual.
"""

from __future__ import annotations

import sys
from typing import Any, dataclass_transform

__all__ = ["dataclass", "field", "FrozenInstanceError"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class FrozenInstanceError(AttributeError):
    """Raised on assignment to a field of a frozen instance while :mod:`dataclasses` is not loaded."""


def _frozen_error(name: str) -> AttributeError:
    dc = sys.modules.get("dataclasses")
    cls = dc.FrozenInstanceError if dc is not None else FrozenInstanceError
    return cls(f"cannot assign to field {name!r}")


class Field:
    """One field's options (turned into a :class:`dataclasses.Field` when one is asked for)."""

    __slots__ = ("name", "type", "default", "default_factory", "init", "repr", "compare")

    def __init__(self, default=MISSING, default_factory=MISSING, init=True, repr=True, compare=True) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name, self.type = "", None
        self.default, self.default_factory, self.init, self.repr, self.compare = default, default_factory, init, repr, compare


def field(*, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True, repr: bool = True,  # noqa: A002
          compare: bool = True) -> Any:
    return Field(default, default_factory, init, repr, compare)


class _LazyFields:
    """``__dataclass_fields__``: real :class:`dataclasses.Field` objects, built when first asked for."""

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields

    def __get__(self, obj, cls):
        import dataclasses

        out = {}
        for f in self.fields:
            d: Any = dataclasses.field(default=dataclasses.MISSING if f.default is MISSING else f.default,
                                  default_factory=dataclasses.MISSING if f.default_factory is MISSING else f.default_factory,
                                  init=f.init, repr=f.repr, compare=f.compare)
            d.name, d.type, d._field_type = f.name, f.type, dataclasses._FIELD  # type: ignore[attr-defined]
            out[f.name] = d
        type.__setattr__(cls, "__dataclass_fields__", out)
        return out


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(cls=None, /, *, frozen: bool = False, slots: bool = False, **other):
    def wrap(c):
        return _process(c, frozen, slots, other)

    return wrap if cls is None else wrap(cls)


def _fallback(cls, frozen: bool, slots: bool, other: dict):
    import dataclasses

    for name, value in list(vars(cls).items()):  # our field() objects become the real ones
        if isinstance(value, Field):
            real = dataclasses.field(default=dataclasses.MISSING if value.default is MISSING else value.default,
                                     default_factory=(dataclasses.MISSING if value.default_factory is MISSING
                                                      else value.default_factory),
                                     init=value.init, repr=value.repr, compare=value.compare)
            setattr(cls, name, real)
    return dataclasses.dataclass(cls, frozen=frozen, slots=slots, **other)


def _process(cls, frozen: bool, slots: bool, other: dict):
    annotations = cls.__dict__.get("__annotations__", {})
    inherited = any(hasattr(b, "__dataclass_fields__") for b in cls.__mro__[1:])
    special = any(str(t).startswith(("ClassVar", "typing.ClassVar", "InitVar", "dataclasses.")) for t in annotations.values())
    if other or inherited or special or (slots and frozen):
        return _fallback(cls, frozen, slots, other)
    fields: list[Field] = []
    for name, typ in annotations.items():
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name, f.type = name, typ
        if isinstance(value, Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        fields.append(f)
    seen_default = False
    for f in fields:
        if not f.init:
            continue
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        if isinstance(f.default, (list, dict, set)):
            raise ValueError(f"mutable default {type(f.default)} for field {f.name} is not allowed: use default_factory")

    env: dict = {"__object_setattr": object.__setattr__, "__MISSING": MISSING, "__cls": cls, "__frozen_error": _frozen_error}
    args, body = [], []
    for i, f in enumerate(fields):
        if f.init:
            if f.default is not MISSING:
                env[f"__dflt_{i}"] = f.default
                args.append(f"{f.name}=__dflt_{i}")
            elif f.default_factory is not MISSING:
                env[f"__fact_{i}"] = f.default_factory
                args.append(f"{f.name}=__MISSING")
            else:
                args.append(f.name)
            value = f"__fact_{i}() if {f.name} is __MISSING else {f.name}" if f.default_factory is not MISSING else f.name
        elif f.default_factory is not MISSING:
            env[f"__fact_{i}"] = f.default_factory
            value = f"__fact_{i}()"
        elif f.default is not MISSING:
            env[f"__dflt_{i}"] = f.default
            value = f"__dflt_{i}"
        else:
            continue
        body.append(f"__object_setattr(self, {f.name!r}, {value})" if frozen else f"self.{f.name} = {value}")
    if "__post_init__" in cls.__dict__ or any("__post_init__" in vars(b) for b in cls.__mro__[1:-1]):
        body.append("self.__post_init__()")
    src = {"__init__": [f"def __init__(self, {', '.join(args)}):", *(f" {line}" for line in body or ["pass"])]}
    shown = [f for f in fields if f.repr]
    src["__repr__"] = ["def __repr__(self):",
                       " return self.__class__.__qualname__ + f\"(" + ", ".join(f"{f.name}={{self.{f.name}!r}}" for f in shown) + ")\""]
    compared = [f.name for f in fields if f.compare]
    mine = "(" + "".join(f"self.{n}," for n in compared) + ")"
    theirs = "(" + "".join(f"other.{n}," for n in compared) + ")"
    src["__eq__"] = ["def __eq__(self, other):", " if other.__class__ is self.__class__:", f"  return {mine} == {theirs}",
                     " return NotImplemented"]
    names = tuple(f.name for f in fields)
    if frozen:
        env["__names"] = frozenset(names)
        src["__hash__"] = ["def __hash__(self):", f" return hash({mine})"]
        src["__setattr__"] = ["def __setattr__(self, name, value):",
                              " if type(self) is __cls or name in __names:", "  raise __frozen_error(name)",
                              " super(__cls, self).__setattr__(name, value)"]
        src["__delattr__"] = ["def __delattr__(self, name):",
                              " if type(self) is __cls or name in __names:", "  raise __frozen_error(name)",
                              " super(__cls, self).__delattr__(name)"]
    own_hash = "__hash__" in cls.__dict__
    wanted = ["__init__", "__repr__", "__eq__"]
    if frozen:
        wanted += ["__setattr__", "__delattr__"] + ([] if own_hash else ["__hash__"])
    if slots:
        d = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
        d["__slots__"] = names
        qualname = cls.__qualname__
        cls = type(cls)(cls.__name__, cls.__bases__, d)
        cls.__qualname__ = qualname
    env["__cls"] = cls
    wanted = [name for name in wanted if not (name in ("__init__", "__repr__", "__eq__") and name in cls.__dict__)]
    for name in wanted:
        _lazy(cls, name, "\n".join(src[name]), env)  # compiled when first called
    if not frozen and not own_hash:
        type.__setattr__(cls, "__hash__", None)
    type.__setattr__(cls, "__match_args__", tuple(f.name for f in fields if f.init))
    if cls.__doc__ is None:  # as dataclasses does, without inspect.signature
        type.__setattr__(cls, "__doc__", f"{cls.__name__}({', '.join(f'{f.name}: {f.type}' for f in fields if f.init)})")
    cls.__dataclass_fields__ = _LazyFields(fields)
    return cls


def _lazy(cls: type, name: str, src: str, env: dict) -> None:
    """Put on ``cls`` a stub for the generated method ``name`` that, on its first call, compiles ``src``
    (one ``exec``), puts the real method on the class in its place and calls it: a cold process compiles
    only the methods it calls (mostly ``__init__``), a few hundred microseconds a class saved."""
    qualname = f"{cls.__qualname__}.{name}"

    def stub(*args, **kwargs):
        fn = cls.__dict__[name]
        if fn is stub:
            exec(src, env)  # noqa: S102  (the source is built by _process from the class's own field names)
            fn = env[name]
            fn.__qualname__ = qualname
            type.__setattr__(cls, name, fn)
        return fn(*args, **kwargs)

    stub.__name__, stub.__qualname__ = name, qualname
    type.__setattr__(cls, name, stub)
