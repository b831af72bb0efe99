"""agentctl.crypto against public test vectors, RFC 8032 known answers, and passphrase sealing.

The product's rule: a public key enters through ``check_public_key``; signatures are then checked with
``verify``. A signature is *accepted* only when both say yes. agentctl refuses small-order and
non-canonical public keys wherever a key enters (and, more strictly, any key outside the prime-order
subgroup), so for those cases the expected answer is "refused" whatever a bare verify would say.

Vectors are vendored under tests/data (sources and licences in tests/data/README.md); a missing file
fails the run:

* wycheproof/ed25519_test.json   C2SP/wycheproof, Apache-2.0
* ed25519-speccheck/cases.json   novifinancial/ed25519-speccheck, Apache-2.0
* cctv-ed25519/ed25519vectors.json  C2SP/CCTV (BSD-3-Clause, see its LICENSE)
"""

from __future__ import annotations

import json
import re

import pytest

from agentctl import crypto

from conftest import testdata

WYCHEPROOF = testdata("wycheproof", "ed25519_test.json")
SPECCHECK = testdata("ed25519-speccheck", "cases.json")
CCTV = testdata("cctv-ed25519", "ed25519vectors.json")
CCTV_README = testdata("cctv-ed25519", "README.md")

L = 2**252 + 27742317777372353535851937790883648493  # order of the prime-order subgroup
P = 2**255 - 19


def _key_ok(public: bytes) -> bool:
    """check_public_key's answer as a bool; it must return the key unchanged when it accepts it."""
    try:
        out = crypto.check_public_key(public)
    except crypto.InvalidKey:
        return False
    assert out == public
    return True


def _accepted(public: bytes, message: bytes, signature: bytes) -> bool:
    """The product's answer: the key enters through check_public_key, then verify."""
    return _key_ok(public) and crypto.verify(public, message, signature)


def _s(signature: bytes) -> int:
    return int.from_bytes(signature[32:], "little")


# --- a tiny, slow, pure-Python edwards25519 (RFC 8032 section 5.1) to classify points ---------------
# Used only to check that what the vector sets say about their points is what the bytes hold, so the
# per-case expectations below rest on the data and not only on prose.

_D = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)
_IDENTITY = (0, 1, 1, 0)


def _add(p1, p2):
    a = (p1[1] - p1[0]) * (p2[1] - p2[0]) % P
    b = (p1[1] + p1[0]) * (p2[1] + p2[0]) % P
    c = 2 * p1[3] * p2[3] * _D % P
    d = 2 * p1[2] * p2[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k: int, pt):
    q = _IDENTITY
    while k:
        if k & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        k >>= 1
    return q


def _is_identity(pt) -> bool:
    return pt[0] % P == 0 and (pt[1] - pt[2]) % P == 0


def _decode(encoded: bytes):
    """(point, canonical) for an encoding of a curve point, or None when it is not on the curve.

    Decodes leniently (y reduced mod p, "-0" allowed) so that non-canonical encodings can be
    classified too; ``canonical`` says whether the bytes are the point's one canonical encoding.
    """
    raw = int.from_bytes(encoded, "little")
    sign, y_raw = raw >> 255, raw & ((1 << 255) - 1)
    y = y_raw % P
    x2 = (y * y - 1) * pow(_D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    canonical = y_raw < P and not (x == 0 and sign)
    if x & 1 != sign:
        x = P - x if x else 0
    return (x, y, 1, x * y % P), canonical


def _classify(encoded: bytes) -> str:
    """'off-curve', 'small' (order divides 8), 'mixed' (torsion and prime-order parts) or 'prime'."""
    decoded = _decode(encoded)
    if decoded is None:
        return "off-curve"
    pt, _ = decoded
    if _is_identity(_mul(8, pt)):
        return "small"
    return "prime" if _is_identity(_mul(L, pt)) else "mixed"


def _canonical(encoded: bytes) -> bool:
    decoded = _decode(encoded)
    return decoded is not None and decoded[1]


# --- Wycheproof -------------------------------------------------------------------------------------


def _wycheproof_params():
    data = json.loads(WYCHEPROOF.read_text())
    out = []
    for group in data["testGroups"]:
        public = bytes.fromhex(group["publicKey"]["pk"])
        for t in group["tests"]:
            what = t["comment"] or ",".join(t["flags"]) or "plain"
            slug = re.sub(r"[^A-Za-z0-9]+", "-", what).strip("-").lower()[:48]
            case = (public, bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]), t["result"], t["flags"])
            out.append(pytest.param(case, id=f"tc{t['tcId']:03d}-{t['result']}-{slug}"))
    return out


