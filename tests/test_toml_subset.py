"""agentctl.toml_subset never gives a value tomllib would not: the files agentctl writes, the TOML in the
docs, hand-picked edge cases and generated documents are read by both and compared (Instants as the
datetimes tomllib gives, and their seconds bit for bit). Every test's leftover TOML files are compared too
(tests/conftest.py). What the subset leaves to tomllib is read by tomllib, errors included."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toml_check import same_as_tomllib

from agentctl import toml_subset
from agentctl.home import NEW_CONFIG

ROOT = Path(__file__).resolve().parent.parent


def test_a_principal_file_reads_without_tomllib_and_gives_seconds(cli, home):
    import subprocess
    import sys

    assert cli("keygen", "agent:a", env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    text = (home / "principals" / "agent+a.toml").read_text()
    same_as_tomllib(text)
    doc = toml_subset.loads(text, instants=True)
    assert isinstance(doc["created"], toml_subset.Instant)
    assert doc["created"].ts == tomllib.loads(text)["created"].timestamp()
    # in a fresh process: neither tomllib nor datetime is loaded to read it
    probe = ("import sys; from agentctl import toml_subset as t; t.loads(open(sys.argv[1]).read(), instants=True); "
             "print(sorted(m for m in ('tomllib', 'datetime', 'string') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe, str(home / "principals" / "agent+a.toml")], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stderr


def test_the_new_home_config_is_in_the_subset():
    same_as_tomllib(NEW_CONFIG)
    assert toml_subset._read(NEW_CONFIG, False) == tomllib.loads(NEW_CONFIG)


def _doc_blocks() -> list[str]:
    blocks = []
    for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks += re.findall(r"```toml\n(.*?)```", f.read_text("utf-8"), re.S)
    return blocks


@pytest.mark.parametrize("text", _doc_blocks())
def test_every_toml_block_in_the_docs(text):
    same_as_tomllib(text)


CASES = [
    "", "\n", "# only a comment\n", "a = 1", "a = 1\r\n", "a = 1\rb = 2\n", "a = -0\n", "a = +1\n", "a = 01\n", "a = 1_000\n",
    "a = 0x1f\n", "a = 1.5\n", "a = 1e3\n", "a = inf\n", "a = nan\n", "a = 99999999999999999999999\n",
    'a = "x"\n', 'a = ""\n', 'a = """x"""\n', "a = 'x'\n", 'a = "x\\ty"\n', 'a = "x\ty"\n', 'a = "x\x01y"\n', 'a = "x\x7fy"\n',
    'a = "ü→"\n', 'a = "x" # c\n', 'a = "x"#c\n', 'a = "x" y\n', 'a = "x\n', 'a = "#"\n', "a = true\n", "a = truex\n",
    "a = false # no\n", "a = True\n", "a = [1, 2,]\n", "a = [ ]\n", "a = []\n", "a = [1 2]\n", "a = [[1]]\n", "a = [1,\n2]\n",
    'a = ["x", 1, true]\n', "a = [,]\n", "a = {x = 1}\n", "a.b = 1\n", '"a" = 1\n', "a = 1\na = 2\n", "a = \n", "= 1\n", "a 1\n",
    "[a]\nx = 1\n[a]\ny = 2\n", "[a]\n[a.b]\n", "[a.b]\n[a]\n", "[a.b]\n[a.c]\n", "a = 1\n[a]\n", "[a]\nb = 1\n[a.b]\n",
    "[[a]]\nx = 1\n[[a]]\nx = 2\n", "[[a]]\n[a.b]\n", "[a]\n[[a]]\n", "[[a]]\n[a]\n", "[ a . b ]\n", "[a] # c\n", "[a] x\n",
    "[]\n", "[a\n", "[[a]\n", "[[a] ]\n", "[a.]\n", "[\"a\"]\n", "[a]]\n", "\ufeffa = 1\n", "# \x01\n", "#\t tab\n",
    "a = 2026-12-02 18:56:50.798523+00:00\n", "a = 2026-12-02T18:56:50Z\n", "a = 2026-12-02t18:56:50z\n",
    "a = 2026-12-02T18:56:50.1234567891+05:30\n", "a = 2026-12-02T18:56:50-23:59\n", "a = 2026-12-02T18:56:50+24:00\n",
    "a = 2026-02-29T00:00:00Z\n", "a = 2024-02-29T00:00:00Z\n", "a = 1900-02-29T00:00:00Z\n", "a = 2000-02-29T00:00:00Z\n",
    "a = 2026-04-31T00:00:00Z\n", "a = 2026-13-01T00:00:00Z\n", "a = 0000-01-01T00:00:00Z\n", "a = 0001-01-01T00:00:00+01:00\n",
    "a = 9999-12-31T23:59:59.999999-01:00\n", "a = 2026-12-02T24:00:00Z\n", "a = 2026-12-02T23:60:00Z\n",
    "a = 2026-12-02T23:59:60Z\n", "a = 2026-12-02T18:56:50\n", "a = 2026-12-02\n", "a = 18:56:50\n", "a = 2026-12-02T18:56:50Zx\n",
    "a = [2026-12-02T18:56:50Z, 1970-01-01T00:00:00.5Z]\n", "a = 1969-12-31T23:59:59.999999Z\n",
]


@pytest.mark.parametrize("text", CASES)
def test_edge_cases(text):
    same_as_tomllib(text)


_KEY = st.text(alphabet="abcxyz-_019AZ", min_size=1, max_size=4)
_STR = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_TIME = st.datetimes(timezones=st.timezones()) if False else st.builds(
    lambda dt, minutes: dt.replace(tzinfo=__import__("datetime").timezone(__import__("datetime").timedelta(minutes=minutes))),
    st.datetimes(), st.integers(-23 * 60 - 59, 23 * 60 + 59))
_SCALAR = st.one_of(_STR, st.integers(-(2**70), 2**70), st.booleans(), _TIME)
_VALUE = st.one_of(_SCALAR, st.lists(_SCALAR, max_size=4))
_TABLE = st.dictionaries(_KEY, _VALUE, max_size=4)
_DOC = st.dictionaries(_KEY, st.one_of(_VALUE, _TABLE, st.lists(_TABLE, min_size=1, max_size=3),
                                       st.dictionaries(_KEY, _TABLE, max_size=2)), max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOC)
def test_what_tomli_w_writes(doc):
    same_as_tomllib(tomli_w.dumps(doc))


_TOKEN = st.sampled_from(["a", "b", "x-1", "[", "]", "[[", "]]", ".", "=", " ", "\t", "\n", "\r\n", "#", '"', "'", ",", "1", "0", "-",
                          "true", "false", "2026-12-02", "T", " ", "18:56:50", ".5", "Z", "+01:00", "\\", "\x01", "ü", "{", "}"])


@settings(max_examples=600, deadline=None)
@given(st.lists(_TOKEN, max_size=30))
def test_token_soup(tokens):
    same_as_tomllib("".join(tokens))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["[a]", "[a.b]", "[b]", "[[a]]", "[[a.b]]", "[a.b.c]", "x = 1", "y = \"s\"", "a = 1", "b = [1]",
                                 "# c", ""]), max_size=10))
def test_table_structure(lines):
    same_as_tomllib("\n".join(lines) + "\n")


def test_a_damaged_principal_file_is_still_the_same_error(cli, home):
    assert cli("keygen", "agent:a", env={"AGENTCTL_KEYSTORE": "file"}).code == 0
    f = home / "principals" / "agent+a.toml"
    f.write_text(f.read_text() + "created = 2026-01-01T00:00:00Z\n")  # a duplicate key: tomllib refuses it
    r = cli("pubkey", "agent:a")
    assert r.code == 3 and "damaged store file" in r.stderr and "invalid TOML" in r.stderr
