"""The start-up fast path: ``--version``, ``pubkey`` and ``verify`` without importing Typer.

It accepts only the exact shapes it knows (global ``--home DIR``/``--json`` before the command,
``--format``/``--json`` after it) and returns None for anything else, which the Typer application
then handles, errors and help included. Both paths call the same ``do_*`` functions.
"""

from __future__ import annotations

import sys

__all__ = ["try_fast"]


def _globals(args: list[str]) -> tuple[str | None, bool, list[str]] | None:
    home, json_mode, i = None, False, 0
    while i < len(args):
        a = args[i]
        if a == "--json":
            json_mode = True
        elif a == "--home" and i + 1 < len(args):
            home = args[i + 1]
            i += 1
        elif a.startswith("--home="):
            home = a[len("--home="):]
        elif a.startswith("-"):
            return None
        else:
            return home, json_mode, args[i:]
        i += 1
    return None


def try_fast(args: list[str]) -> int | None:
    if args == ["--version"]:
        from .. import __version__

        print(f"agentctl {__version__}")
        return 0
    parsed = _globals(args)
    if parsed is None:
        return None
    home, json_mode, rest = parsed
    if rest[0] == "pubkey":
        return _pubkey(home, json_mode, rest[1:])
    if rest[0] == "verify":
        return _verify(home, json_mode, rest[1:])
    return None


_VERIFY_VALUES = ("--action", "--resource", "--audience", "--data", "--expect", "--revocations", "--at", "--leeway",
                  "--policy", "--query", "--context")
_VERIFY_REPEATABLE = ("--policy",)
_VERIFY_FLAGS = ("--once", "--batch", "--json")


def _verify(home: str | None, json_mode: bool, rest: list[str]) -> int | None:
    values: dict[str, str] = {}
    policies: list[str] = []
    flags: set[str] = set()
    token = None
    i = 0
    while i < len(rest):
        a = rest[i]
        name, eq, value = a.partition("=")
        if a in _VERIFY_FLAGS:
            if a in flags:
                return None
            flags.add(a)
        elif name in _VERIFY_REPEATABLE and eq:
            policies.append(value)
        elif a in _VERIFY_REPEATABLE and i + 1 < len(rest):
            policies.append(rest[i + 1])
            i += 1
        elif name in _VERIFY_VALUES and eq:
            if name in values:
                return None
            values[name] = value
        elif a in _VERIFY_VALUES and i + 1 < len(rest):
            if a in values:
                return None
            values[a] = rest[i + 1]
            i += 1
        elif (a.startswith("-") and a != "-") or token is not None:
            return None
        else:
            token = a
        i += 1
    if "--batch" not in flags:
        _no_openssl_hashes()
    from .action_cmds import do_verify
    from .common import State

    state = State(home, json_mode or "--json" in flags)
    v = values.get
    return do_verify(state, state.output(), token, v("--action"), v("--resource"), v("--audience"), v("--data"),
                     v("--revocations"), v("--at"), v("--leeway"), "--once" in flags, "--batch" in flags, v("--expect"),
                     policies=tuple(policies), query=v("--query"), context=v("--context"))


def _no_openssl_hashes() -> None:
    """A single cold verify hashes a few hundred bytes: Python's own SHA-256 (``_sha256``, the same
    digests) does that as fast as OpenSSL's, and loading libcrypto (``_hashlib``) costs more than all of
    the verify's hashing. So when nothing has loaded it yet, :mod:`hashlib` is told it is absent and
    takes its built-in constructors. ``--batch`` (many digests, where OpenSSL is faster) and every
    process that has loaded it already (tests, an embedding program) keep OpenSSL."""
    sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]


def _pubkey(home: str | None, json_mode: bool, rest: list[str]) -> int | None:
    name, fmt, i = None, "did", 0
    while i < len(rest):
        a = rest[i]
        if a == "--json":
            json_mode = True
        elif a == "--format" and i + 1 < len(rest):
            fmt = rest[i + 1]
            i += 1
        elif a.startswith("--format="):
            fmt = a[len("--format="):]
        elif a.startswith("-") or name is not None:
            return None
        else:
            name = a
        i += 1
    if name is None:
        return None
    from .common import State
    from .identity_cmds import do_pubkey

    state = State(home, json_mode)
    return do_pubkey(state, state.output(), name, fmt)
