"""RFC 6962 Merkle trees: kept as a name for :mod:`agentctl.audit.tree` and :mod:`agentctl.audit.proof`."""

from .audit.proof import verify_consistency, verify_inclusion
from .audit.tree import *  # noqa: F403
from .audit.tree import __all__ as _tree_all

__all__ = [*_tree_all, "verify_inclusion", "verify_consistency"]
