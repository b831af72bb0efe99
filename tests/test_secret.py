"""The exported secret (SPEC, "Home, stores and secrets"): one line, ``AGENTCTL-SECRET-KEY-1…``, with
the principal's name and the 32-byte seed and a checksum, so a truncated or mistyped secret is a clear
error; never repeated in an error message."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.encoding import b64u_decode
from agentctl.errors import SecretFormatError
from agentctl.secret import PREFIX, ExportedSecret, decode_secret, encode_secret

SEED = bytes(range(32))
NAME = "agent:code-reviewer:prod"
B64U = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def secret_line() -> str:
    return encode_secret(NAME, SEED)


def assert_not_echoed(error: SecretFormatError, secret: str) -> None:
    """No piece of the secret (beyond the public prefix) appears in the message or hint."""
    body = secret[len(PREFIX):]
    text = f"{error.message} {error.hint or ''}"
    assert "\n" not in error.message
    for i in range(0, max(1, len(body) - 6)):
        assert body[i : i + 6] not in text, "the error repeats part of the secret"
    assert error.exit_code == 2


def test_roundtrip():
    line = secret_line()
    assert line.startswith(PREFIX)
    assert "\n" not in line and " " not in line and line.isascii()
    s = decode_secret(line)
    assert s.name == NAME and s.seed == SEED


def test_surrounding_whitespace_is_tolerated():
    assert decode_secret("  " + secret_line() + "\n").seed == SEED


def test_it_carries_the_name_and_seed_with_a_checksum():
    body = b64u_decode(secret_line()[len(PREFIX):])
    n = body[0]
    assert body[1 : 1 + n].decode() == NAME
    assert body[1 + n : 1 + n + 32] == SEED
    assert len(body) == 1 + n + 32 + 4


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from(["user:a", "agent:x:y", "host:" + "h" * 123]))
def test_roundtrip_any_seed(seed, name):
    s = decode_secret(encode_secret(name, seed))
    assert (s.name, s.seed) == (name, seed)


def test_every_truncation_is_an_error_that_does_not_echo_the_secret():
    line = secret_line()
    for cut in range(1, len(line) - len(PREFIX) + 1):
        with pytest.raises(SecretFormatError) as info:
            decode_secret(line[:-cut])
        assert_not_echoed(info.value, line)


def test_extra_characters_are_an_error():
    line = secret_line()
    for extra in ("A", "AAAA", "xyz", line[len(PREFIX):]):
        with pytest.raises(SecretFormatError) as info:
            decode_secret(line + extra)
        assert_not_echoed(info.value, line)


def test_every_single_character_typo_is_an_error_that_does_not_echo_the_secret():
    line = secret_line()
    for i in range(len(PREFIX), len(line)):
        for c in ("A", "z", "_", "0"):
            if line[i] == c:
                continue
            typo = line[:i] + c + line[i + 1 :]
            with pytest.raises(SecretFormatError) as info:
                decode_secret(typo)
            assert_not_echoed(info.value, line)


def test_swapped_adjacent_characters_are_an_error():
    line = secret_line()
    for i in range(len(PREFIX), len(line) - 1):
        if line[i] == line[i + 1]:
            continue
        swapped = line[:i] + line[i + 1] + line[i] + line[i + 2 :]
        with pytest.raises(SecretFormatError):
            decode_secret(swapped)


@pytest.mark.parametrize("text", ["", "hello", "AGENTCTL-SECRET-KEY-2AAAA", "agentctl-secret-key-1" + "A" * 80, "AGENTCTL-SECRET-KEY-1", "AGENTCTL-SECRET-KEY-1!!!!"])
def test_not_a_secret(text):
    with pytest.raises(SecretFormatError) as info:
        decode_secret(text)
    assert "\n" not in info.value.message
    if len(text) > len(PREFIX) + 2:
        assert text[len(PREFIX):] not in info.value.message


def test_a_valid_checksum_over_an_invalid_name_is_refused():
    import hashlib

    from agentctl.encoding import b64u_encode

    raw = b"Agent:X"
    body = bytes([len(raw)]) + raw + SEED
    check = hashlib.sha256(PREFIX.encode() + body).digest()[:4]
    with pytest.raises(SecretFormatError, match="invalid principal name"):
        decode_secret(PREFIX + b64u_encode(body + check))


def test_encode_refuses_bad_input():
    with pytest.raises(SecretFormatError):
        encode_secret("Agent:X", SEED)
    with pytest.raises(SecretFormatError):
        encode_secret(NAME, SEED[:31])


def test_the_value_never_prints_its_seed():
    s = ExportedSecret(NAME, os.urandom(32))
    for shown in (str(s), repr(s), f"{s}", f"{s!r}"):
        assert s.seed.hex() not in shown and repr(s.seed) not in shown
    assert NAME in str(s)


def test_it_is_frozen():
    s = decode_secret(secret_line())
    from dataclasses import FrozenInstanceError

    with pytest.raises(FrozenInstanceError):
        s.seed = b"\0" * 32  # type: ignore[misc]