def test_wycheproof_file_is_complete():
    data = json.loads(WYCHEPROOF.read_text())
    tests = [t for g in data["testGroups"] for t in g["tests"]]
    assert len(tests) == data["numberOfTests"] == 151
    assert {t["result"] for t in tests} <= {"valid", "invalid"}  # no "acceptable" case to interpret


@pytest.mark.parametrize("case", _wycheproof_params())
def test_wycheproof(case):
    public, message, signature, result, flags = case
    assert result in ("valid", "invalid"), f"unexpected result {result!r}"
    if result == "valid":
        # A valid case's key must enter (a refusal here would be a bug in check_public_key), and its
        # signature must verify.
        assert _key_ok(public), "check_public_key refused a key of a valid Wycheproof case"
        assert crypto.verify(public, message, signature)
    else:
        assert not _accepted(public, message, signature), f"accepted an invalid signature ({flags})"


# --- ed25519-speccheck ------------------------------------------------------------------------------
# cases.json carries no descriptions; these come from the project's README and from section 5.1 of
# "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko; eprint 2020/1244), which the cases follow:
# 0-3 pass both cofactored and cofactorless verification, 0-2 with small A, R or both, 3 with mixed-
# order A and R; 4 passes cofactored only; 5 passes cofactored only without scalar pre-reduction;
# 6-7 have S >= L; 8-9 a non-canonical small-order R; 10-11 a non-canonical small-order A.
#
# Each row: (A kind, R kind, S kind, key passes check_public_key, bare verify, why).
# "small" = order divides 8, "mixed" = a torsion component and a prime-order one, "prime" = in the
# prime-order subgroup; "nc-small" = a non-canonical encoding of a small-order point.

SPECCHECK_CASES = {
    0: ("small", "small", "zero", False, False,
        "S = 0, small-order A and R: key refused (small order); libsodium refuses small A and R"),
    1: ("small", "mixed", "<L", False, False,
        "small-order A, mixed R: key refused (small order); libsodium refuses small-order A"),
    2: ("mixed", "small", "<L", False, False,
        "mixed-order A, small R: key refused (not in the prime-order subgroup); libsodium refuses "
        "small-order R"),
    3: ("mixed", "mixed", "<L", False, True,
        "mixed A and R, valid cofactorless: bare libsodium verify accepts (it only refuses small "
        "order), but the key is refused at entry, so agentctl refuses"),
    4: ("mixed", "mixed", "<L", False, False,
        "valid only with the cofactored equation: cofactorless libsodium refuses; key refused too"),
    5: ("mixed", "prime", "<L", False, False,
        "valid only cofactored without pre-reduction: cofactorless libsodium refuses; key refused"),
    6: ("prime", "prime", ">=L", True, False, "S > L: non-canonical S, refused by verify"),
    7: ("prime", "prime", ">=L", True, False, "S >> L: non-canonical S, refused by verify"),
    8: ("mixed", "nc-small", "<L", False, False,
        "non-canonical small-order R (valid if R is reduced before hashing): refused by verify; "
        "key refused (mixed order)"),
    9: ("mixed", "nc-small", "<L", False, False,
        "non-canonical small-order R (valid if R is hashed as given): refused by verify; key refused"),
    10: ("nc-small", "mixed", "<L", False, False,
         "non-canonical small-order A: refused by check_public_key and by libsodium"),
    11: ("nc-small", "mixed", "<L", False, False,
         "non-canonical small-order A (other hashing of A): refused by check_public_key and libsodium"),
}


def _speccheck_params():
    out = []
    for i, c in enumerate(json.loads(SPECCHECK.read_text())):
        a_kind, r_kind, s_kind = SPECCHECK_CASES[i][:3]
        case = (i, bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]), bytes.fromhex(c["signature"]))
        out.append(pytest.param(case, id=f"case{i:02d}-A_{a_kind}-R_{r_kind}-S{s_kind}"))
    return out


