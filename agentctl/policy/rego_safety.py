"""Compile-time safety of a Rego set, checked on the plan rego-cpp actually runs; and the input
guard (:func:`unfaithful_input`) for what regopy's input conversion would alter.

rego-cpp (regopy 1.5) has no safety pass: a variable that nothing binds (OPA's "var y is unsafe") and
a call to a function that does not exist both compile, and only show at evaluation, as *undefined* or
an error. Undefined fails open under ``not``: ``allow if { not deny }`` with ``deny if { y > 1 }``
allows. OPA refuses such a policy at compile time; so does this check.

It reads the bundle's plan (OPA's intermediate representation, ``plan.json``, as the engine saves it)
and follows every function and plan block:

- **an unbound read**: every local a statement reads must have been written before it on the same
  path: by an earlier statement of its block or an enclosing one, as a parameter, as a scan's key or
  value inside the scan's block, or declared (``ResetLocalStmt``) by the compiler. What a nested block
  (a ``not``, a comprehension, an ``every``, a scan, a ``with``, another rule body) writes does not
  count after that block: rego-cpp lowers a comprehension's variable and the same name after the
  comprehension to one local, so ``[v | v := input.a[_]]; v > 0`` reads a stale value. A local that
  only a ``ResetLocalStmt`` ever writes, read anywhere, is refused as well.
- **an unknown function**: every ``CallStmt`` names a function of the plan or a built-in the engine
  declares (``static.builtin_funcs``) and knows (``Interpreter.is_builtin``).
- **a statement this check does not know** (a newer engine's IR): refused, never skipped.

regopy 1.5 plans every rule of the set (an unreferenced rule of another package included), so every
rule is checked; a rule the plan lacks could not decide anything. The check is conservative: a policy it refuses that OPA would accept is a false positive (none is known among the
forms the tests cover); it never lets an unbound read through.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

__all__ = ["Finding", "check_plan", "plan_of", "unfaithful_input"]


@dataclass(frozen=True)
class Finding:
    what: str  # "unsafe" | "unknown-function" | "unknown-statement"
    detail: str
    file: str | None
    line: int | None  # 1-based; None when the engine kept no position for the statement
    rule: str | None  # the rule or function whose plan holds it, e.g. data.agent.authz.deny


def plan_of(regopy, interp, bundle) -> dict:
    """The bundle's plan as the engine serializes it (a temporary directory, removed at once)."""
    with tempfile.TemporaryDirectory(prefix="agentctl-rego-") as d:
        target = os.path.join(d, "bundle")
        interp.save_bundle(target, bundle)
        with open(os.path.join(target, "plan.json"), encoding="utf-8") as f:
            return json.load(f)


# statement type -> (local-index fields read, local-index fields written, local-index fields read
# that may be undefined). Operands ({"type": "local", "value": N}) anywhere in a statement are reads.
_STMTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "ArrayAppendStmt": (("array",), (), ()),
    "AssignIntStmt": ((), ("target",), ()),
    "AssignVarOnceStmt": ((), ("target",), ()),
    "AssignVarStmt": ((), ("target",), ()),
    "BlockStmt": ((), (), ()),
    "BreakStmt": ((), (), ()),
    "CallDynamicStmt": (("args",), ("result",), ()),
    "CallStmt": ((), ("result",), ()),
    "DotStmt": ((), ("target",), ()),
    "EqualStmt": ((), (), ()),
    "IsArrayStmt": (("source",), (), ()),
    "IsDefinedStmt": ((), (), ("source",)),
    "IsObjectStmt": (("source",), (), ()),
    "IsSetStmt": (("source",), (), ()),
    "IsUndefinedStmt": ((), (), ("source",)),
    "LenStmt": (("source",), ("target",), ()),
    "MakeArrayStmt": ((), ("target",), ()),
    "MakeNullStmt": ((), ("target",), ()),
    "MakeNumberIntStmt": ((), ("target",), ()),
    "MakeNumberRefStmt": ((), ("target",), ()),
    "MakeObjectStmt": ((), ("target",), ()),
    "MakeSetStmt": ((), ("target",), ()),
    "NopStmt": ((), (), ()),
    "NotEqualStmt": ((), (), ()),
    "NotStmt": ((), (), ()),
    "ObjectInsertOnceStmt": (("object",), (), ()),
    "ObjectInsertStmt": (("object",), (), ()),
    "ObjectMergeStmt": (("a", "b"), ("target",), ()),
    "ResetLocalStmt": ((), (), ()),  # a declaration: see _Walker
    "ResultSetAddStmt": (("value",), (), ()),
    "ReturnLocalStmt": ((), (), ("source",)),
    "ScanStmt": (("source",), (), ()),  # key and value are written inside its block
    "SetAddStmt": (("set",), (), ()),
    "WithStmt": (("local",), (), ()),
}
_META = {"file", "row", "col"}


