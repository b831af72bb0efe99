"""Policies the verifier asks after the cryptography holds (SPEC "Policy").

One small interface: a :class:`PolicySet` answers :meth:`~PolicySet.decide` with a :class:`Decision`
that allows only when its engine said exactly yes (Rego: the value ``true``; Cedar: ``Allow`` with no
errors). False, undefined, any other value, an evaluation error or a time-out deny, and the decision's
``detail`` says which and names the set. Sets are grouped as SPEC says: the config's ``[policy] files``
form one set, each ``--policy FILE`` a set of its own, and every set must allow.

Engines are optional extras imported only inside their own module (``rego`` on regopy, ``cedar`` on
cedarpy) and only when a set of theirs is loaded; a missing one is an operational error (exit 3). A set
that does not compile, or does not define the queried rule, is a usage error (exit 2). Sets are
compiled once per process and cached by digest and query.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import NotFoundError, UsageError
from .digest import digest_of_hashes, file_sha256, input_sha256, policy_digest

__all__ = [
    "DEFAULT_QUERY",
    "DEFAULT_TIMEOUT",
    "Decision",
    "PolicySet",
    "PolicyFile",
    "load_set",
    "load_sets",
    "decide_all",
    "input_sha256",
    "policy_digest",
    "sets_digest",
    "parse_timeout",
]

DEFAULT_QUERY = "data.agent.authz.allow"
DEFAULT_TIMEOUT = 1.0
MAX_TIMEOUT = 60.0
ENGINES = {".rego": "rego", ".cedar": "cedar"}


@dataclass(frozen=True)
class Decision:
    """What one set decided. ``allowed`` is true only on the engine's exact yes."""

    allowed: bool
    result: object  # what the engine said: a JSON value, "undefined", "Allow"/"Deny", or None on error
    detail: str  # which of allow/false/undefined/other value/error/time-out happened, naming the set
    engine: str
    query: str
    digest: str

    def describe(self) -> dict:
        return {"allowed": self.allowed, "result": self.result, "detail": self.detail,
                "engine": self.engine, "query": self.query, "digest": self.digest}


@dataclass(frozen=True)
class PolicyFile:
    path: str
    text: str
    content: bytes


class PolicySet(ABC):
    """A compiled set of policy files of one engine, asked one query."""

    engine: str
    query: str
    digest: str
    files: tuple[str, ...]
    #: ``((path, sha256-hex of its bytes), …)`` in evaluation order: what the digest is computed over,
    #: so the digest of several sets together can be computed the same way (see :func:`sets_digest`).
    file_hashes: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return ", ".join(self.files)

    @abstractmethod
    def decide(self, input_doc: dict) -> Decision:
        """Never raises for anything the policy or the input does: every failure is a deny."""

    def _decision(self, allowed: bool, result: object, what: str) -> Decision:
        return Decision(allowed, result, f"policy set {self.name}: {what}", self.engine, self.query, self.digest)


def read_policy_file(path: str) -> PolicyFile:
    p = Path(path)
    try:
        content = p.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no such policy file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"cannot read policy file {path}: it is a directory") from None
    except OSError as e:
        raise UsageError(f"cannot read policy file {path}: {e.strerror or e}") from None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"cannot read policy file {path}: not UTF-8 text (at byte {e.start})") from None
    return PolicyFile(path, text, content)


def engine_of(paths: Sequence[str]) -> str:
    engines = set()
    for path in paths:
        engine = ENGINES.get(Path(path).suffix.lower())
        if engine is None:
            raise UsageError(f"policy file {path}: unknown kind (expected a .rego or .cedar file)")
        engines.add(engine)
    if len(engines) > 1:
        raise UsageError(f"one policy set mixes .rego and .cedar files ({', '.join(paths)})",
                         hint="give the Cedar and the Rego files as separate sets")
    return engines.pop()


_CACHE: dict[tuple[str, str, str], object] = {}
_CACHE_LOCK = threading.Lock()


def load_set(paths: Sequence[str], query: str = DEFAULT_QUERY, timeout: float = DEFAULT_TIMEOUT) -> PolicySet:
    """Read and compile one set (all files of one engine). Compiled once per process: a set with the
    same files' bytes and query is taken from the cache."""
    if not paths:
        raise UsageError("a policy set needs at least one file")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise UsageError(f"the policy timeout must be a positive number of seconds, not {timeout!r}")
    engine = engine_of(paths)
    files = [read_policy_file(p) for p in paths]
    digest = policy_digest((f.path, f.content) for f in files)
    key = (engine, digest, query)
    with _CACHE_LOCK:
        compiled = _CACHE.get(key)
    if compiled is None:
        compiled = _compile(engine, files, query, digest)
        with _CACHE_LOCK:
            compiled = _CACHE.setdefault(key, compiled)
    bound = _bind(engine, compiled, timeout)
    bound.file_hashes = tuple((f.path, file_sha256(f.content)) for f in files)
    return bound


def sets_digest(sets: Sequence[PolicySet]) -> str:
    """The policy digest of several sets asked in order: the SPEC's digest over every file of every
    set, ``[[path, sha256-hex], …]`` in evaluation order (one set: that set's own digest)."""
    if len(sets) == 1:
        return sets[0].digest
    return digest_of_hashes(pair for s in sets for pair in s.file_hashes)


def _compile(engine: str, files: list[PolicyFile], query: str, digest: str) -> Any:
    import importlib

    adapter = importlib.import_module(f".{engine}", __name__)  # rego or cedar: each imports its engine lazily
    return adapter.compile_set(files, query, digest)


def _bind(engine: str, compiled: Any, timeout: float) -> PolicySet:
    if engine == "rego":
        from .rego import RegoSet

        return RegoSet(compiled, timeout)
    from .cedar import CedarSet

    return CedarSet(compiled)


def load_sets(
    files: Sequence[str] = (),
    query: str = DEFAULT_QUERY,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    policies: Sequence[str] = (),
    policy_query: str | None = None,
) -> list[PolicySet]:
    """The sets a verifier asks: ``files`` (the config's ``[policy] files``) as one set asked ``query``,
    then each of ``policies`` (``--policy FILE``) as a set of its own, asked ``policy_query`` (default:
    ``query``)."""
    sets = [load_set(list(files), query, timeout)] if files else []
    for path in policies:
        sets.append(load_set([path], policy_query or query, timeout))
    return sets


def decide_all(sets: Sequence[PolicySet], input_doc: dict) -> list[Decision]:
    """Ask every set in order until one denies; the last decision is the first denial, if any."""
    out = []
    for s in sets:
        d = s.decide(input_doc)
        out.append(d)
        if not d.allowed:
            break
    return out


def parse_timeout(value: object, where: str = "[policy] timeout") -> float:
    """A policy time-out: a positive number of seconds, or a duration such as ``500ms``, ``1s`` or
    ``2s``; at most 60 seconds."""
    if isinstance(value, bool):
        raise UsageError(f"bad {where} {value!r}: use a duration such as 500ms or 1s")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().endswith("ms") and value.strip()[:-2].isdigit():
        seconds = int(value.strip()[:-2]) / 1000
    elif isinstance(value, str):
        from ..durations import parse_duration

        try:
            seconds = float(parse_duration(value, what=where))
        except UsageError:
            raise UsageError(f"bad {where} {value!r}: use a duration such as 500ms or 1s") from None
    else:
        raise UsageError(f"bad {where} {value!r}: use a duration such as 500ms or 1s")
    if not 0 < seconds <= MAX_TIMEOUT:
        raise UsageError(f"bad {where} {value!r}: more than zero and at most 60s")
    return seconds