def _kind(encoded: bytes) -> str:
    kind = _classify(encoded)
    return kind if _canonical(encoded) else f"nc-{kind}"


def test_speccheck_file_has_the_documented_cases():
    assert len(json.loads(SPECCHECK.read_text())) == len(SPECCHECK_CASES) == 12


@pytest.mark.parametrize("case", _speccheck_params())
def test_speccheck(case):
    i, public, message, signature = case
    a_kind, r_kind, s_kind, key_ok, bare_verify, why = SPECCHECK_CASES[i]
    # The description matches the bytes.
    assert _kind(public) == a_kind
    assert _kind(signature[:32]) == r_kind
    assert {"zero": _s(signature) == 0, "<L": 0 < _s(signature) < L, ">=L": _s(signature) >= L}[s_kind]
    # agentctl's answers.
    assert _key_ok(public) is key_ok, why
    assert crypto.verify(public, message, signature) is bare_verify, why
    if a_kind in ("small", "nc-small"):
        assert not key_ok  # small-order and non-canonical keys never enter
    if r_kind in ("small", "nc-small") or s_kind == ">=L":
        assert not bare_verify  # small-order or non-canonical R, or S >= L: verify refuses
    assert _accepted(public, message, signature) is False  # no speccheck case is acceptable to agentctl


# --- CCTV ed25519vectors ----------------------------------------------------------------------------
# Expectations from each vector's flags (see cctv-ed25519/README.md):
#
# check_public_key refuses A when
#   low_order_A / non_canonical_A: the contract (small-order or non-canonical keys never enter);
#   low_order_component_A: a mixed-order point, not of small order but outside the prime-order
#     subgroup; check_public_key (crypto_core_ed25519_is_valid_point) refuses it as documented.
#
# bare verify (libsodium, cofactorless and strict) refuses when
#   low_order_A / non_canonical_A: libsodium refuses small-order A (all non-canonical encodings are of
#     small-order points);
#   low_order_R / non_canonical_R: libsodium refuses small-order R, and a non-canonical R can never
#     equal the canonical encoding libsodium recomputes;
#   low_order_residue: the torsion parts of R and [k]A do not cancel, so the cofactorless equation
#     [S]B = R + [k]A fails (only cofactored [8][S]B = [8]R + [8][k]A would hold);
# and accepts the rest (low_order_component_A/R without a residue satisfy the cofactorless equation;
# libsodium does not check subgroup membership in verify, which is why keys are checked at entry).
# reencoded_k only ever comes with a non-canonical A or R, so it is refused through those flags.

_KEY_REFUSING = {"low_order_A", "non_canonical_A", "low_order_component_A"}
_VERIFY_REFUSING = {"low_order_A", "non_canonical_A", "low_order_R", "non_canonical_R", "low_order_residue"}
_SHORT = {
    "low_order_A": "loA", "low_order_R": "loR", "non_canonical_A": "ncA", "non_canonical_R": "ncR",
    "low_order_component_A": "lcA", "low_order_component_R": "lcR", "low_order_residue": "residue",
    "reencoded_k": "rek",
}


def _cctv_params():
    """One test per combination of flags (~70), each over all its vectors: 914 tests would cost more in
    pytest's per-test overhead than in the checks themselves. A failure names the vector numbers."""
    groups: dict[frozenset, list] = {}
    for v in json.loads(CCTV.read_text()):
        flags = frozenset(v["flags"] or ())
        groups.setdefault(flags, []).append(
            (v["number"], bytes.fromhex(v["key"]), v["msg"].encode(), bytes.fromhex(v["sig"]))
        )
    out = []
    for flags, vectors in sorted(groups.items(), key=lambda kv: kv[1][0][0]):
        tag = "+".join(_SHORT.get(f, f) for f in sorted(flags)) or "plain"
        out.append(pytest.param((flags, vectors), id=f"{tag}-x{len(vectors)}"))
    return out


