"""An MCP client that signs every tool call with agentctl, for a server behind a guard.

    AGENTCTL_SECRET_KEY=... python examples/mcp_signing_client.py --grant bot.grant \\
        --call read_note '{"name": "todo"}' -- python examples/mcp_guarded_server.py --trust user:alice=did:key:...

The agent's key is an exported secret (``agentctl keygen AGENT --export-secret``) in
``AGENTCTL_SECRET_KEY``; ``--grant`` is its grant presentation (``agentctl delegate ... -o FILE``);
``--approvals DIR`` a directory of approvals (``agentctl approval approve ... -o DIR/x.jwt``): each call
carries the one whose binding matches it exactly. Prints one JSON line per call: the result, or the
guard's refusal (its reason and, on ``approval_required``, what to approve).

Uses only ``agentctl.__all__`` and the MCP SDK.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from agentctl import McpSigner

SERVER = "files"  # as the guard names it


async def run(signer: McpSigner, calls: list[tuple[str, dict]], command: list[str]) -> None:
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for tool, arguments in calls:
                try:
                    result = await signer.call_tool(session, tool, arguments)  # a fresh action token per call
                    print(json.dumps({"tool": tool, "result": result.content[0].text}), flush=True)
                except MCPError as e:
                    print(json.dumps({"tool": tool, "error": e.data, "message": e.message}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grant", required=True, metavar="FILE")
    ap.add_argument("--approvals", metavar="DIR")
    ap.add_argument("--call", nargs=2, action="append", default=[], metavar=("TOOL", "JSON"))
    ap.add_argument("command", nargs="+", help="the server's command, after --")
    args = ap.parse_args()
    with open(args.grant, encoding="ascii") as f:
        grant = f.read().strip()
    signer = McpSigner.from_secret(os.environ["AGENTCTL_SECRET_KEY"], server=SERVER, grant=grant,
                                   approvals=args.approvals)
    anyio.run(run, signer, [(tool, json.loads(a)) for tool, a in args.call], args.command)


if __name__ == "__main__":
    sys.exit(main())
