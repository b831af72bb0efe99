"""RFC 6962 Merkle trees: transparency-dev vectors, a reference implementation, properties, garbage."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentctl import errors, merkle
from agentctl.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_at,
    verify_consistency,
    verify_inclusion,
)

from conftest import testdata

DATA = testdata("merkle")


# --- transparency-dev/merkle testdata ---------------------------------------------------------
#
# Each file is one probe: JSON with base64 hashes (Go's []byte; null for nil), integer sizes and
# "wantErr". inclusion/ and consistency/ are RFC 6962 proofs and run as they are.
#
# subtreeinclusion/ and subtreeconsistency/ come from the Merkle Tree Certificates draft
# (draft-ietf-plants-merkle-tree-certs §4): a subtree [start, end) is valid when start is a multiple
# of the smallest power of two >= end - start.
# - Subtree inclusion fits RFC 6962: inside a valid subtree, it is exactly an RFC 6962 inclusion
#   proof of leaf (index - start) in a tree of (end - start) leaves. The subtree-validity rule
#   lives in the adapter below; every probe runs.
# - Subtree consistency with start == 0 and end > 0 is RFC 6962 consistency from size `end` to
#   size `size`; those probes run through verify_consistency, and invalid subtrees are refused by
#   the adapter. The others do not fit RFC 6962 and are skipped: a valid subtree with start > 0 is
#   not a prefix of the log (an MTC construct with its own algorithm; none in the data today), and
#   an empty subtree (start == end) is an MTC convention that those vectors accept whatever the
#   tree root is, while RFC 6962 has no proof from an empty tree. The audit log needs neither.


def _files(kind: str) -> list[Path]:
    return sorted(testdata("merkle", kind).rglob("*.json"))


def _id(path: Path) -> str:
    return path.relative_to(DATA).with_suffix("").as_posix()


def _b64(value: str | None) -> bytes:
    return b"" if value is None else base64.b64decode(value)


def _hashes(value: list | None) -> list[bytes]:
    return [] if value is None else [base64.b64decode(h) for h in value]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _outcome(fn, *args) -> bool:
    """True when ``fn`` raised ProofError (and nothing else), False when it returned None."""
    try:
        result = fn(*args)
    except ProofError:
        return True
    assert result is None
    return False


def _params(kind: str, skip=None) -> list:
    out = []
    for path in _files(kind):
        reason = skip(_load(path)) if skip else None
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(path, id=_id(path), marks=marks))
    return out


def test_the_vectors_are_there():
    counts = {kind: len(_files(kind)) for kind in ("inclusion", "consistency", "subtreeinclusion", "subtreeconsistency")}
    assert counts["inclusion"] >= 98 and counts["consistency"] >= 98, counts
    assert counts["subtreeinclusion"] >= 200 and counts["subtreeconsistency"] >= 100, counts


@pytest.mark.parametrize("path", _params("inclusion"))
def test_inclusion_vector(path):
    v = _load(path)
    got_err = _outcome(
        verify_inclusion, _b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _hashes(v["proof"]), _b64(v["root"])
    )
    assert got_err == v["wantErr"], v["desc"]


@pytest.mark.parametrize("path", _params("consistency"))
def test_consistency_vector(path):
    v = _load(path)
    got_err = _outcome(
        verify_consistency, v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _hashes(v["proof"])
    )
    assert got_err == v["wantErr"], v["desc"]


def _valid_subtree(start: int, end: int) -> bool:
    """MTC draft §4.1: start < end, and start is a multiple of BIT_CEIL(end - start)."""
    return 0 <= start < end and start % (1 << (end - start - 1).bit_length()) == 0


def _verify_subtree_inclusion(leaf: bytes, index: int, start: int, end: int, proof: list, subtree_root: bytes):
    if not _valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a valid subtree")
    if not start <= index < end:
        raise ProofError(f"leaf {index} is not in the subtree [{start}, {end})")
    verify_inclusion(leaf, index - start, end - start, proof, subtree_root)


@pytest.mark.parametrize("path", _params("subtreeinclusion"))
def test_subtree_inclusion_vector(path):
    v = _load(path)
    got_err = _outcome(
        _verify_subtree_inclusion,
        _b64(v["leafHash"]), v["leafIdx"], v["start"], v["end"], _hashes(v["proof"]), _b64(v["root"]),
    )
    assert got_err == v["wantErr"], v["desc"]


def _not_rfc6962(v: dict) -> str | None:
    if v["start"] == v["end"]:
        return "empty subtree: an MTC convention (valid with any tree root); RFC 6962 has no proof from an empty tree"
    if v["start"] != 0 and _valid_subtree(v["start"], v["end"]):
        return "subtree not at the start of the log: MTC subtree consistency, not RFC 6962"
    return None


def _verify_subtree_consistency(start: int, end: int, size: int, subtree_root: bytes, tree_root: bytes, proof: list):
    if not _valid_subtree(start, end):
        raise ProofError(f"[{start}, {end}) is not a valid subtree")
    assert start == 0  # the others are skipped
    verify_consistency(end, size, subtree_root, tree_root, proof)


@pytest.mark.parametrize("path", _params("subtreeconsistency", skip=_not_rfc6962))
def test_subtree_consistency_vector(path):
    v = _load(path)
    got_err = _outcome(
        _verify_subtree_consistency,
        v["start"], v["end"], v["size"], _b64(v["root1"]), _b64(v["root2"]), _hashes(v["proof"]),
    )
    assert got_err == v["wantErr"], v["desc"]


# --- an independent reference: RFC 6962 §2.1 definitions, recursively --------------------------


def _ref_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # largest power of two smaller than n
    return hashlib.sha256(b"\x01" + _ref_mth(leaves[:k]) + _ref_mth(leaves[k:])).digest()


def _ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return _ref_path(m, leaves[:k]) + [_ref_mth(leaves[k:])]
    return _ref_path(m - k, leaves[k:]) + [_ref_mth(leaves[:k])]


def _ref_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_ref_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return _ref_subproof(m, leaves[:k], complete) + [_ref_mth(leaves[k:])]
    return _ref_subproof(m - k, leaves[k:], False) + [_ref_mth(leaves[:k])]


N = 300
LEAVES = [leaf_hash(b"entry %d" % i) for i in range(N)]
TREE = MemoryTree(LEAVES)


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


# --- hashing and roots ------------------------------------------------------------------------


def test_hashes_are_rfc6962():
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert root([]) == EMPTY_ROOT
    assert root([a]) == a
    with pytest.raises(ValueError):
        node_hash(a, b[:31])


# The eight leaves and roots of the RFC 6962 test tree used by Certificate Transparency and
# transparency-dev/merkle (proof/verify_test.go).
_CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
_CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_known_roots_of_the_ct_test_tree():
    hashes = [leaf_hash(bytes.fromhex(d)) for d in _CT_LEAVES]
    cr, tree = CompactRange(), MemoryTree()
    for i, h in enumerate(hashes):
        cr.append(h)
        tree.append(h)
        assert cr.root().hex() == _CT_ROOTS[i]
        assert root(hashes[: i + 1]).hex() == _CT_ROOTS[i]
        assert tree.root().hex() == _CT_ROOTS[i]
    # and a known proof: leaf index 5 of 8 (verify_test.go's {6, 8} vector counts leaves from 1)
    assert [h.hex() for h in tree.inclusion_proof(5, 8)] == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]


def test_compact_range_root_equals_root_at_every_size():
    cr = CompactRange()
    assert cr.root() == root([]) == TREE.root(0) == EMPTY_ROOT
    for i, h in enumerate(LEAVES):
        created = cr.append(h)
        size = i + 1
        assert created[0] == (0, i, h)
        assert len(created) == 1 + (size & -size).bit_length() - 1  # one per level the leaf closed
        assert cr.size == size and len(cr.hashes) == size.bit_count()
        assert cr.root() == root(LEAVES[:size]) == TREE.root(size) == _ref_mth(LEAVES[:size])
        assert CompactRange.from_nodes(size, TREE.get_node) == cr


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=N))
def test_compact_range_matches_the_reference_for_any_entries(entries):
    hashes = [leaf_hash(e) for e in entries]
    cr = CompactRange()
    for h in hashes:
        cr.append(h)
    assert cr.root() == root(hashes) == _ref_mth(hashes) == MemoryTree(hashes).root()


def test_compact_range_serialises():
    cr = CompactRange()
    assert CompactRange.from_bytes(cr.to_bytes()) == cr
    for size, h in enumerate(LEAVES[:77], 1):
        cr.append(h)
        data = cr.to_bytes()
        assert data[:8] == size.to_bytes(8, "big") and len(data) == 8 + 32 * size.bit_count()
        back = CompactRange.from_bytes(data)
        assert back == cr and back.root() == cr.root()
    back.append(LEAVES[77])  # a parsed range keeps growing
    cr.append(LEAVES[77])
    assert back == cr


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 7, (3).to_bytes(8, "big") + b"\x00" * 32, (1).to_bytes(8, "big"), (0).to_bytes(8, "big") + b"x", "text"],
)
def test_damaged_compact_range_is_refused(data):
    with pytest.raises(ValueError, match="damaged compact range"):
        CompactRange.from_bytes(data)


def test_builders_refuse_bad_hashes():
    with pytest.raises(ValueError):
        CompactRange().append(b"short")
    with pytest.raises(ValueError):
        root([b"x" * 33])
    with pytest.raises(ValueError):
        MemoryTree().append("not bytes")


# --- proofs from a node store -----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_proofs_verify_and_any_change_fails(data):
    size = data.draw(st.integers(1, N), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf, top = LEAVES[index], TREE.root(size)
    proof = TREE.inclusion_proof(index, size)
    assert proof == _ref_path(index, LEAVES[:size])
    verify_inclusion(leaf, index, size, proof, top)

    for j in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label="bit")
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof[:j] + [_flip(proof[j], bit)] + proof[j + 1 :], top)
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof[:-1], top)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof + [top], top)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, [leaf] + proof, top)
    with pytest.raises(ProofError):
        verify_inclusion(_flip(leaf, data.draw(st.integers(0, 255))), index, size, proof, top)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, _flip(top, data.draw(st.integers(0, 255))))

    other_index = data.draw(st.integers(0, 2 * N), label="other index")
    assume(other_index != index)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, other_index, size, proof, top)
    # A different size, with that size's true root: the proof is not one for that tree.
    other_size = data.draw(st.integers(1, N), label="other size")
    if other_size != size:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, other_size, proof, TREE.root(other_size))


def test_inclusion_proof_does_not_bind_tree_size():
    """RFC 6962 hashes commit to the tree shape, not its size: the size must come from a signed
    checkpoint together with the root. Here a proof for 3 leaves passes as one for 4 leaves against
    the 3-leaf root, because both trees put leaf 0 two left turns below the root."""
    proof = TREE.inclusion_proof(0, 3)
    verify_inclusion(LEAVES[0], 0, 4, proof, TREE.root(3))
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[0], 0, 4, proof, TREE.root(4))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_proofs_verify_and_any_change_fails(data):
    new = data.draw(st.integers(1, N), label="new size")
    old = data.draw(st.integers(1, new), label="old size")
    r1, r2 = TREE.root(old), TREE.root(new)
    proof = TREE.consistency_proof(old, new)
    assert proof == _ref_subproof(old, LEAVES[:new], True)
    verify_consistency(old, new, r1, r2, proof)
    if old == new:
        assert proof == []
        with pytest.raises(ProofError):
            verify_consistency(old, new, r1, TREE.root(new - 1) if new > 1 else EMPTY_ROOT, proof)
        return

    for j in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label="bit")
        with pytest.raises(ProofError):
            verify_consistency(old, new, r1, r2, proof[:j] + [_flip(proof[j], bit)] + proof[j + 1 :])
    for bad in (proof[:-1], proof + [r1], [r2] + proof, []):
        with pytest.raises(ProofError):
            verify_consistency(old, new, r1, r2, bad)
    with pytest.raises(ProofError):
        verify_consistency(old, new, r2, r1, proof)
    with pytest.raises(ProofError):
        verify_consistency(old, new, _flip(r1, data.draw(st.integers(0, 255))), r2, proof)
    with pytest.raises(ProofError):
        verify_consistency(old, new, r1, _flip(r2, data.draw(st.integers(0, 255))), proof)

    # Other sizes with their own true roots: this proof is not the proof between those trees.
    other_old = data.draw(st.integers(1, N), label="other old")
    other_new = data.draw(st.integers(other_old, N), label="other new")
    if (other_old, other_new) != (old, new):
        with pytest.raises(ProofError):
            verify_consistency(other_old, other_new, TREE.root(other_old), TREE.root(other_new), proof)


def test_consistency_from_the_empty_tree_is_refused():
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, EMPTY_ROOT, TREE.root(5), [])
    with pytest.raises(ValueError):
        consistency_proof(0, 5, TREE.get_node)


def test_tree_growth_is_consistent_step_by_step():
    tree = MemoryTree()
    checkpoints = []
    for i, h in enumerate(LEAVES[:64]):
        tree.append(h)
        checkpoints.append((tree.size, tree.root()))
        for size, old_root in checkpoints:
            verify_consistency(size, tree.size, old_root, tree.root(), tree.consistency_proof(size))
        verify_inclusion(h, i, tree.size, tree.inclusion_proof(i), tree.root())


class _CountingStore:
    """A virtual tree of any size: node hashes are made up, lookups are counted."""

    def __init__(self):
        self.calls = 0

    def __call__(self, level: int, index: int) -> bytes:
        self.calls += 1
        return hashlib.sha256(b"%d/%d" % (level, index)).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 1000, 2**20 + 1, 2**40 - 1, 2**63 + 12345, 2**64 - 1])
def test_proofs_take_logarithmic_lookups(size):
    store = _CountingStore()
    for index in {0, size // 3, size - 1}:
        store.calls = 0
        proof = inclusion_proof(index, size, store)
        assert len(proof) <= 64 and store.calls <= 2 * 64
    for old in {1, size // 2 or 1, size - 1 or 1}:
        store.calls = 0
        consistency_proof(old, size, store)
        assert store.calls <= 2 * 64 + 1
    store.calls = 0
    root_at(size, store)
    assert store.calls == size.bit_count()


def test_memory_tree_lookups():
    assert TREE.get_node(0, 5) == LEAVES[5]
    assert TREE.get_node(1, 2) == node_hash(LEAVES[4], LEAVES[5])
    assert TREE.get_node(8, 0) == _ref_mth(LEAVES[:256])
    for level, index in [(0, N), (1, N // 2), (9, 0), (-1, 0)]:
        with pytest.raises(LookupError):
            TREE.get_node(level, index)
    with pytest.raises(ValueError):
        TREE.root(N + 1)
    assert TREE.compact_range().root() == TREE.root()


def test_generators_refuse_bad_arguments():
    with pytest.raises(ValueError):
        inclusion_proof(5, 5, TREE.get_node)
    with pytest.raises(ValueError):
        inclusion_proof(-1, 5, TREE.get_node)
    with pytest.raises(ValueError):
        consistency_proof(6, 5, TREE.get_node)
    with pytest.raises(ValueError, match="node at level"):
        inclusion_proof(0, 2, lambda level, index: b"short")


# --- garbage never gets past the verifiers, and never as anything but ProofError ---------------


def test_proof_error_is_a_value_error_and_a_denial():
    assert issubclass(ProofError, ValueError) and issubclass(ProofError, errors.DeniedError)
    assert ProofError("x").exit_code == errors.EXIT_DENIED


_GOOD = dict(leaf=LEAVES[2], index=2, size=5, proof=TREE.inclusion_proof(2, 5), root=TREE.root(5))


@pytest.mark.parametrize(
    "change",
    [
        {"proof": None},
        {"proof": "abc"},
        {"proof": b"".join(TREE.inclusion_proof(2, 5))},
        {"proof": [None]},
        {"proof": ["aa" * 32]},
        {"proof": [b""] * 3},
        {"proof": [b"\x00" * 32] * 200},
        {"index": -1},
        {"index": True},
        {"index": 2.0},
        {"index": "2"},
        {"size": 2**64},
        {"size": 0},
        {"size": None},
        {"leaf": LEAVES[2][:31]},
        {"leaf": LEAVES[2].hex()},
        {"leaf": None},
        {"root": b""},
        {"root": None},
    ],
    ids=lambda change: ",".join(f"{k}={v!r}"[:40] for k, v in change.items()),
)
def test_inclusion_garbage_is_a_proof_error(change):
    args = {**_GOOD, **change}
    with pytest.raises(ProofError):
        verify_inclusion(args["leaf"], args["index"], args["size"], args["proof"], args["root"])


@pytest.mark.parametrize(
    "args",
    [
        (3, 5, TREE.root(3), TREE.root(5), None),
        (3, 5, TREE.root(3), None, TREE.consistency_proof(3, 5)),
        (3, 5, "root", TREE.root(5), TREE.consistency_proof(3, 5)),
        (3, 5, TREE.root(3), TREE.root(5), [b"x"]),
        (-1, 5, TREE.root(3), TREE.root(5), []),
        (3, 2**64, TREE.root(3), TREE.root(5), []),
        (3, 3, None, None, []),
        (3, 3.0, TREE.root(3), TREE.root(3), []),
        (False, True, EMPTY_ROOT, TREE.root(1), []),
    ],
    ids=lambda args: repr(args)[:60],
)
def test_consistency_garbage_is_a_proof_error(args):
    with pytest.raises(ProofError):
        verify_consistency(*args)


_any_int = st.one_of(st.integers(-5, 70), st.integers(), st.just(2**64 - 1))
_any_hash = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.sampled_from(LEAVES[:4]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_hash, _any_int, _any_int, st.lists(_any_hash, max_size=10), _any_hash)
def test_random_inclusion_input_is_refused_cleanly(leaf, index, size, proof, top):
    assert _outcome(verify_inclusion, leaf, index, size, proof, top) in (True, False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_int, _any_int, _any_hash, _any_hash, st.lists(_any_hash, max_size=10))
def test_random_consistency_input_is_refused_cleanly(old, new, r1, r2, proof):
    assert _outcome(verify_consistency, old, new, r1, r2, proof) in (True, False)


def test_public_api_is_listed():
    for name in merkle.__all__:
        assert hasattr(merkle, name), name
