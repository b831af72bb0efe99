"""RFC 6962 Merkle trees over SHA-256: hashing, an incremental compact range, proofs and verifiers.

Hashing (RFC 6962 §2.1): a leaf is ``SHA-256(0x00 || data)``, an interior node
``SHA-256(0x01 || left || right)``, and the tree of no leaves has the root ``SHA-256("")``.

A *perfect subtree* is addressed by ``(level, index)``: it covers the ``2**level`` leaves
``[index * 2**level, (index + 1) * 2**level)``. Those are the only nodes a log ever needs to store:
every root and every proof of a tree of any size is made of them (plus hashes computed from them).

- :class:`CompactRange` keeps the roots of the perfect subtrees that make up ``[0, size)`` (at most
  64 hashes), appends a leaf in O(log n) and gives the root. :meth:`CompactRange.append` returns the
  perfect subtrees the new leaf completed, so a store can keep them and serve ``get_node``.
- :func:`inclusion_proof` and :func:`consistency_proof` build RFC 6962 proofs from a
  ``get_node(level, index)`` callable in O(log n) lookups; :class:`MemoryTree` is such a store in
  memory.
- The verifiers of proofs are in :mod:`agentctl.audit.proof`.

Sizes and indexes are limited to 64 bits, as in RFC 9162.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable

from ..errors import DeniedError

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "MAX_SIZE",
    "ProofError",
    "GetNode",
    "leaf_hash",
    "node_hash",
    "root",
    "root_at",
    "CompactRange",
    "MemoryTree",
    "inclusion_proof",
    "consistency_proof",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_SIZE = 2**64 - 1

#: ``get_node(level, index)`` returns the 32-byte root of the perfect subtree covering leaves
#: ``[index * 2**level, (index + 1) * 2**level)``.
GetNode = Callable[[int, int], bytes]


class ProofError(DeniedError, ValueError):
    """A Merkle proof that does not verify, or input to a verifier that cannot be a proof."""


# --- hashing ----------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry."""
    return hashlib.sha256(b"\x00" + bytes(data)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _node(_hash(left, "left child", ValueError), _hash(right, "right child", ValueError))


def _hash(value: object, what: str, error: type[Exception] = ProofError) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise error(f"{what} must be bytes, not {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise error(f"{what} is {len(value)} bytes; a SHA-256 hash is {HASH_SIZE}")
    return bytes(value)


def _size(value: object, what: str, error: type[Exception] = ProofError) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise error(f"{what} must be an integer, not {type(value).__name__}")
    if not 0 <= value <= MAX_SIZE:
        raise error(f"{what} {value} is outside 0..2**64-1")
    return value


def _proof(value: object) -> list[bytes]:
    if not isinstance(value, (list, tuple)):
        raise ProofError(f"a proof is a list of hashes, not {type(value).__name__}")
    if len(value) > 130:  # far above any proof in a tree of 2**64 leaves; checked exactly later
        raise ProofError(f"a proof of {len(value)} hashes is too long")
    return [_hash(h, f"proof hash {i}") for i, h in enumerate(value)]


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash (MTH) of a list of leaf hashes; ``SHA-256("")`` for none."""
    cr = CompactRange()
    for h in leaf_hashes:
        cr.append(h)
    return cr.root()


# --- compact range ----------------------------------------------------------------------------


class CompactRange:
    """The roots of the perfect subtrees that make up the leaves ``[0, size)``, largest first.

    One hash per set bit of ``size``. Serialised by :meth:`to_bytes` as the size (8 bytes,
    big-endian) followed by the hashes, largest subtree first.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the perfect subtrees it completed as ``(level, index, hash)``.

        The first is always the leaf itself, ``(0, old_size, leaf_hash)``; then one per level the
        leaf closed. Storing them is all a log needs to serve ``get_node`` later.
        """
        h = _hash(leaf_hash, "leaf hash", ValueError)
        if self._size >= MAX_SIZE:
            raise ValueError("the tree is full (2**64-1 leaves)")
        index, level = self._size, 0
        created = [(0, index, h)]
        while index & 1:
            h = _node(self._hashes.pop(), h)
            index >>= 1
            level += 1
            created.append((level, index, h))
        self._hashes.append(h)
        self._size += 1
        return created

    def root(self) -> bytes:
        """The Merkle Tree Hash of the leaves ``[0, size)``."""
        if not self._hashes:
            return EMPTY_ROOT
        h = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            h = _node(left, h)
        return h

    def to_bytes(self) -> bytes:
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Parse :meth:`to_bytes` output; a ``ValueError`` names what is wrong with damaged data."""
        if not isinstance(data, (bytes, bytearray)) or len(data) < 8:
            raise ValueError("damaged compact range: shorter than its 8-byte size")
        size = int.from_bytes(data[:8], "big")
        want = 8 + HASH_SIZE * size.bit_count()
        if len(data) != want:
            raise ValueError(f"damaged compact range: {len(data)} bytes, a range of size {size} takes {want}")
        cr = cls()
        cr._size = size
        cr._hashes = [bytes(data[i : i + HASH_SIZE]) for i in range(8, len(data), HASH_SIZE)]
        return cr

    @classmethod
    def from_nodes(cls, size: int, get_node: GetNode) -> CompactRange:
        """The compact range of ``[0, size)`` read from a store of perfect subtrees."""
        size = _size(size, "tree size", ValueError)
        cr = cls()
        cr._size = size
        cr._hashes = _decompose(0, size, get_node)
        return cr

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


# --- proofs from a node store -----------------------------------------------------------------


def _get(get_node: GetNode, level: int, index: int) -> bytes:
    return _hash(get_node(level, index), f"node at level {level}, index {index}", ValueError)


def _decompose(begin: int, end: int, get_node: GetNode) -> list[bytes]:
    """Roots of the perfect subtrees covering ``[begin, end)``, largest first.

    ``begin`` must be a multiple of the largest power of two not above ``end - begin``, which holds
    for ``begin == 0`` and for the right-edge node of any tree.
    """
    out, pos, n = [], begin, end - begin
    for level in reversed(range(n.bit_length())):
        if n >> level & 1:
            out.append(_get(get_node, level, pos >> level))
            pos += 1 << level
    return out


def _fold(hashes: list[bytes]) -> bytes:
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = _node(left, h)
    return h


def root_at(size: int, get_node: GetNode) -> bytes:
    """The Merkle Tree Hash of the first ``size`` leaves, from at most 64 perfect subtrees."""
    size = _size(size, "tree size", ValueError)
    return _fold(_decompose(0, size, get_node)) if size else EMPTY_ROOT


def _path(level: int, index: int, size: int, get_node: GetNode) -> list[bytes]:
    """RFC 6962 audit path of the perfect node ``(level, index)`` in the tree of ``size`` leaves."""
    last = (size - 1) >> level
    inner = (index ^ last).bit_length()  # levels below the point where the paths to it and to the
    proof = []  # last leaf meet
    for i in range(inner):
        lvl, sibling = level + i, (index >> i) ^ 1
        begin = sibling << lvl
        if begin + (1 << lvl) <= size:
            proof.append(_get(get_node, lvl, sibling))
        else:  # the right edge of the tree: not a perfect subtree, hash it from the ones it holds
            proof.append(_fold(_decompose(begin, size, get_node)))
    for i in range(inner, last.bit_length()):
        if index >> i & 1:
            proof.append(_get(get_node, level + i, (index >> i) - 1))
    return proof


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """RFC 6962 §2.1.1 ``PATH(index, D[size])``, leaf sibling first."""
    index, size = _size(index, "leaf index", ValueError), _size(size, "tree size", ValueError)
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    return _path(0, index, size, get_node)


def consistency_proof(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """RFC 6962 §2.1.2 ``PROOF(old_size, D[new_size])``; empty when the sizes are equal.

    There is no proof from the empty tree (every tree extends it): ``old_size`` must be at least 1.
    """
    m, n = _size(old_size, "old size", ValueError), _size(new_size, "new size", ValueError)
    if not 0 < m <= n:
        raise ValueError(f"no consistency proof from size {m} to size {n} (need 0 < old <= new)")
    if m == n:
        return []
    level = (m & -m).bit_length() - 1  # the largest perfect subtree ending at m ...
    index = (m - 1) >> level
    proof = _path(level, index, n, get_node)
    if index:  # ... is given first unless it is the whole old tree, whose root the verifier has
        proof.insert(0, _get(get_node, level, index))
    return proof


class MemoryTree:
    """Every perfect subtree of a growing tree, in memory: a ``get_node`` for tests and small logs."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._range = CompactRange()
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return self._range.size

    def __len__(self) -> int:
        return self._range.size

    def append(self, leaf_hash: bytes) -> None:
        for level, index, h in self._range.append(leaf_hash):
            if level == len(self._levels):
                self._levels.append([])
            assert index == len(self._levels[level])
            self._levels[level].append(h)

    def get_node(self, level: int, index: int) -> bytes:
        if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
            return self._levels[level][index]
        raise LookupError(f"no perfect subtree at level {level}, index {index} in a tree of size {self.size}")

    def compact_range(self) -> CompactRange:
        return CompactRange.from_nodes(self.size, self.get_node)

    def root(self, size: int | None = None) -> bytes:
        return root_at(self._at(size), self.get_node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self._at(size), self.get_node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self._at(new_size), self.get_node)

    def _at(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not isinstance(size, int) or not 0 <= size <= self.size:
            raise ValueError(f"size {size!r} is not within the tree of {self.size} leaves")
        return size
