"""Digests that let a decision be reproduced: the policy digest (SHA-256 over the RFC 8785 JSON of
``[[path, sha256-hex], …]`` in evaluation order) and the input document's SHA-256."""

from __future__ import annotations

import hashlib
from typing import Iterable

from ..encoding import canonical_json

__all__ = ["policy_digest", "input_sha256", "file_sha256", "digest_of_hashes"]


def file_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def policy_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 (hex) over the canonical JSON of ``[[path, sha256-hex of its bytes], …]``, in order."""
    return digest_of_hashes((path, file_sha256(content)) for path, content in files)


def digest_of_hashes(pairs: Iterable[tuple[str, str]]) -> str:
    """The policy digest from ``(path, sha256-hex)`` pairs already computed."""
    return hashlib.sha256(canonical_json([[path, digest] for path, digest in pairs])).hexdigest()


def input_sha256(doc: dict) -> str:
    """SHA-256 (hex) over the RFC 8785 canonical JSON of an input document."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()
