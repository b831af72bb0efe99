"""A small MCP server guarded by agentctl: every tool call must carry a presentation (a grant chain and a
fresh action token bound to the exact arguments); ``delete`` also needs a human's approval.

Run it as a stdio server (an MCP host, or examples/mcp_signing_client.py, starts it)::

    python examples/mcp_guarded_server.py --trust user:alice=did:key:z6Mk... --approver user:carol=did:key:z6Mk...

``--trust NAME=DIDKEY`` names a principal whose grants it honours (the root of the agent's chain);
``--approver NAME=DIDKEY`` a person who may approve ``delete``. Without a home: the trust is static, the
seen-store in memory (an action from before the server started is refused) and the decisions go to
stderr. With a home, ``McpGuard.for_home(Home.open(...), server="files")`` takes all three from it.

Uses only ``agentctl.__all__`` and the MCP SDK (``pip install 'agentctl[mcp]'``).
"""

from __future__ import annotations

import argparse
import json
import sys

from mcp.server.mcpserver import MCPServer

from agentctl import ApprovalRules, McpGuard, MemorySeenStore, StaticTrust, current_tool_call, public_from_did_key

SERVER = "files"  # the name in resources: a grant for mcp.call:files/* covers every tool here
NOTES = {"todo": "water the plants", "ideas": "a guard at the tool boundary"}


class StderrRecorder:
    """Any object with ``record(*events)`` is a recorder: this one prints each decision to stderr
    (stdout carries the MCP protocol)."""

    def record(self, *events) -> None:
        for ev in events:
            print(json.dumps({"event": ev.event, "outcome": ev.outcome, "reason": ev.reason,
                              "tool": ev.metadata.get("tool")}), file=sys.stderr)


def pairs(values: list[str]) -> dict[str, bytes]:
    out = {}
    for v in values:
        name, _, key = v.partition("=")
        out[name] = public_from_did_key(key)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trust", action="append", default=[], metavar="NAME=DIDKEY")
    ap.add_argument("--approver", action="append", default=[], metavar="NAME=DIDKEY")
    args = ap.parse_args()
    trusted, approvers = pairs(args.trust), pairs(args.approver)
    rules = ApprovalRules(f"mcp:{SERVER}", require=("mcp.call:files/delete",), approvers=tuple(approvers))
    guard = McpGuard(StaticTrust({**trusted, **approvers}), server=SERVER, recorder=StderrRecorder(),
                     seen=MemorySeenStore(), approvals=rules)

    srv = MCPServer("notes")
    guard.install(srv)

    @srv.tool()
    def read_note(name: str) -> str:
        """A note's text, and who asked."""
        call = current_tool_call()  # set by the guard: the verified agent, user and chain
        return f"{NOTES.get(name, '(no such note)')} (for {call.agent} on behalf of {call.on_behalf_of})"

    @srv.tool()
    def delete(name: str) -> str:
        """Delete a note: needs an approval of exactly this call."""
        NOTES.pop(name, None)
        return f"deleted {name}"

    srv.run()


if __name__ == "__main__":
    main()
