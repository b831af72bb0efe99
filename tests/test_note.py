"""C2SP signed notes and tlog checkpoints: public known answers, round trips, tampering, garbage."""

from __future__ import annotations

import base64

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentctl import crypto, errors, note
from agentctl.note import (
    NoteError,
    checkpoint_body,
    key_id,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
)

# --- known answers from golang.org/x/mod/sumdb/note (note_test.go) -----------------------------

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
PETER_NOTE = TEXT + "\n" + PETER_SIG

PETER_SEED = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]  # PRIVATE+KEY+name+id+base64(0x01 || seed)
PETER_PUB = crypto.public_key(PETER_SEED)
ENOCH_PUB = parse_verifier_key(ENOCH_VKEY)[1]

# --- known answers from a production log: sum.golang.org signed tree heads (checkpoints) ---------
# The verifier key is the default GOSUMDB key built into the go command.

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINTS = [
    (
        "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
        "— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
        65209736,
        "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=",
    ),
    (
        "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
        "— sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n",
        31700353,
        "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=",
    ),
]


def test_go_reference_keys():
    assert key_id("PeterNeumann", PETER_PUB).hex() == "c74f20a3"
    assert verifier_key("PeterNeumann", PETER_PUB) == PETER_VKEY
    assert parse_verifier_key(PETER_VKEY) == ("PeterNeumann", PETER_PUB)
    name, public = parse_verifier_key(ENOCH_VKEY)
    assert name == "EnochRoot" and verifier_key(name, public) == ENOCH_VKEY


def test_go_reference_signature_is_reproduced_byte_for_byte():
    assert sign_note(TEXT, "PeterNeumann", PETER_SEED) == PETER_NOTE
    assert verify_note(PETER_NOTE, "PeterNeumann", PETER_PUB) == TEXT


def test_signatures_by_other_keys_are_ignored_but_each_key_verifies_its_own():
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert verify_note(both, "PeterNeumann", PETER_PUB) == TEXT
    assert verify_note(both, "EnochRoot", ENOCH_PUB) == TEXT
    with pytest.raises(NoteError, match="not signed by"):
        verify_note(TEXT + "\n" + ENOCH_SIG, "PeterNeumann", PETER_PUB)


@pytest.mark.parametrize("signed, size, root_b64", SUMDB_CHECKPOINTS, ids=["65209736", "31700353"])
def test_production_checkpoints_verify_and_parse(signed, size, root_b64):
    name, public = parse_verifier_key(SUMDB_VKEY)
    body = verify_note(signed, name, public)
    assert parse_checkpoint(body) == ("go.sum database tree", size, base64.b64decode(root_b64))
    assert checkpoint_body("go.sum database tree", size, base64.b64decode(root_b64)) == body
    with pytest.raises(NoteError):
        verify_note(signed.replace(str(size), str(size + 1), 1), name, public)


# --- round trips ------------------------------------------------------------------------------

SEED = bytes(range(32))
PUB = crypto.public_key(SEED)
NAME = "host:build-7"
ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def _checkpoint(size=8, root=ROOT, origin="agentctl.audit/build-7/abc123"):
    return sign_note(checkpoint_body(origin, size, root), NAME, SEED)


def test_checkpoint_round_trip():
    body = checkpoint_body("agentctl.audit/build-7/abc123", 8, ROOT)
    assert body == "agentctl.audit/build-7/abc123\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
    signed = sign_note(body, NAME, SEED)
    head, sig_line = signed.split("\n\n")
    assert head + "\n" == body
    kid_and_sig = base64.b64decode(sig_line.split(" ")[2])
    assert sig_line.startswith("— host:build-7 ") and kid_and_sig[:4] == key_id(NAME, PUB) and len(kid_and_sig) == 68
    assert verify_note(signed, NAME, PUB) == body
    assert parse_checkpoint(verify_note(signed, NAME, PUB)) == ("agentctl.audit/build-7/abc123", 8, ROOT)
    assert verify_note(signed.encode("utf-8"), NAME, PUB) == body  # bytes are accepted too


def test_empty_tree_checkpoint():
    import hashlib

    empty = hashlib.sha256(b"").digest()
    body = checkpoint_body("o", 0, empty)
    assert body == "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    assert parse_checkpoint(body) == ("o", 0, empty)


def test_extension_lines_are_kept_in_the_body_and_signed():
    body = checkpoint_body("origin", 3, ROOT, extensions=("ext one", "— two"))
    assert body.endswith("\next one\n— two\n")
    signed = sign_note(body, NAME, SEED)
    assert verify_note(signed, NAME, PUB) == body
    assert parse_checkpoint(body) == ("origin", 3, ROOT)


def test_a_note_text_may_hold_blank_lines():
    for body in ("a\n\nb\n", "a\n\n", "\n", "x\n\n\n\ny\n"):
        assert verify_note(sign_note(body, NAME, SEED), NAME, PUB) == body


