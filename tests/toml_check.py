"""The differential check of agentctl.toml_subset against tomllib, shared by tests/test_toml_subset.py and
the conftest fixture that runs it on every TOML file a test leaves in its temporary directory."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agentctl import toml_subset


def plain(value: object) -> object:
    """``value`` with every Instant turned into the datetime tomllib gives."""
    if isinstance(value, toml_subset.Instant):
        return value.to_datetime()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def same_as_tomllib(text: str) -> None:
    """toml_subset.loads gives what tomllib gives for ``text``, or raises what tomllib raises."""
    try:
        want = tomllib.loads(text)
    except RecursionError:  # nested too deeply for tomllib: the subset reader hands it over, the same error
        with pytest.raises(RecursionError):
            toml_subset.loads(text)
        return
    except tomllib.TOMLDecodeError:
        for instants in (False, True):
            with pytest.raises(tomllib.TOMLDecodeError):  # the subset reader never accepts what tomllib refuses
                toml_subset.loads(text, instants=instants)
        return
    # repr, not ==: 1 == True == 1.0 and nan != nan; repr tells types, orders and tzinfo apart
    assert repr(toml_subset.loads(text)) == repr(want), text
    got = toml_subset.loads(text, instants=True)
    assert repr(plain(got)) == repr(want), text
    _same_instants(got, want, text)


def _same_instants(got: object, want: object, text: str) -> None:
    if isinstance(got, toml_subset.Instant):
        assert got.ts == want.timestamp(), text  # type: ignore[attr-defined]  # bit for bit: the store keeps these seconds
        assert got.to_datetime().utcoffset() == want.utcoffset(), text  # type: ignore[attr-defined]
    elif isinstance(got, dict):
        for k in got:
            _same_instants(got[k], want[k], text)  # type: ignore[index]
    elif isinstance(got, list):
        for g, w in zip(got, want):  # type: ignore[call-overload]
            _same_instants(g, w, text)


def check_tree(root: Path) -> int:
    """Compare the readers on every ``*.toml`` file under ``root``; how many there were."""
    n = 0
    for path in root.rglob("*.toml"):
        try:
            if not path.is_file():  # a FIFO some test leaves at config.toml would block the read
                continue
            data = path.read_bytes()
        except OSError:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        same_as_tomllib(text)
        n += 1
    return n
