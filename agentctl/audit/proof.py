"""Verifying RFC 6962 proofs: the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms.

:func:`verify_inclusion` and :func:`verify_consistency` return ``None`` or raise
:class:`~agentctl.audit.tree.ProofError`, for bad proofs and for malformed input alike; they never
return a boolean to forget and never raise anything else. Sizes and indexes are limited to 64 bits.
"""

from __future__ import annotations


from .tree import ProofError, _hash, _node, _proof, _size

__all__ = ["ProofError", "verify_inclusion", "verify_consistency"]


# --- verification (RFC 9162) ------------------------------------------------------------------


def _inclusion_length(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(m: int, n: int) -> int:
    level = (m & -m).bit_length() - 1
    index, last = (m - 1) >> level, (n - 1) >> level
    inner = (index ^ last).bit_length()
    return (1 if index else 0) + inner + (index >> inner).bit_count()


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """Check that ``proof`` puts ``leaf_hash`` at ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2. Returns ``None``; raises :class:`ProofError` on any failure. The hashes do
    not commit to ``size``: take it from a signed checkpoint, together with ``root``.
    """
    leaf = _hash(leaf_hash, "leaf hash")
    want_root = _hash(root, "root hash")
    index, size = _size(index, "leaf index"), _size(size, "tree size")
    path = _proof(proof)
    # 1. leaf_index >= tree_size fails.
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    want = _inclusion_length(index, size)
    if len(path) != want:
        raise ProofError(
            f"inclusion proof has {len(path)} hashes; leaf {index} of a tree of size {size} needs {want}"
        )
    # 2.-3.
    fn, sn, r = index, size - 1, leaf
    # 4.
    for p in path:
        if sn == 0:  # a.
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # b.
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1  # c.
        sn >>= 1
    # 5.
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if not _equal(r, want_root):
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of the tree of size {size}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends the one of ``old_size``.

    RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. Equal sizes need an empty proof and equal
    roots (compared as given). ``old_size == 0`` is refused: every tree extends the empty tree, so
    such a "proof" proves nothing; a caller holding an empty checkpoint checks its root is
    :data:`EMPTY_ROOT` instead. Returns ``None``; raises :class:`ProofError` on any failure.
    """
    m, n = _size(old_size, "old size"), _size(new_size, "new size")
    path = _proof(proof)
    if m > n:
        raise ProofError(f"the new tree (size {n}) is smaller than the old one (size {m})")
    if m == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if m == n:
        if path:
            raise ProofError(f"trees of equal size {m} need an empty consistency proof, not {len(path)} hashes")
        if not isinstance(old_root, (bytes, bytearray)) or not isinstance(new_root, (bytes, bytearray)):
            raise ProofError("roots must be bytes")
        if not _equal(bytes(old_root), bytes(new_root)):
            raise ProofError(f"two different roots for the same tree size {m}")
        return
    first, second = _hash(old_root, "old root"), _hash(new_root, "new root")
    # 1.
    if not path:
        raise ProofError(f"empty consistency proof from size {m} to size {n}")
    want = _consistency_length(m, n)
    if len(path) != want:
        raise ProofError(f"consistency proof has {len(path)} hashes; from size {m} to size {n} needs {want}")
    # 2.
    if m & (m - 1) == 0:
        path.insert(0, first)
    # 3.-4.
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:  # a.
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # b.
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1  # c.
        sn >>= 1
    # 7.
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if not _equal(fr, first):
        raise ProofError(f"consistency proof does not lead to the old root (size {m}): the old tree is not a prefix")
    if not _equal(sr, second):
        raise ProofError(f"consistency proof does not lead to the new root (size {n})")


def _equal(a: bytes, b: bytes) -> bool:
    import hmac  # only where a proof is checked: not on every append's import

    return hmac.compare_digest(a, b)
