"""Rego sets on the embedded ``regopy`` engine (rego-cpp, OPA v1 syntax), behind :class:`PolicySet`.

The engine's hazards, and what this adapter does about each (measured on regopy 1.5):

- a false or failed rule is often *undefined*, not false: only the value exactly ``true`` allows;
- built-in errors (division by zero) are swallowed as undefined unless strict built-in errors are on,
  which let ``default allow := true`` with ``allow := false if {1/0 …}`` allow: strict errors are on,
  and an error denies;
- unsafe variables (read, never bound) and unknown functions compile, and show only at evaluation as
  undefined or an error, which under ``not`` allows: the compiled plan is checked (``rego_safety``)
  and such a set does not compile; anything at evaluation that is not a well-formed result denies;
- the input conversion cuts strings and keys at NUL and wraps integers beyond 64 bits: such an input
  denies before the engine sees it;
- a set with two ``default`` rules for one name builds a bundle that crashes the process when queried:
  ``ok()`` is checked at compile time and such a set does not compile;
- a set that does not define the queried rule builds and answers undefined: a source scan refuses it;
- ``print()`` writes to the process's stdout whatever the log level: while a set that calls ``print``
  evaluates, stdout (fd 1) is pointed at stderr, so ``--json`` still prints one document;
- evaluation cannot be interrupted: it runs on a worker thread and the caller waits at most the
  timeout, then denies; the runaway evaluation is abandoned (it finishes on its own thread).

The bundle is built once per process (cache in the package) and its entrypoint queried per decision.
What is read from the source text before the engine sees it is in :mod:`.rego_source`; the check of
the compiled plan in :mod:`.rego_safety`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
from dataclasses import dataclass

from ..errors import OperationalError, UsageError
from . import Decision, PolicyFile, PolicySet
from .rego_safety import check_plan, plan_of, unfaithful_input
from .rego_source import SEGMENT, calls_print, require_rule

__all__ = ["RegoSet", "compile_set", "entrypoint_of"]

INSTALL_HINT = "install the rego extra of this checkout: pip install -e '.[rego]' (regopy)"


def _regopy():
    try:
        import regopy
    except ImportError:
        raise OperationalError("the rego engine is not installed (regopy)", hint=INSTALL_HINT) from None
    _quiet(regopy)
    return regopy


_QUIET = False


def _quiet(regopy) -> None:
    global _QUIET
    if not _QUIET:
        regopy.set_default_log_level("None")  # no engine logging on the process's stdout
        _QUIET = True


_QUERY = re.compile(rf"data(\.{SEGMENT})+")


def entrypoint_of(query: str) -> str:
    """``data.agent.authz.allow`` -> ``agent/authz/allow``."""
    if not isinstance(query, str) or not _QUERY.fullmatch(query):
        raise UsageError(f"bad policy query {query!r}: expected data.PACKAGE.RULE, e.g. data.agent.authz.allow")
    return query[len("data."):].replace(".", "/")


@dataclass(frozen=True)
class Compiled:
    files: tuple[str, ...]
    query: str
    entrypoint: str
    digest: str
    bundle: object
    prints: bool


def compile_set(files: list[PolicyFile], query: str, digest: str) -> Compiled:
    entrypoint = entrypoint_of(query)
    regopy = _regopy()
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE
    for f in files:
        try:
            interp.add_module(f.path, f.text)
        except regopy.RegoError as e:
            raise _compile_error(str(e), files) from None
    require_rule(files, query)
    try:
        bundle = interp.build(None, [entrypoint])
    except regopy.RegoError as e:
        raise _compile_error(str(e), files) from None
    if not bundle.ok():  # querying it would crash the process (two defaults for one rule, for one)
        raise UsageError(f"policy set {', '.join(f.path for f in files)} does not compile: the engine rejected it "
                         "(two 'default' rules for one name, or conflicting rule values?)")
    _require_safe(regopy, interp, bundle, files)
    prints = any(calls_print(f.text) for f in files)
    return Compiled(tuple(f.path for f in files), query, entrypoint, digest, bundle, prints)



def _require_safe(regopy, interp, bundle, files: list[PolicyFile]) -> None:
    """Refuse what rego-cpp compiles but OPA does not: unsafe variables and unknown functions (see
    rego_safety). Their rule would be undefined, and under ``not`` undefined allows."""
    try:
        plan = plan_of(regopy, interp, bundle)
    except (OSError, ValueError, regopy.RegoError) as e:
        raise OperationalError(f"cannot read the compiled plan of policy set {', '.join(f.path for f in files)}: "
                               f"{_first_line(str(e)) or type(e).__name__}") from None
    findings = check_plan(plan, interp.is_builtin)
    if not findings:
        return
    first = findings[0]
    match = _file_named(files, first.file)
    where = match.path if match is not None else first.file or ", ".join(f.path for f in files)
    if first.line:
        where = f"{where}:{first.line}"
    source = f" in rule {first.rule}" if first.rule else ""
    if match is not None and first.line:
        lines = match.text.splitlines()
        if 0 < first.line <= len(lines) and lines[first.line - 1].strip():
            source = f" in `{_clip(lines[first.line - 1].strip())}`"
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    if first.what == "unsafe":
        raise UsageError(f"policy {where} does not compile: unsafe variable: a variable is read that nothing "
                         f"binds{source}{more}",
                         hint="bind every variable before it is read (:=, some x in …, a reference such as "
                              "input.xs[i]); a binding inside not, a comprehension or every, or in another "
                              "rule body, does not count")
    if first.what == "unknown-function":
        raise UsageError(f"policy {where} does not compile: {first.detail}{source}{more}")
    raise UsageError(f"policy {where} does not compile: {first.detail}{more}",
                     hint="this engine version is newer than agentctl's safety check knows; use regopy 1.5")


def _file_named(files: list[PolicyFile], name: str | None) -> PolicyFile | None:
    """The set's file the plan names: rego-cpp keeps only a module's base name."""
    if not name:
        return None
    exact = [f for f in files if f.path == name]
    if exact:
        return exact[0]
    same = [f for f in files if os.path.basename(f.path) == os.path.basename(name)]
    return same[0] if len(same) == 1 else None


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _compile_error(raw: str, files: list[PolicyFile]) -> UsageError:
    """rego-cpp's error s-expression: ``(error N:FILE|OFFSET|LEN (errormsg N:TEXT) …)``, with length
    prefixes. The first error, as ``FILE:LINE: TEXT``."""
    where, message = None, None
    m = re.search(r"\(error (\d+):", raw)
    if m:
        start = m.end()
        name = raw[start:start + int(m.group(1))]
        pos = re.match(r"\|(\d+)\|", raw[start + int(m.group(1)):])
        text = next((f.text for f in files if f.path == name), None)
        if pos and text is not None:
            line = text.count("\n", 0, int(pos.group(1))) + 1
            where = f"{name}:{line}"
        else:
            where = name or None
    m = re.search(r"\(errormsg (\d+):", raw)
    if m:
        message = raw[m.end():m.end() + int(m.group(1))]
    if not message:
        message = raw.strip().splitlines()[0] if raw.strip() else "the engine gave no detail"
    message = message.strip()
    if where is None:
        where = ", ".join(f.path for f in files)
    return UsageError(f"policy {where} does not compile: {message}")


# --- evaluation ----------------------------------------------------------------------------------


class _StdoutToStderr:
    """fd 1 pointed at fd 2 while a printing policy evaluates (process-wide; counted, so nested or
    concurrent uses restore it once)."""

    _lock = threading.Lock()
    _depth = 0
    _saved = -1

    @classmethod
    def enter(cls) -> None:
        with cls._lock:
            if cls._depth == 0:
                try:
                    import sys

                    sys.stdout.flush()
                except (OSError, ValueError, AttributeError):
                    pass
                cls._saved = os.dup(1)
                os.dup2(2, 1)
            cls._depth += 1

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            if cls._depth == 0:
                return
            cls._depth -= 1
            if cls._depth == 0:
                os.dup2(cls._saved, 1)
                os.close(cls._saved)
                cls._saved = -1


class _Job:
    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.done = threading.Event()
        self.outcome: tuple[str, object] = ("error", "no result")
        self.redirected = False
        self.released = threading.Lock()  # whoever takes it restores stdout


class _Worker:
    """A thread with its own interpreter that evaluates one job at a time."""

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="agentctl-rego", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        regopy = _regopy()
        interp = regopy.Interpreter()
        interp.log_level = regopy.LogLevel.NONE
        interp.strict_built_in_errors = True  # a built-in's error is an error, never undefined
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                if self.compiled.prints:
                    _StdoutToStderr.enter()
                    job.redirected = True
                try:
                    job.outcome = _evaluate(regopy, interp, self.compiled, job.doc)
                finally:
                    if job.redirected and job.released.acquire(blocking=False):
                        _StdoutToStderr.leave()
            except Exception as e:  # noqa: BLE001 - whatever the engine does is a deny, never a crash
                job.outcome = ("error", f"{type(e).__name__}: {e}")
            finally:
                job.done.set()


def _evaluate(regopy, interp, compiled: Compiled, doc: dict) -> tuple[str, object]:
    interp.set_input(regopy.Input(doc))
    try:
        out = interp.query_bundle_entrypoint(compiled.bundle, compiled.entrypoint)
    except (ValueError, regopy.RegoError) as e:  # an error string instead of a result (unknown function)
        return ("error", _first_line(str(e)) or type(e).__name__)
    if not out.ok():
        return ("error", _first_line(str(out)))
    text = str(out)
    if text.strip() == "undefined":
        return ("undefined", "undefined")
    try:
        value = json.loads(text)
    except ValueError:
        return ("error", _first_line(text))
    if isinstance(value, list):  # several results: not one value
        return ("value", value)
    if not isinstance(value, dict) or not isinstance(value.get("expressions"), list) or len(value["expressions"]) != 1:
        return ("value", value)
    return ("value", value["expressions"][0])


def _first_line(text: str) -> str:
    m = re.search(r"\(errormsg (\d+):", text)
    if m:
        return text[m.end():m.end() + int(m.group(1))]
    return text.strip().splitlines()[0] if text.strip() else ""


class RegoSet(PolicySet):
    engine = "rego"

    def __init__(self, compiled: Compiled, timeout: float) -> None:
        self.compiled = compiled
        self.timeout = float(timeout)
        self.query = compiled.query
        self.digest = compiled.digest
        self.files = compiled.files
        self._lock = threading.Lock()
        self._worker: _Worker | None = None

    def decide(self, input_doc: dict) -> Decision:
        bad = unfaithful_input(input_doc)
        if bad is not None:
            return self._decision(False, None, f"input not taken: {bad}")
        with self._lock:  # one evaluation at a time on this set's worker
            if self._worker is None:
                self._worker = _Worker(self.compiled)
            job = _Job(input_doc)
            self._worker.jobs.put(job)
            if not job.done.wait(self.timeout):
                self._worker.jobs.put(None)  # it stops once the runaway evaluation ends
                self._worker = None
                if job.redirected and job.released.acquire(blocking=False):
                    _StdoutToStderr.leave()  # this process's stdout is its own again
                return self._decision(False, None, f"time-out: no decision within {self.timeout:g}s")
        kind, value = job.outcome
        if kind == "error":
            return self._decision(False, None, f"evaluation error: {value}")
        if kind == "undefined":
            return self._decision(False, "undefined", f"{self.query} is undefined")
        if value is True:
            return self._decision(True, True, f"{self.query} is true")
        if value is False:
            return self._decision(False, False, f"{self.query} is false")
        return self._decision(False, value, f"{self.query} is {_short(value)}, not true")


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
