"""Principal names (SPEC, "Concepts"): ``KIND:NAME[:QUALIFIER…]``, KIND one of user/agent/service/host,
each segment ``[a-z0-9][a-z0-9._-]*``, 3 to 128 characters, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.errors import UsageError
from agentctl.names import KINDS, check_name, file_stem, is_name, kind_of

VALID = [
    "user:alice",
    "agent:code-reviewer:prod",
    "service:billing",
    "host:build-7",
    "agent:a",
    "agent:0",
    "agent:a.b_c-d",
    "agent:x:y:z:1",
    "agent:" + "a" * 122,  # exactly 128 characters
]

INVALID = [
    ("Agent:x", "kind"),
    ("agent:../x", "segment"),
    ("agent:a..b", "'..'"),
    ("agent:a b", "segment"),
    ("agent:é", "non-ascii"),
    ("agent:" + "a" * 194, "200 characters"),
    ("alice", "no kind"),
    ("", "empty"),
    ("agent:", "empty segment"),
    ("agent:a:", "trailing empty qualifier"),
    ("agent::a", "empty segment"),
    ("agent:-a", "segment starts with -"),
    ("agent:.a", "segment starts with ."),
    ("agent:_a", "segment starts with _"),
    ("agent:A", "upper case"),
    ("agent:a/b", "slash"),
    ("agent:a\\b", "backslash"),
    ("agent:a\n", "trailing newline"),
    ("agent:a\x00", "NUL"),
    ("agent:a\tb", "tab"),
    ("group:a", "unknown kind"),
    ("user", "kind only"),
    (":a", "no kind"),
    ("agent:a+b", "plus (used in file names)"),
    ("agent:a:b c", "space in qualifier"),
    ("agent:ａ", "fullwidth letter"),
    ("agent:" + "a" * 123, "129 characters"),
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_are_accepted(name):
    assert is_name(name)
    assert check_name(name) == name
    assert kind_of(name) in KINDS


@pytest.mark.parametrize("name,why", INVALID, ids=[w for _, w in INVALID])
def test_invalid_names_are_refused_with_a_one_line_message(name, why):
    assert not is_name(name)
    with pytest.raises(UsageError) as info:
        check_name(name)
    e = info.value
    assert e.exit_code == 2
    assert e.message.startswith("bad principal name ")
    assert "\n" not in e.message and e.message.isprintable()
    assert e.hint and "user:alice" in e.hint
    assert e.message == e.message.lower() or "'" in e.message  # lower case, except the quoted input


def test_a_long_name_is_not_echoed_in_full():
    name = "agent:" + "a" * 194
    with pytest.raises(UsageError) as info:
        check_name(name)
    assert name not in info.value.message
    assert "200 characters" in info.value.message


@pytest.mark.parametrize("name", ["agent:a\x1b[31mred", "agent:a\r\nuser:b", "agent:a\u202eb", "agent:a\u200bb"])
def test_control_and_invisible_characters_are_never_echoed(name):
    with pytest.raises(UsageError) as info:
        check_name(name)
    assert info.value.message.isprintable()
    assert name not in info.value.message
    assert "non-ASCII or control characters" in info.value.message


@pytest.mark.parametrize("name", [None, 5, b"agent:a", ["agent:a"]])
def test_non_strings_are_not_names(name):
    assert not is_name(name)


def test_file_stem_is_a_portable_single_path_component():
    assert file_stem("agent:code-reviewer:prod") == "agent+code-reviewer+prod"
    with pytest.raises(UsageError):
        file_stem("agent:../../etc/passwd")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=140))
def test_any_text_is_a_name_exactly_when_check_name_accepts_it(text):
    if is_name(text):
        assert check_name(text) == text
    else:
        with pytest.raises(UsageError) as info:
            check_name(text)
        assert "\n" not in info.value.message


_segment = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KINDS), st.lists(_segment, min_size=1, max_size=4))
def test_every_well_formed_name_is_accepted_and_maps_to_a_safe_file_name(kind, segments):
    name = ":".join([kind, *segments])
    if len(name) > 128 or ".." in name:  # SPEC: no '..' anywhere in a name
        assert not is_name(name)
        return
    assert is_name(name)
    stem = file_stem(name)
    assert "/" not in stem and "\\" not in stem and ":" not in stem
    assert not stem.startswith(".") and stem.isascii() and stem.isprintable()
    assert stem.replace("+", ":") == name  # reversible: the store lists principals from file names