@pytest.mark.parametrize("case", _cctv_params())
def test_cctv(case):
    flags, vectors = case
    key_ok = not (flags & _KEY_REFUSING)
    bare_verify = not (flags & _VERIFY_REFUSING)
    wrong = []
    for number, public, message, signature in vectors:
        assert _s(signature) < L  # the set varies points only
        got = (_key_ok(public), crypto.verify(public, message, signature))
        if got != (key_ok, bare_verify):
            wrong.append((number, got))
    assert not wrong, f"expected (check_public_key, verify) = {(key_ok, bare_verify)}; (vector, got): {wrong}"
    # Restated from the brief: small-order or non-canonical keys never enter; small-order or
    # non-canonical R never verifies; only a vector passing both is accepted.
    if flags & {"low_order_A", "non_canonical_A"}:
        assert not key_ok
    if flags & {"low_order_R", "non_canonical_R"}:
        assert not bare_verify
    assert all(_accepted(*v[1:]) is (key_ok and bare_verify) for v in vectors)


def test_cctv_only_the_plain_vector_is_accepted():
    accepted = [
        v["number"] for v in json.loads(CCTV.read_text())
        if _accepted(bytes.fromhex(v["key"]), v["msg"].encode(), bytes.fromhex(v["sig"]))
    ]
    assert len(accepted) == 1
    assert not json.loads(CCTV.read_text())[accepted[0]]["flags"]


def _low_order_encodings() -> list[bytes]:
    """The 14 encodings of low-order points listed in the CCTV README."""
    text = CCTV_README.read_text()
    return [bytes.fromhex(h) for h in re.findall(r"^\s*([0-9a-f]{64})\b", text, re.M)]


def test_every_low_order_encoding_is_refused():
    encodings = _low_order_encodings()
    assert len(encodings) == 14
    for enc in encodings:
        assert _classify(enc) == "small"
        with pytest.raises(crypto.InvalidKey):
            crypto.check_public_key(enc)


# --- keys and verify outside the vector sets --------------------------------------------------------


def _off_curve_encodings(n: int) -> list[bytes]:
    out, y = [], 2
    while len(out) < n:
        enc = y.to_bytes(32, "little")
        if _decode(enc) is None:
            out.append(enc)
        y += 1
    return out


@pytest.mark.parametrize("sign_bit", [0, 1], ids=["x+", "x-"])
def test_off_curve_keys_are_refused(sign_bit):
    for enc in _off_curve_encodings(4):
        enc = enc[:31] + bytes([enc[31] | (sign_bit << 7)])
        with pytest.raises(crypto.InvalidKey):
            crypto.check_public_key(enc)


@pytest.mark.parametrize(
    "public",
    [b"", b"\x01" * 31, b"\x01" * 33, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", None,
     32],
    ids=["empty", "31-bytes", "33-bytes", "hex-str", "none", "int"],
)
def test_malformed_keys_are_refused(public):
    with pytest.raises(crypto.InvalidKey):
        crypto.check_public_key(public)


def test_verify_never_raises():
    seed = bytes(range(32))
    public, sig = crypto.public_key(seed), crypto.sign(seed, b"m")
    assert crypto.verify(public, b"m", sig)
    assert crypto.verify(bytearray(public), memoryview(b"m"), bytearray(sig))
    for args in [
        (None, b"m", sig), (public, None, sig), (public, b"m", None), (public, "m", sig), (32, b"m", 64),
        (public[:31], b"m", sig), (public, b"m", sig[:63]), (public, b"m", sig + b"\0"), (b"", b"", b""),
        (b"\xff" * 32, b"m", sig), (public, b"m", sig[:32] + L.to_bytes(32, "little")),
    ]:
        assert crypto.verify(*args) is False


# --- RFC 8032 section 7.1, TEST 1-3 -----------------------------------------------------------------

RFC8032 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST1-empty",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST2-1-byte",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="TEST3-2-bytes",
    ),
]


@pytest.mark.parametrize("seed_hex, public_hex, message_hex, signature_hex", RFC8032)
def test_rfc8032_known_answers(seed_hex, public_hex, message_hex, signature_hex):
    seed, public = bytes.fromhex(seed_hex), bytes.fromhex(public_hex)
    message, signature = bytes.fromhex(message_hex), bytes.fromhex(signature_hex)
    assert crypto.public_key(seed) == public
    assert crypto.sign(seed, message) == signature  # Ed25519 signing is deterministic
    assert crypto.check_public_key(public) == public
    assert crypto.verify(public, message, signature)
    assert not crypto.verify(public, message + b"\0", signature)
    for i in (0, 31, 32, 63):
        altered = bytearray(signature)
        altered[i] ^= 0x01
        assert not crypto.verify(public, message, bytes(altered))


