"""agentctl at the MCP tool boundary (SPEC, "MCP"; docs/mcp.md).

- :class:`Guard` (server side): verifies every ``tools/call`` before the tool runs; install it on an
  SDK server with ``guard.install(server)``; :func:`current_action` inside a tool.
- :class:`CallSigner` (client side): a fresh action token for each call of a ``ClientSession``.

Importing this package does not import the MCP SDK (about 0.7 s); only installing a guard on an SDK
server touches it, and a missing SDK is then an operational error naming the ``mcp`` extra.
"""

from .guard import Guard, GuardedCall, current_action
from .mapping import ACTION, DENIED, META_KEY
from .signer import CallSigner

# the names agentctl exports (agentctl.__all__, docs/library.md)
McpGuard = Guard
McpSigner = CallSigner
current_tool_call = current_action

__all__ = ["Guard", "GuardedCall", "current_action", "CallSigner", "ACTION", "DENIED", "META_KEY", "McpGuard", "McpSigner",
           "current_tool_call"]