def _ints(value) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _operands(value, out: list[int]) -> None:
    """Local operands ({"type": "local", "value": N}) anywhere in a statement's fields."""
    if isinstance(value, dict):
        if value.get("type") == "local" and isinstance(value.get("value"), int):
            out.append(value["value"])
            return
        for v in value.values():
            _operands(v, out)
    elif isinstance(value, list):
        for v in value:
            _operands(v, out)


class _Walker:
    def __init__(self, plan: dict, known_builtin) -> None:
        static = plan.get("static") or {}
        self.files = [f.get("value") for f in static.get("files") or []]
        self.builtins = {b.get("name") for b in static.get("builtin_funcs") or []}
        self.funcs = {f.get("name") for f in (plan.get("funcs") or {}).get("funcs") or []}
        self.known_builtin = known_builtin
        self.findings: list[Finding] = []
        self.assigned: set[int] = set()  # locals some statement other than ResetLocalStmt writes
        self.rule: str | None = None

    def where(self, stmt: dict, fallback: tuple[str | None, int | None]) -> tuple[str | None, int | None]:
        f, row = stmt.get("file"), stmt.get("row")
        if isinstance(f, int) and isinstance(row, int) and 0 <= f < len(self.files):
            return self.files[f], row + 1
        return fallback

    def add(self, what: str, detail: str, loc: tuple[str | None, int | None]) -> None:
        finding = Finding(what, detail, loc[0], loc[1], self.rule)
        if finding not in self.findings:
            self.findings.append(finding)

    def first_file(self, blocks: list) -> str | None:
        """The file of the first statement with a position: a rule's bodies are all in one file."""
        for block in blocks or []:
            for s in block.get("stmts") or []:
                stmt = s.get("stmt") or {}
                f, _ = self.where(stmt, (None, None))
                if f is not None:
                    return f
                for nested in self._nested(stmt):
                    f = self.first_file(nested)
                    if f is not None:
                        return f
        return None

    # first pass: which locals are ever assigned a value
    def collect(self, blocks: list) -> None:
        for block in blocks or []:
            for s in block.get("stmts") or []:
                kind, stmt = s.get("type"), s.get("stmt") or {}
                spec = _STMTS.get(kind)
                if spec is not None and kind != "ResetLocalStmt":
                    for field in spec[1]:
                        self.assigned.update(_ints(stmt.get(field)))
                    if kind == "ScanStmt":
                        self.assigned.update(_ints(stmt.get("key")) + _ints(stmt.get("value")))
                for nested in self._nested(stmt):
                    self.collect(nested)

    @staticmethod
    def _nested(stmt: dict) -> list[list]:
        out = []
        if isinstance(stmt.get("block"), dict):
            out.append([stmt["block"]])
        if isinstance(stmt.get("blocks"), list):
            out.append(stmt["blocks"])
        return out

    # second pass: every read follows a write on its path
    def blocks(self, blocks: list, defined: set[int], declared: set[int], loc, *, carry_all: bool = False) -> None:
        """Sibling blocks run one after the other, each whatever the one before did. Only declarations
        carry on to the following siblings: rego-cpp gives one name one local across a rule's bodies
        and its ``else`` branches, so a write of one body is no binding in the next. A plan's own
        top-level blocks (the entrypoint's query, no policy code) carry every write."""
        carried: set[int] = set()
        for block in blocks or []:
            self.block(block, defined | carried, declared | carried, loc)
            for s in block.get("stmts") or []:
                kind, stmt = s.get("type"), s.get("stmt") or {}
                if kind == "ResetLocalStmt" or (carry_all and kind in _STMTS):
                    for field in ("target", "result") if carry_all else ("target",):
                        carried.update(_ints(stmt.get(field)))

    def block(self, block: dict, defined: set[int], declared: set[int], loc) -> None:
        defined, declared = set(defined), set(declared)
        for s in block.get("stmts") or []:
            kind, stmt = s.get("type"), s.get("stmt") or {}
            loc = self.where(stmt, loc)
            spec = _STMTS.get(kind)
            if spec is None:
                self.add("unknown-statement", f"the engine's plan has a statement this check does not know ({kind})", loc)
                continue
            reads_, writes, maybe_undefined = spec
            reads: list[int] = []
            for field, value in stmt.items():
                if field not in _META and field not in ("block", "blocks"):
                    _operands(value, reads)
            for field in reads_:
                reads.extend(_ints(stmt.get(field)))
            for n in reads:
                if (n not in defined and n not in declared) or n not in self.assigned:
                    self.add("unsafe", "a variable is read that nothing binds", loc)
            for n in (x for field in maybe_undefined for x in _ints(stmt.get(field))):
                if n not in defined and n not in declared:
                    self.add("unsafe", "a variable is read that nothing binds", loc)
            if kind == "CallStmt":
                func = stmt.get("func")
                if func not in self.funcs and not (func in self.builtins and self.known_builtin(func)):
                    self.add("unknown-function", f"unknown function {func}", loc)
            if kind == "ResetLocalStmt":
                declared.update(_ints(stmt.get("target")))
            for field in writes:
                defined.update(_ints(stmt.get(field)))
            if kind == "ScanStmt":
                inner = defined | set(_ints(stmt.get("key"))) | set(_ints(stmt.get("value")))
                self.block(stmt.get("block") or {}, inner, declared, loc)
            elif kind == "BlockStmt":
                self.blocks(stmt.get("blocks") or [], defined, declared, loc)
            elif isinstance(stmt.get("block"), dict):  # NotStmt, WithStmt
                self.block(stmt["block"], defined, declared, loc)


