"""RFC 8785 (JCS) canonical JSON: agentctl.encoding.canonical_json, the audit log's leaf encoding.

Known answers come from RFC 8785 itself (§3.2.2.2, §3.2.3, §3.2.4, Appendix B) and from the test
data of its reference implementation (github.com/cyberphone/json-canonicalization, testdata/).
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentctl.encoding import EncodingError, canonical_json


def jcs(value: object) -> str:
    return canonical_json(value).decode("utf-8")


# --- property order: UTF-16 code units, not code points, not locale ---------------------------


def test_rfc8785_section_3_2_3_sorting_example():
    # RFC 8785 §3.2.3: the emoji U+1F600 is the surrogate pair D83D DE00 in UTF-16 and sorts
    # before U+FB33, although its code point is larger.
    doc = json.loads(
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    values = list(json.loads(jcs(doc)).values())
    assert values == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]


def test_non_bmp_key_sorts_before_a_high_bmp_key():
    emoji, dalet, last_bmp = "\U0001f600", "\ufb33", "\uffff"
    assert jcs({dalet: 1, emoji: 2}) == '{"\U0001f600":2,"\ufb33":1}'
    assert jcs({last_bmp: 1, emoji: 2}) == '{"\U0001f600":2,"\uffff":1}'
    # ... while code point order (Python's sort_keys) gets it the other way round
    assert json.dumps({dalet: 1, emoji: 2}, sort_keys=True, ensure_ascii=False) == '{"\ufb33": 1, "\U0001f600": 2}'
    # below the surrogate range the two orders agree
    assert jcs({"\ud7ff": 1, emoji: 2}) == '{"\ud7ff":1,"\U0001f600":2}'


def test_reference_weird_json():
    # cyberphone/json-canonicalization testdata/input/weird.json -> output/weird.json
    doc = {
        "\u20ac": "Euro Sign",
        "1": "One",
        "\u0080": "Control\u007f",
        "\U0001f602": "Smiley",
        "\u00f6": "Latin Small Letter O With Diaeresis",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "</script>": "Browser Challenge",
    }
    assert jcs(doc) == (
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\U0001f602":"Smiley",'
        '"\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )


def test_reference_french_json_ignores_locale():
    doc = {"peach": "This sorting order", "péché": "is wrong according to French", "pêche": "but canonicalization MUST", "sin": "ingnore locale"}
    assert jcs(doc) == (
        '{"peach":"This sorting order","péché":"is wrong according to French",'
        '"pêche":"but canonicalization MUST","sin":"ingnore locale"}'
    )


def test_reference_structures_json():
    doc = json.loads('{"1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0}, "10": { }, "": "empty", "a": { }, "111": [ { } ], "A": { }}')
    assert jcs(doc) == '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}'


def test_reference_arrays_json():
    assert jcs(json.loads('[56, {"d": true, "10": null, "1": [ ]}]')) == '[56,{"1":[],"10":null,"d":true}]'


def test_reference_unicode_json_is_not_normalized():
    assert canonical_json({"Unnormalized Unicode": "\u1e0d\u0307"}) == b'{"Unnormalized Unicode":"\xe1\xb8\x8d\xcc\x87"}'


def _utf16_units(key: str) -> tuple[int, ...]:
    raw = key.encode("utf-16-le")
    return struct.unpack(f"<{len(raw) // 2}H", raw)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(st.characters(exclude_categories=("Cs",)), max_size=6), st.integers(-5, 5), max_size=12))
def test_keys_come_out_in_utf16_code_unit_order(doc):
    keys = list(json.loads(jcs(doc)).keys())
    assert keys == sorted(doc, key=_utf16_units)


# --- strings ----------------------------------------------------------------------------------

_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


@pytest.mark.parametrize("code", range(0x20), ids=lambda c: f"U+{c:04X}")
def test_control_characters(code):
    ch = chr(code)
    assert jcs(ch) == '"' + _SHORT.get(ch, f"\\u{code:04x}") + '"'


def test_escapes_and_what_is_left_alone():
    assert jcs('"') == '"\\""'
    assert jcs("\\") == '"\\\\"'
    assert jcs("/") == '"/"'
    assert jcs("\x7f") == '"\x7f"'  # DEL is not a JSON control character
    assert jcs("\u2028\u2029") == '"\u2028\u2029"'
    assert jcs("</script>") == '"</script>"'
    assert jcs("\u001f\u000b") == '"\\u001f\\u000b"'  # lower-case hex


def test_non_ascii_is_emitted_as_utf8():
    assert canonical_json("é") == b'"\xc3\xa9"'
    assert canonical_json("€") == b'"\xe2\x82\xac"'
    assert canonical_json("\U0001f600") == b'"\xf0\x9f\x98\x80"'  # one 4-byte sequence, not \ud83d\ude00
    assert canonical_json({"ключ": "значение"}) == '{"ключ":"значение"}'.encode("utf-8")


def test_rfc8785_section_3_2_2_2_string_example():
    parsed = json.loads('"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/"')
    assert jcs(parsed) == '"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'


def test_rfc8785_section_3_2_4_utf8_bytes():
    parsed = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    assert canonical_json(parsed) == bytes.fromhex(
        """
        7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
        75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
        5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
        65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
        5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
        30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d
        """
    )


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [(0, "0"), (1, "1"), (-1, "-1"), (10, "10"), (1000000, "1000000"), (2**53 - 1, "9007199254740991"), (-(2**53 - 1), "-9007199254740991")],
)
def test_integers(value, text):
    assert jcs(value) == text
    assert jcs([value]) == f"[{text}]"


@pytest.mark.parametrize("value", [2**53, -(2**53), 10**30, -(10**30)])
def test_integers_beyond_ijson_are_refused(value):
    """RFC 8785 numbers are IEEE 754 doubles; agentctl refuses integers a double cannot hold
    exactly rather than rounding them (I-JSON, RFC 7493 §2.2)."""
    with pytest.raises(EncodingError):
        canonical_json(value)


def test_literals_and_booleans_are_not_integers():
    assert jcs([None, True, False, 1, 0]) == "[null,true,false,1,0]"
    assert jcs({"t": True}) == '{"t":true}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(value):
    with pytest.raises(EncodingError):
        canonical_json(value)


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text (the third column marks the
# cases that Python's repr() formats differently from ECMAScript, kept to show what they guard).
APPENDIX_B = [
    ("0000000000000000", "0", False),
    ("8000000000000000", "0", False),
    ("0000000000000001", "5e-324", False),
    ("8000000000000001", "-5e-324", False),
    ("7fefffffffffffff", "1.7976931348623157e+308", False),
    ("ffefffffffffffff", "-1.7976931348623157e+308", False),
    ("4340000000000000", "9007199254740992", True),
    ("c340000000000000", "-9007199254740992", True),
    ("4430000000000000", "295147905179352830000", True),
    ("44b52d02c7e14af5", "9.999999999999997e+22", False),
    ("44b52d02c7e14af6", "1e+23", False),
    ("44b52d02c7e14af7", "1.0000000000000001e+23", False),
    ("444b1ae4d6e2ef4e", "999999999999999700000", True),
    ("444b1ae4d6e2ef4f", "999999999999999900000", True),
    ("444b1ae4d6e2ef50", "1e+21", False),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7", True),
    ("3eb0c6f7a0b5ed8d", "0.000001", True),
    ("41b3de4355555553", "333333333.3333332", False),
    ("41b3de4355555554", "333333333.33333325", False),
    ("41b3de4355555555", "333333333.3333333", False),
    ("41b3de4355555556", "333333333.3333334", False),
    ("41b3de4355555557", "333333333.33333343", False),
    ("becbf647612f3696", "-0.0000033333333333333333", True),
    ("43143ff3c1cb0959", "1424953923781206.2", False),
]


@pytest.mark.parametrize(
    "bits, text",
    [
        pytest.param(b, t, id=f"{b}={t}")
        for b, t, _was_wrong in APPENDIX_B
    ],
)
def test_rfc8785_appendix_b_numbers(bits, text):
    assert jcs(struct.unpack(">d", bytes.fromhex(bits))[0]) == text


def test_integral_floats_in_the_safe_range_print_as_integers():
    assert jcs([1.0, -0.0, 56.0, 4.50, 2e-3, 1e30]) == "[1,0,56,4.5,0.002,1e+30]"


# --- structures -------------------------------------------------------------------------------


def test_nested_structures():
    doc = {
        "z": [3, {"b": [], "a": {}}, [[], [None]]],
        "a": {"y": {"x": {"w": "deep"}}, "b": (1, 2)},
        "m": [],
        "": {},
    }
    assert jcs(doc) == '{"":{},"a":{"b":[1,2],"y":{"x":{"w":"deep"}}},"m":[],"z":[3,{"a":{},"b":[]},[[],[null]]]}'
    assert jcs([]) == "[]" and jcs({}) == "{}"
    assert jcs([[[[[]]]]]) == "[[[[[]]]]]"


def test_array_order_is_kept():
    assert jcs([3, 1, 2, "b", "a"]) == '[3,1,2,"b","a"]'


@pytest.mark.parametrize(
    "value",
    [{1, 2}, b"bytes", object(), {"k": {1, 2}}, [bytearray(b"x")]],
    ids=["set", "bytes", "object", "nested-set", "bytearray"],  # stable: xdist workers must agree on ids
)
def test_values_json_cannot_hold_are_refused(value):
    with pytest.raises(EncodingError):
        canonical_json(value)


def test_non_string_keys_are_refused():
    with pytest.raises(EncodingError):
        canonical_json({1: "one"})


@pytest.mark.parametrize("value", ["\ud800", "a\udc00", {"\ud83d": 1}], ids=repr)
def test_lone_surrogates_are_refused(value):
    with pytest.raises(EncodingError):
        canonical_json(value)


# --- properties -------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(st.characters(exclude_categories=("Cs",)), max_size=6), inner, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_output_is_compact_json_that_parses_back_and_is_a_fixed_point(value):
    out = canonical_json(value)
    parsed = json.loads(out.decode("utf-8"))
    assert parsed == value
    assert canonical_json(parsed) == out
    # no insignificant whitespace: same bytes as Python's compact dump, but for the key order
    assert len(out) == len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


_plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text()),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_plain_values)
def test_the_fast_path_writes_exactly_what_the_reference_does(value):
    """canonical_json hands plain values to json's C encoder; the result must be the RFC 8785 writer's."""
    from agentctl.encoding import _jcs

    out: list[str] = []
    try:
        _jcs(value, out)
        expected = "".join(out).encode("utf-8")
    except EncodingError:
        with pytest.raises(EncodingError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_collected_ids_are_the_same_in_every_process():
    """pytest-xdist needs every worker to collect the same ids: none may hold an address or hash order."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent

    def ids(seed: str) -> list[str]:
        import os

        env = {**os.environ, "PYTHONHASHSEED": seed}
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(tests)],
            capture_output=True, text=True, env=env, cwd=tests.parent, timeout=300,
        )
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        return [line for line in p.stdout.splitlines() if "::" in line]

    first, second = ids("1"), ids("2")
    assert len(first) > 1000
    assert [i for i in first if " at 0x" in i] == []
    assert first == second