@pytest.mark.parametrize("seed", [b"", b"\0" * 31, b"\0" * 33], ids=["empty", "31", "33"])
def test_seed_must_be_32_bytes(seed):
    with pytest.raises(ValueError):
        crypto.public_key(seed)
    with pytest.raises(ValueError):
        crypto.sign(seed, b"m")


# --- seal / unseal ----------------------------------------------------------------------------------

PASS = b"correct horse battery staple"
SECRET = b"AGENTCTL-SECRET-KEY-1 example"


@pytest.fixture
def cheap_params(monkeypatch):
    """Argon2id at libsodium's minimum cost (1 pass, 8 KiB), so the file stays fast."""
    monkeypatch.setattr(crypto.SealParams, "OPSLIMIT", 1)
    monkeypatch.setattr(crypto.SealParams, "MEMLIMIT", 8192)


def test_seal_roundtrip_with_default_parameters():
    sealed = crypto.seal(PASS, SECRET)
    assert sealed["kdf"] == "argon2id"
    assert sealed["opslimit"] == crypto.SealParams.OPSLIMIT
    assert sealed["memlimit"] == crypto.SealParams.MEMLIMIT
    assert len(sealed["salt"]) == crypto.SealParams.SALT_BYTES
    assert len(sealed["nonce"]) == crypto.SealParams.NONCE_BYTES
    assert SECRET not in sealed["ciphertext"]
    assert crypto.unseal(PASS, sealed) == SECRET


def test_seal_is_randomized(cheap_params):
    a, b = crypto.seal(PASS, SECRET), crypto.seal(PASS, SECRET)
    assert a["salt"] != b["salt"] and a["nonce"] != b["nonce"] and a["ciphertext"] != b["ciphertext"]
    assert crypto.unseal(PASS, a) == crypto.unseal(PASS, b) == SECRET


def test_roundtrip_of_empty_and_binary_plaintexts(cheap_params):
    for plaintext in (b"", bytes(range(256))):
        assert crypto.unseal(PASS, crypto.seal(PASS, plaintext)) == plaintext


@pytest.mark.parametrize("wrong", [b"", b"correct horse battery stapl", PASS + b" ", PASS.upper()],
                         ids=["empty", "shorter", "longer", "case"])
def test_wrong_passphrase(cheap_params, wrong):
    assert crypto.unseal(wrong, crypto.seal(PASS, SECRET)) is None


def _flip(data: bytes, i: int) -> bytes:
    altered = bytearray(data)
    altered[i] ^= 0x01
    return bytes(altered)


@pytest.mark.parametrize("field", ["ciphertext", "salt", "nonce"])
@pytest.mark.parametrize("where", [0, -1], ids=["first-byte", "last-byte"])
def test_altered_field(cheap_params, field, where):
    sealed = crypto.seal(PASS, SECRET)
    sealed[field] = _flip(sealed[field], where)
    assert crypto.unseal(PASS, sealed) is None


@pytest.mark.parametrize(
    "change",
    [
        {"ciphertext": b""}, {"ciphertext": b"\0" * 15}, {"salt": b"\0" * 15}, {"salt": b"\0" * 17},
        {"nonce": b"\0" * 23}, {"nonce": b""}, {"salt": "not bytes"}, {"kdf": "scrypt"}, {"kdf": None},
        {"opslimit": "two"}, {"opslimit": None}, {"memlimit": 1.5e9}, {"opslimit": True},
    ],
    ids=lambda c: "-".join(f"{k}={v!r}"[:24] for k, v in c.items()),
)
def test_damaged_file(cheap_params, change):
    sealed = crypto.seal(PASS, SECRET)
    sealed.update(change)
    assert crypto.unseal(PASS, sealed) is None


@pytest.mark.parametrize("missing", ["kdf", "opslimit", "memlimit", "salt", "nonce", "ciphertext"])
def test_missing_field(cheap_params, missing):
    sealed = crypto.seal(PASS, SECRET)
    del sealed[missing]
    assert crypto.unseal(PASS, sealed) is None


def test_unseal_of_a_non_dict():
    for value in (None, [], "sealed", b"sealed"):
        assert crypto.unseal(PASS, value) is None