def test_non_ascii_text_and_names():
    body = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    for name in ("quasimodo.example/salvatore", "città/é", "agent:code-reviewer:prod"):
        assert verify_note(sign_note(body, name, SEED), name, PUB) == body


# --- tampering --------------------------------------------------------------------------------


def _sig_line(name: str, raw: bytes) -> str:
    return f"— {name} {base64.b64encode(raw).decode()}\n"


_PETER_RAW = base64.b64decode(PETER_SIG.split()[2])
_FLIPPED_SIG = _sig_line("PeterNeumann", _PETER_RAW[:20] + bytes([_PETER_RAW[20] ^ 1]) + _PETER_RAW[21:])

TAMPERED = {
    "body edited": PETER_NOTE.replace("cryptography", "cryptographY"),
    "line added to the body": PETER_NOTE.replace("problem is.\n", "problem is.\nnot\n"),
    "signature edited": TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[64:],
    "signature bit flipped": TEXT + "\n" + _FLIPPED_SIG,
    "signature truncated": TEXT + "\n" + _sig_line("PeterNeumann", _PETER_RAW[:36]),
    "signature extended": TEXT + "\n" + _sig_line("PeterNeumann", _PETER_RAW + b"\x00"),
    "missing final newline": PETER_NOTE[:-1],
    "no blank line": TEXT + PETER_SIG,
    "no signature lines": TEXT + "\n",
    "text only": TEXT,
    "duplicate signature line": TEXT + "\n" + PETER_SIG + PETER_SIG,
    "second different signature by the same key": TEXT + "\n" + PETER_SIG + _FLIPPED_SIG,
    "bad signature first, good one second": TEXT + "\n" + _FLIPPED_SIG + PETER_SIG,
    "garbage line after the signature": PETER_NOTE + "Unexpected line.\n",
    "garbage line before the signature": TEXT + "\nUnexpected line.\n" + PETER_SIG,
    "key name with a space": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
    "key name with a plus": TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann"),
    "no space after the name": TEXT + "\n" + PETER_SIG.replace("PeterNeumann ", "PeterNeumann"),
    "hyphen instead of em dash": TEXT + "\n" + PETER_SIG.replace("—", "-"),
    "no space after the em dash": TEXT + "\n" + PETER_SIG.replace("— ", "—"),
    "unpadded base64": TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),
    "url-safe base64": TEXT + "\n" + ENOCH_SIG.replace("+", "-").replace("/", "_") + PETER_SIG,
    "signature too short for a key ID": TEXT + "\n— EnochRoot AAAA\n" + PETER_SIG,
    "garbage signature line by an unknown key": TEXT + "\n" + PETER_SIG + "— EnochRoot !!!!\n",
    "control character in the text": "\x01" + PETER_NOTE,
    "carriage return line ending": PETER_NOTE.replace("problem,\n", "problem,\r\n"),
    "lone surrogate": "\ud800" + PETER_NOTE,
    "too many signatures": TEXT + "\n" + ENOCH_SIG * 100 + PETER_SIG,
    "trailing blank line": PETER_NOTE + "\n",
}


@pytest.mark.parametrize("text", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_notes_are_refused(text):
    with pytest.raises(NoteError):
        verify_note(text, "PeterNeumann", PETER_PUB)


def test_invalid_utf8_bytes_are_refused():
    with pytest.raises(NoteError, match="UTF-8"):
        verify_note(b"\xff" + PETER_NOTE.encode(), "PeterNeumann", PETER_PUB)


def test_wrong_key_or_name_is_refused():
    other = crypto.public_key(bytes(32))
    with pytest.raises(NoteError, match="not signed by"):
        verify_note(PETER_NOTE, "PeterNeumann", other)  # same name, another key: another key ID
    with pytest.raises(NoteError, match="not signed by"):
        verify_note(PETER_NOTE, "PaulNeumann", PETER_PUB)  # same key, another name


def test_a_line_by_a_key_sharing_name_or_id_is_someone_else():
    """The spec: unknown keys that share a name or an ID (not both) with the known key are ignored."""
    forged_name = "— PeterNeumann " + base64.b64encode(b"\x00\x00\x00\x00" + bytes(64)).decode() + "\n"
    kid = key_id("PeterNeumann", PETER_PUB)
    forged_id = "— Someone " + base64.b64encode(kid + bytes(64)).decode() + "\n"
    assert verify_note(TEXT + "\n" + forged_name + forged_id + PETER_SIG, "PeterNeumann", PETER_PUB) == TEXT


def test_a_size_limit_applies():
    with pytest.raises(NoteError, match="bytes"):
        verify_note("a" * (note.MAX_NOTE_BYTES + 1) + "\n\n" + PETER_SIG, "PeterNeumann", PETER_PUB)
    sixteen = TEXT + "\n" + ENOCH_SIG * 15 + PETER_SIG  # the spec: accept at least 16 signatures
    assert verify_note(sixteen, "PeterNeumann", PETER_PUB) == TEXT


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_character_change_is_refused(data):
    signed = _checkpoint()
    i = data.draw(st.integers(0, len(signed) - 1), label="position")
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="op")
    ch = data.draw(st.sampled_from(list("\n —+=/aA01\x00\t") + [chr(0x2014), "é"]), label="char")
    if op == "replace":
        assume(signed[i] != ch)
        changed = signed[:i] + ch + signed[i + 1 :]
    elif op == "insert":
        changed = signed[:i] + ch + signed[i:]
    else:
        changed = signed[:i] + signed[i + 1 :]
    with pytest.raises(NoteError):
        verify_note(changed, NAME, PUB)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.text(alphabet="\n— abc+=/AZ09", max_size=200)))