def check_plan(plan: dict, known_builtin) -> list[Finding]:
    """Every unbound read, unknown function and unknown statement in the plan, in plan order."""
    w = _Walker(plan, known_builtin)
    plans = (plan.get("plans") or {}).get("plans") or []
    funcs = (plan.get("funcs") or {}).get("funcs") or []
    for p in plans:
        w.collect(p.get("blocks") or [])
    for f in funcs:
        w.collect(f.get("blocks") or [])
    w.assigned.update((0, 1))  # input and data
    for f in funcs:
        w.assigned.update(_ints(f.get("params")))
    for p in plans:
        w.rule = None
        w.blocks(p.get("blocks") or [], {0, 1}, set(), (None, None), carry_all=True)
    for f in funcs:
        name = f.get("name")
        w.rule = "data." + name.split(".", 2)[2] if isinstance(name, str) and name.startswith("g0.data.") else name
        w.blocks(f.get("blocks") or [], set(_ints(f.get("params"))), set(), (w.first_file(f.get("blocks")), None))
    return w.findings


# --- the input, as the engine would see it --------------------------------------------------------

_INT64 = (-(2**63), 2**63 - 1)


def unfaithful_input(doc: object, path: str = "input") -> str | None:
    """What in the input document the engine would not see as it is, else None. regopy's input
    conversion cuts a string (or an object key) at its first NUL, so ``"acme/api\\u0000x"`` would
    equal ``"acme/api"`` and a key ``"id\\u0000x"`` would replace ``id``; it wraps an integer beyond
    64 bits (2**64 + 1 becomes 1); and JSON has no NaN or infinity. Any of them denies."""
    stack = [(doc, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if "\0" in value:
                return f"a string with a NUL character at {_printable(where)}"
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                return f"an integer beyond 64 bits at {_printable(where)}"
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return f"a number JSON cannot hold at {_printable(where)}"
        elif isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    return f"a key that is not a string at {_printable(where)}"
                if "\0" in k:
                    return f"a key with a NUL character at {_printable(where)}"
                stack.append((v, f"{where}.{k}"))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
        else:
            return f"a value of type {type(value).__name__} at {_printable(where)}"
    return None


def _printable(where: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in where)
    return text if len(text) <= 80 else text[:77] + "..."
