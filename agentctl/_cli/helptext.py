"""What ``--help`` shows besides the options: a one-line summary for the command lists, examples, and
the environment variables each command reads.

``attach(app)`` sets them on the registered commands once they are all defined (the end of app.py),
so a command's options and its examples live in different places but a test (tests/test_help.py)
fails when a command has no example or no environment section.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ENV", "HELP", "attach", "epilog"]

#: Every variable agentctl reads, with what it does.
ENV = {
    "AGENTCTL_HOME": "the home, when --home is not given",
    "AGENTCTL_KEYSTORE": "auto, keyring or file (overrides config.toml)",
    "AGENTCTL_PASSPHRASE": "the file keystore's passphrase (else a prompt)",
    "AGENTCTL_SECRET_KEY": "an exported secret: its principal signs with it",
    "AGENTCTL_FORMAT": "json: the same as --json",
    "NO_COLOR": "no colour in tables on a terminal",
    "AGENTCTL_DEBUG": "1: a Python traceback for an internal error",
    "AGENTCTL_AUDIT_URL": "the central audit store (PostgreSQL), when --to/--from is not given",
    "PGSERVICE": "a libpq service naming the central audit store (else AGENTCTL_AUDIT_URL)",
    "PGPASSFILE": "libpq's password file for the store (default ~/.pgpass)",
}
#: Read by a command that reaches the central audit store.
STORE = ("AGENTCTL_AUDIT_URL", "PGSERVICE", "PGPASSFILE")
#: Read by every command.
COMMON = ("AGENTCTL_HOME", "AGENTCTL_FORMAT", "NO_COLOR", "AGENTCTL_DEBUG")
#: Read by a command that loads or stores a secret key.
KEYSTORE = ("AGENTCTL_KEYSTORE", "AGENTCTL_PASSPHRASE")
SIGNING = ("AGENTCTL_SECRET_KEY", *KEYSTORE)

#: command path -> (summary for the command list, examples, environment besides COMMON)
HELP: dict[tuple[str, ...], tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    (): ("", (
        "agentctl demo",
        "agentctl keygen user:alice",
        "agentctl --json list",
        "agentctl COMMAND --help",
    ), SIGNING),
    ("keygen",): ("Create a principal with a fresh Ed25519 key.", (
        "agentctl keygen user:alice",
        "agentctl keygen agent:code-reviewer:prod --role reviewer --attr team=platform",
        "agentctl keygen agent:ci:deploy --export-secret --no-store > secret.txt",
    ), KEYSTORE),
    ("list",): ("List the principals in the home.", (
        "agentctl list",
        "agentctl --json list",
    ), ()),
    ("show",): ("Show one principal: keys, roles, status.", (
        "agentctl show agent:code-reviewer:prod",
    ), ()),
    ("pubkey",): ("Print a principal's current public key.", (
        "agentctl pubkey agent:code-reviewer:prod",
        "agentctl pubkey agent:code-reviewer:prod --format jwks > jwks.json",
    ), ()),
    ("import",): ("Trust a principal made elsewhere.", (
        "agentctl import user:alice did:key:z6Mk...",
        "agentctl import agent:deployer deployer.jwk --role deployer",
        "agentctl import agent:deployer --rotation rotation.jwt",
    ), ()),
    ("rotate",): ("Give a principal a new key.", (
        "agentctl rotate agent:code-reviewer:prod -o rotation.jwt",
    ), SIGNING),
    ("revoke",): ("Revoke a principal, a key, or a grant, action or approval.", (
        "agentctl revoke agent:old-bot --reason decommissioned",
        "agentctl revoke --key KID",
        "agentctl revoke --jti JTI",
    ), KEYSTORE),
    ("delegate",): ("Mint a delegation grant.", (
        "agentctl delegate --from user:alice --to agent:code-reviewer:prod \\\n"
        "    --scope 'pull_request.*:acme/*' --ttl 30m -o grant.jwt",
        "agentctl delegate --parent grant.jwt --to agent:linter \\\n"
        "    --scope pull_request.create:acme/web -o sub.jwt",
    ), SIGNING),
    ("inspect",): ("Show every hop of a token.", (
        "agentctl inspect grant.jwt",
        "agentctl --json inspect - < action.jwt",
    ), ()),
    ("sign",): ("Sign an action.", (
        "agentctl sign --as agent:linter --action pull_request.create \\\n"
        "    --resource acme/web --grant grant.jwt --data pr.json -o action.jwt",
        "AGENTCTL_SECRET_KEY=\"$SECRET\" agentctl sign --as agent:ci:deploy \\\n"
        "    --action deploy.staging --resource api/web --grant grant.jwt",
        "agentctl sign --as agent:deployer --action deploy.production --resource api/web \\\n"
        "    --grant grant.jwt --data release.json --approval approval.jwt -o action.jwt",
    ), SIGNING),
    ("approval",): ("A human checkpoint bound to one exact action.", (
        "agentctl approval request --as agent:deployer --action deploy.production \\\n"
        "    --resource api/web --audience deploy-gate --grant grant.jwt --data release.json --embed -o request.jwt",
        "agentctl approval show request.jwt",
        "agentctl approval approve request.jwt --as user:carol -o approval.jwt",
    ), SIGNING),
    ("approval", "request"): ("Sign a request for approval and queue it here.", (
        "agentctl approval request --as agent:deployer --action deploy.production \\\n"
        "    --resource api/web --audience deploy-gate --grant grant.jwt \\\n"
        "    --data release.json --embed --reason 'release 1.2.3' -o request.jwt",
    ), SIGNING),
    ("approval", "list"): ("Pending requests, oldest first.", (
        "agentctl approval list",
        "agentctl --json approval list --all",
    ), ()),
    ("approval", "show"): ("Verify a request and show exactly what would be approved.", (
        "agentctl approval show request.jwt",
        "agentctl approval show REQ --data release.json",
        "agentctl --json approval show request.jwt",
    ), ()),
    ("approval", "approve"): ("Approve a verified request: writes the approval.", (
        "agentctl approval approve request.jwt --as user:carol --note 'checked the diff' -o approval.jwt",
        "agentctl approval approve REQ --as user:carol --data release.json --ttl 10m",
    ), SIGNING),
    ("approval", "deny"): ("Refuse a request in this home.", (
        "agentctl approval deny request.jwt --as user:carol --reason 'not during the freeze'",
    ), ()),
    ("verify",): ("Verify a grant or an action (exit 0: allowed).", (
        "agentctl verify action.jwt --action pull_request.create \\\n"
        "    --resource acme/web --data pr.json --once",
        "agentctl --json verify \"$P\" --audience tools.example",
        "agentctl verify --batch < requests.jsonl",
        "agentctl verify \"$P\" --policy authz.rego --context ctx.json",
    ), ()),
    ("demo",): ("The whole story in a throwaway home.", (
        "agentctl demo",
        "agentctl --json demo",
    ), ()),
    ("completion",): ("Print a shell completion script.", (
        "agentctl completion bash > ~/.local/share/bash-completion/completions/agentctl",
        "agentctl completion zsh > ~/.zfunc/_agentctl",
        "agentctl completion fish > ~/.config/fish/completions/agentctl.fish",
    ), ()),
    ("revocations",): ("Signed revocation lists for other machines.", (
        "agentctl revocations export --sign-as user:alice -o revocations.jwt",
        "agentctl revocations import revocations.jwt",
    ), SIGNING),
    ("revocations", "export"): ("Export the revocations held here, signed.", (
        "agentctl revocations export --sign-as user:alice -o revocations.jwt",
    ), SIGNING),
    ("revocations", "import"): ("Import a signed revocation list.", (
        "agentctl revocations import revocations.jwt",
    ), ()),
    ("trust",): ("Signed trust bundles for other machines.", (
        "agentctl trust export --sign-as user:admin -o trust.jwt",
        "agentctl trust import trust.jwt",
    ), SIGNING),
    ("trust", "export"): ("Export this home's principals as a signed bundle.", (
        "agentctl trust export --sign-as user:admin -o trust.jwt",
    ), SIGNING),
    ("trust", "import"): ("Import a trust bundle from a trust source's signer.", (
        "agentctl trust import trust.jwt",
        "agentctl --json trust import trust.jwt",
    ), ()),
    ("sync",): ("Fetch every trust and revocation source.", (
        "agentctl sync",
        "agentctl --json sync",
    ), ()),
    ("audit",): ("The audit log: query, verify, prove, export, ship, archive, prune.", (
        "agentctl audit --agent agent:code-reviewer:prod --since 1h",
        "agentctl audit --outcome deny --limit 20",
        "agentctl audit --from service=audit --agent agent:deployer --limit 20",
    ), STORE),
    ("audit", "verify"): ("Check the whole log (or the central store) for tampering.", (
        "agentctl audit verify --checkpoint checkpoint.txt",
        "agentctl audit verify --from service=audit --state ~/.local/state/agentctl-audit",
        "agentctl audit verify --archive audit-2026-q1.jsonl",
    ), STORE),
    ("audit", "ship"): ("Ship the log to the central store (PostgreSQL).", (
        "agentctl audit ship --init postgresql://audit_owner@db.internal/audit",
        "AGENTCTL_AUDIT_URL=postgresql://agentctl_host_web1_1a2b3c4d@db.internal/audit agentctl audit ship",
        "agentctl audit ship --to service=audit",
    ), (*KEYSTORE, *STORE)),
    ("audit", "enroll"): ("Enroll a host's audit key in the central store.", (
        "agentctl audit enroll --to postgresql://audit_owner@db.internal/audit \"$(cat web1-audit-key.txt)\"",
        "agentctl --json audit enroll --to service=audit-owner --db-role web1 \"$KEY\"",
    ), STORE),
    ("audit", "checkpoint"): ("Sign the log's size and root.", (
        "agentctl audit checkpoint -o checkpoint.txt",
    ), KEYSTORE),
    ("audit", "prove"): ("An inclusion proof of one event.", (
        "agentctl --json audit prove 42 > proof.json",
        "agentctl audit prove 42 --checkpoint checkpoint.txt",
    ), ()),
    ("audit", "export"): ("Events as JSON Lines, for a SIEM.", (
        "agentctl audit export --since 24h > events.jsonl",
    ), ()),
    ("audit", "key"): ("Print the host's audit key (C2SP note verifier key).", (
        "agentctl audit key > audit-key.txt",
    ), KEYSTORE),
    ("audit", "consistency"): ("A consistency proof between two checkpoints.", (
        "agentctl audit consistency old-checkpoint.txt new-checkpoint.txt",
    ), ()),
    ("audit", "archive"): ("Write the log's events to an archive that verifies offline.", (
        "agentctl audit archive -o audit-2026-q1.jsonl",
        "agentctl --json audit archive -o /mnt/cold/audit-web1.jsonl",
    ), KEYSTORE),
    ("audit", "prune"): ("Drop old event bodies an archive or the central store holds.", (
        "agentctl audit prune --before 90d",
        "agentctl audit prune --before 2026-01-01T00:00:00Z --to service=audit",
    ), (*KEYSTORE, *STORE)),
    ("role",): ("Give principals roles, or take them away.", (
        "agentctl role add user:alice engineer",
        "agentctl role remove agent:code-reviewer:prod deployer",
    ), ()),
    ("role", "add"): ("Give a principal roles.", (
        "agentctl role add user:alice engineer approver",
    ), ()),
    ("role", "remove"): ("Take roles from a principal.", (
        "agentctl role remove user:alice approver",
    ), ()),
    ("policy",): ("Rego and Cedar policies: input, evaluate, check, schema.", (
        "agentctl policy check authz.rego",
        "agentctl policy eval authz.rego --input input.json",
    ), ()),
    ("policy", "input"): ("Print the policy input document verify would build.", (
        "agentctl policy input \"$P\" --context ctx.json > input.json",
        "agentctl policy input grant.jwt --action pull_request.create --resource acme/api",
    ), ()),
    ("policy", "eval"): ("Ask one policy set about an input document.", (
        "agentctl policy eval authz.rego --input input.json",
        "agentctl --json policy eval authz.rego --input - --query data.agent.authz.allow < input.json",
    ), ()),
    ("policy", "check"): ("Compile a policy set.", (
        "agentctl policy check authz.rego",
        "agentctl policy check rules.cedar",
    ), ()),
    ("policy", "schema"): ("Print the schema policies are written against.", (
        "agentctl policy schema --cedar > agentctl.cedarschema",
    ), ()),
    ("mcp",): ("Verify and sign MCP tool calls (stdio proxies).", (
        "agentctl mcp guard --name files -- python files_server.py",
        "agentctl mcp sign --as agent:bot --grant bot.grant --server files -- agentctl mcp guard --name files -- python files_server.py",
    ), ()),
    ("mcp", "guard"): ("Run an MCP server behind a guard that verifies every tool call.", (
        "agentctl mcp guard --name files -- python files_server.py",
        "agentctl mcp guard --name github --pass resources/read --seen memory -- npx github-mcp",
        "agentctl mcp guard --name files --policy tools.rego -- python files_server.py",
    ), ()),
    ("mcp", "sign"): ("Run an MCP server, signing every tool call the client makes.", (
        "agentctl mcp sign --as agent:bot --grant bot.grant --server files -- ssh tools agentctl mcp guard --name files -- ./server",
        "agentctl mcp sign --as agent:bot --grant bot.grant --approvals approvals/ --server files -- agentctl mcp guard --name files -- ./server",
    ), SIGNING),
}


def epilog(path: tuple[str, ...]) -> str:
    """The Examples and Environment sections of a command's help (``\\b``: click keeps the lines)."""
    _, examples, env = HELP[path]
    names = list(dict.fromkeys((*env, *COMMON)))
    width = max(len(n) for n in names)
    lines = ["\b", "Examples:", *(f"  {line}" for e in examples for line in e.splitlines()), "", "\b", "Environment:"]
    lines += [f"  {n.ljust(width)}  {ENV[n]}" for n in names]
    return "\n".join(lines)


def attach(app: Any) -> None:
    """Set the summary and the epilog of every command registered on ``app`` and its groups."""

    def walk(typer_app: Any, prefix: tuple[str, ...]) -> None:
        for info in typer_app.registered_commands:
            name = info.name or info.callback.__name__.rstrip("_").replace("_", "-")
            _set(info, (*prefix, name))
        for group in typer_app.registered_groups:
            path = (*prefix, group.name)
            _set(group, path)
            walk(group.typer_instance, path)

    app.info.epilog = epilog(())
    walk(app, ())


def _set(info: Any, path: tuple[str, ...]) -> None:
    if path not in HELP:
        return  # tests/test_help.py names the command that has no examples
    info.short_help = HELP[path][0]
    info.epilog = epilog(path)