def test_random_input_is_refused_cleanly(text):
    with pytest.raises(NoteError):
        verify_note(text, NAME, PUB)


# --- keys and names ---------------------------------------------------------------------------

BAD_NAMES = ["", "a b", "a+b", "a\tb", "a\nb", "a\u00a0b", "a\u2003b", "a\x00b", "\ud800", None, b"name"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_invalid_key_names_are_refused_everywhere(name):
    with pytest.raises(NoteError):
        sign_note(TEXT, name, SEED)
    with pytest.raises(NoteError):
        verify_note(PETER_NOTE, name, PETER_PUB)
    with pytest.raises(NoteError):
        verifier_key(name, PUB)


@pytest.mark.parametrize("public", [bytes(32), b"\x01" + bytes(31), PUB[:31], PUB + b"\x00", "key", None], ids=repr)
def test_unusable_public_keys_are_refused(public):
    with pytest.raises(NoteError):
        verify_note(PETER_NOTE, "PeterNeumann", public)
    with pytest.raises(NoteError):
        verifier_key("name", public)


def test_verifier_key_manglings_are_refused():
    """As golang.org/x/mod/sumdb/note's TestNewVerifier: every proper substring and every
    single-byte increment of a verifier key is refused."""
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    parse_verifier_key(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        with pytest.raises(NoteError):
            parse_verifier_key(PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :])
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong length
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case key ID
        None,
    ):
        with pytest.raises(NoteError):
            parse_verifier_key(bad)


def test_signing_refuses_a_text_that_is_not_a_note_text():
    for body in ("abc", "", "a\r\n", "\x07\n", "\ud800\n", b"bytes\n", None):
        with pytest.raises(NoteError):
            sign_note(body, NAME, SEED)
    with pytest.raises(ValueError):
        sign_note(TEXT, NAME, b"short seed")


# --- checkpoint bodies ------------------------------------------------------------------------

BAD_CHECKPOINTS = {
    "two lines": "origin\n8\n",
    "no final newline": "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
    "empty origin": "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "leading zero": "origin\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "negative size": "origin\n-8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "plus sign": "origin\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "spaces around the size": "origin\n 8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "non-ASCII digits": "origin\n\u0668\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "size over 64 bits": "origin\n18446744073709551616\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "huge size": "origin\n" + "9" * 5000 + "\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "short root": "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQw==\n",
    "unpadded root": "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n",
    "url-safe root": "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg=\n",
    "non-canonical root": "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n",
    "hex root": "origin\n8\n" + ROOT.hex() + "\n",
    "empty extension line": "origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\next\n",
    "a whole signed note": PETER_NOTE,
    "control character": "ori\x1bgin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
    "not text": b"origin\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
}


@pytest.mark.parametrize("text", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_malformed_checkpoints_are_refused(text):
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_the_largest_size_parses():
    body = checkpoint_body("o", 2**64 - 1, ROOT)
    assert parse_checkpoint(body)[1] == 2**64 - 1


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("", 1, ROOT), {}),
        (("a\nb", 1, ROOT), {}),
        (("a\x00", 1, ROOT), {}),
        ((None, 1, ROOT), {}),
        (("o", -1, ROOT), {}),
        (("o", 2**64, ROOT), {}),
        (("o", True, ROOT), {}),
        (("o", "1", ROOT), {}),
        (("o", 1, ROOT[:31]), {}),
        (("o", 1, ROOT.hex()), {}),
        (("o", 1, ROOT), {"extensions": ("",)}),
        (("o", 1, ROOT), {"extensions": ("a\nb",)}),
    ],
    ids=repr,
)
def test_checkpoint_body_refuses_bad_fields(args, kwargs):
    with pytest.raises(NoteError):
        checkpoint_body(*args, **kwargs)


def test_note_error_is_a_value_error_and_a_denial():
    assert issubclass(NoteError, ValueError) and issubclass(NoteError, errors.DeniedError)
    assert NoteError("x").exit_code == errors.EXIT_DENIED


def test_public_api_is_listed():
    for name in note.__all__:
        assert hasattr(note, name), name