@pytest.mark.parametrize(
    "opslimit, memlimit",
    [
        (2**32 - 1, 8192), (10**12, 2**16), (64, 2**16), (5, 2**16),  # too many passes
        (1, 4 * 1024**3), (1, 2**42), (1, 2**62), (1, 2**30 + 1024),  # too much memory
        (64, 4 * 1024**3), (2**32 - 1, 2**42),  # both
        (0, 8192), (-1, 8192), (1, 0), (1, 8191), (1, -(2**40)),  # below libsodium's minimum
    ],
)
def test_absurd_cost_is_refused_before_any_key_derivation(monkeypatch, opslimit, memlimit):
    sealed = {
        "kdf": "argon2id", "opslimit": opslimit, "memlimit": memlimit,
        "salt": b"\0" * crypto.SealParams.SALT_BYTES, "nonce": b"\0" * crypto.SealParams.NONCE_BYTES,
        "ciphertext": b"\0" * 48,
    }

    def no_kdf(*_args):  # Argon2id would allocate memlimit bytes and take opslimit passes over them
        raise AssertionError("unseal derived a key for an absurd cost")

    monkeypatch.setattr(crypto, "_kdf", no_kdf)
    assert crypto.unseal(PASS, sealed) is None


def test_absurd_cost_in_an_altered_file_fails_quickly(cheap_params, monkeypatch):
    # The same, through a real sealed file whose parameters were raised by someone else: refused
    # before any key is derived (no test times anything; the spy proves the KDF never ran).
    sealed = crypto.seal(PASS, SECRET)

    def no_kdf(*_args):
        raise AssertionError("unseal derived a key for an absurd cost")

    monkeypatch.setattr(crypto, "_kdf", no_kdf)
    for ops, mem in ((2**32 - 1, 8192), (1, 2**42), (64, 4 * 1024**3)):
        assert crypto.unseal(PASS, dict(sealed, opslimit=ops, memlimit=mem)) is None


def test_parameters_written_by_seal_are_within_the_bound(monkeypatch):
    # seal() must never write a file that unseal() then refuses as too costly.
    calls = []

    def record(passphrase, salt, ops, mem):
        calls.append((ops, mem))
        return b"\0" * 32

    monkeypatch.setattr(crypto, "_kdf", record)
    sealed = {
        "kdf": "argon2id", "opslimit": crypto.SealParams.OPSLIMIT, "memlimit": crypto.SealParams.MEMLIMIT,
        "salt": b"\0" * crypto.SealParams.SALT_BYTES, "nonce": b"\0" * crypto.SealParams.NONCE_BYTES,
        "ciphertext": b"\0" * 48,
    }
    assert crypto.unseal(PASS, sealed) is None  # the key is wrong, but it was derived at that cost
    assert calls == [(crypto.SealParams.OPSLIMIT, crypto.SealParams.MEMLIMIT)]


def test_passphrase_must_be_bytes(cheap_params):
    sealed = crypto.seal(PASS, SECRET)
    with pytest.raises(TypeError):
        crypto.unseal(PASS.decode(), sealed)


# --- the vectors travel with the tests ----------------------------------------------------------------


def test_every_vector_set_is_vendored_with_its_licence_and_named_in_the_readme():
    from conftest import TESTDATA

    readme = (TESTDATA / "README.md").read_text()
    sets = sorted(p.name for p in TESTDATA.iterdir() if p.is_dir())
    assert sets == ["cctv-ed25519", "ed25519-speccheck", "merkle", "wycheproof"]
    for name in sets:
        assert (TESTDATA / name / "LICENSE").stat().st_size > 500, name
        assert f"`{name}/`" in readme, name
    import hashlib

    for rel, digest in re.findall(r"\| `([\w./-]+\.json)` \| `([0-9a-f]{64})` \|", readme):
        assert hashlib.sha256((TESTDATA / rel).read_bytes()).hexdigest() == digest, rel


def test_no_test_reads_data_from_outside_the_project():
    from conftest import TESTS

    outside = ("/".join(("..", "shared")), "/".join(("shared", "testdata")), " / ".join(('"shared"', '"testdata"')))
    for path in TESTS.glob("*.py"):
        text = path.read_text()
        assert not [o for o in outside if o in text], path.name
