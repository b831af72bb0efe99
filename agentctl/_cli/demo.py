"""``agentctl demo``: the whole story, end to end, in a throwaway home."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile

from .common import State, guarded
from .output import Output

# (explanation, arguments, expected exit code). Files are relative to the demo's working directory.
STEPS: list[tuple[str, list[str], int]] = [
    ("Every person and agent gets its own Ed25519 identity. Alice is a user; the code reviewer is an agent.",
     ["keygen", "user:alice", "--role", "engineer"], 0),
    ("The agent's name says what it is and where it runs. Its secret key stays in the keystore.",
     ["keygen", "agent:code-reviewer:prod", "--role", "reviewer", "--attr", "team=platform"], 0),
    ("A second agent, which the code reviewer will hand part of its work to.",
     ["keygen", "agent:linter"], 0),
    ("`list` shows who exists here; `show` gives one principal's keys, roles and status.",
     ["list"], 0),
    ("", ["show", "agent:code-reviewer:prod"], 0),
    ("Keys get rotated. The old key signs a statement naming the new one, so other machines can follow.",
     ["rotate", "agent:code-reviewer:prod", "-o", "rotation.jwt"], 0),
    ("The key history now shows the retired key; it still verifies what it signed before it was retired.",
     ["show", "agent:code-reviewer:prod"], 0),
    ("An agent that should not exist any more is revoked: all its keys, permanently.",
     ["keygen", "agent:old-bot"], 0),
    ("", ["revoke", "agent:old-bot", "--reason", "decommissioned"], 0),
    ("Alice lets the code reviewer open and review pull requests in acme's repositories for 30 minutes,"
     " and allows one more hop of delegation.",
     ["delegate", "--from", "user:alice", "--to", "agent:code-reviewer:prod", "--scope", "pull_request.*:acme/*",
      "--ttl", "30m", "--max-depth", "1", "-o", "alice-to-reviewer.jwt"], 0),
    ("The code reviewer re-delegates a narrower grant to the linter: only creating pull requests, only in acme/web."
     " It writes a presentation: the parent grant, '~', the new one.",
     ["delegate", "--parent", "alice-to-reviewer.jwt", "--to", "agent:linter", "--scope",
      "pull_request.create:acme/web", "--ttl", "10m", "-o", "reviewer-to-linter.jwt"], 0),
    ("A grant can only ever narrow. Asking for more than the parent holds is refused, and nothing is minted.",
     ["delegate", "--parent", "alice-to-reviewer.jwt", "--to", "agent:linter", "--scope", "deploy.*:acme/*"], 1),
    ("`inspect` shows every hop of the chain: who signed, for whom, which scopes, how long, and whether each signature holds.",
     ["inspect", "reviewer-to-linter.jwt"], 0),
    ("The linter acts: it signs 'pull_request.create on acme/web', binding the payload by its SHA-256 digest.",
     ["sign", "--as", "agent:linter", "--action", "pull_request.create", "--resource", "acme/web",
      "--grant", "reviewer-to-linter.jwt", "--data", "pr.json", "-o", "action.jwt"], 0),
    ("A tool server checks it offline before acting. Exit code 0 means: allowed, exactly as asked.",
     ["verify", "action.jwt", "--action", "pull_request.create", "--resource", "acme/web",
      "--data", "pr.json", "--once"], 0),
    ("The same action presented twice is a replay, and `--once` refuses it.",
     ["verify", "action.jwt", "--once"], 1),
    ("Anything outside the grant is denied with a reason code, for shell scripts and for people.",
     ["verify", "action.jwt", "--action", "pull_request.merge", "--resource", "acme/web"], 1),
    ("Alice's grant and the policy both allow this pull request: exit 0.",
     ["sign", "--as", "agent:code-reviewer:prod", "--action", "pull_request.create", "--resource", "acme/api",
      "--grant", "alice-to-reviewer.jwt", "--data", "pr.json", "-o", "pr-create.jwt"], 0),
    ("", ["verify", "pr-create.jwt", "--data", "pr.json", "--policy", "seed.rego", "--context", "ctx.json"], 0),
    ("Alice's grant (pull_request.*) also covers merging, but the policy does not: policy_denied.",
     ["sign", "--as", "agent:code-reviewer:prod", "--action", "pull_request.merge", "--resource", "acme/api",
      "--grant", "alice-to-reviewer.jwt", "--data", "pr.json", "-o", "pr-merge.jwt"], 0),
    ("", ["verify", "pr-merge.jwt", "--data", "pr.json", "--policy", "seed.rego", "--context", "ctx.json"], 1),
    ("Some actions need a person's yes. The demo home now requires an approval for production deploys"
     " (config.toml: audience and [approvals]); carol approves, and nobody approves their own action.",
     ["keygen", "user:carol", "--role", "approver"], 0),
    ("", ["delegate", "--from", "user:alice", "--to", "agent:code-reviewer:prod", "--scope", "deploy.production:acme/web",
          "--ttl", "30m", "-o", "deploy-grant.jwt"], 0),
    ("Without an approval, the deploy is refused: approval_required.",
     ["sign", "--as", "agent:code-reviewer:prod", "--action", "deploy.production", "--resource", "acme/web",
      "--grant", "deploy-grant.jwt", "--data", "release.json", "--audience", "deploy-gate", "-o", "unapproved.jwt"], 0),
    ("", ["verify", "unapproved.jwt", "--audience", "deploy-gate", "--data", "release.json"], 1),
    ("The agent asks: a signed request binding itself, the action, the resource, the payload and its grant.",
     ["approval", "request", "--as", "agent:code-reviewer:prod", "--action", "deploy.production", "--resource", "acme/web",
      "--audience", "deploy-gate", "--grant", "deploy-grant.jwt", "--data", "release.json", "--embed",
      "--reason", "release 1.4.0 after review", "-o", "request.jwt"], 0),
    ("Carol sees exactly what she would approve, verified first; the agent's words are labelled as its words.",
     ["approval", "show", "request.jwt"], 0),
    ("", ["approval", "approve", "request.jwt", "--as", "user:carol", "--note", "release notes checked", "-o", "approval.jwt"], 0),
    ("The agent signs the deploy with the approval; the verifier allows it, once.",
     ["sign", "--as", "agent:code-reviewer:prod", "--action", "deploy.production", "--resource", "acme/web",
      "--grant", "deploy-grant.jwt", "--data", "release.json", "--audience", "deploy-gate", "--approval", "approval.jwt",
      "-o", "deploy.jwt"], 0),
    ("", ["verify", "deploy.jwt", "--audience", "deploy-gate", "--data", "release.json"], 0),
    ("An approval is single use: the same deploy presented again is a replay.",
     ["verify", "deploy.jwt", "--audience", "deploy-gate", "--data", "release.json"], 1),
    ("Alice revokes the code reviewer. Everything it handed down stops working at once.",
     ["revoke", "agent:code-reviewer:prod", "--reason", "demo: compromised"], 0),
    ("", ["verify", "action.jwt", "--action", "pull_request.create", "--resource", "acme/web"], 1),
    ("Every decision above is in the audit log, newest first.",
     ["audit", "--limit", "30"], 0),
    ("A checkpoint signs the log's size and Merkle root with this host's audit key; keep a copy elsewhere.",
     ["audit", "checkpoint", "-o", "checkpoint.txt"], 0),
    ("`audit verify` recomputes the whole tree and proves nothing was edited, deleted or reordered.",
     ["audit", "verify", "--checkpoint", "checkpoint.txt"], 0),
]


# The policy steps: the first of them and how many, shown only when the Rego engine is installed.
POLICY_FIRST = next(i for i, (_, args, _) in enumerate(STEPS) if args[-1] == "pr-create.jwt")
POLICY_STEPS = range(POLICY_FIRST, POLICY_FIRST + 4)

# SPEC's seed policy, exactly as written, and the context a tool server passes with it.
SEED_POLICY = """package agent.authz
default allow = false
allow if {
  input.agent.id == "agent:code-reviewer:prod"
  input.action == "pull_request.create"
  startswith(input.resource.repo, "acme/")
  input.delegation.user_role == "engineer"
}
"""
SEED_CONTEXT = '{"resource": {"repo": "acme/api"}}\n'


def rego_installed() -> bool:
    """Whether the optional Rego engine imports (``pip install -e '.[rego]'``)."""
    try:
        import regopy  # noqa: F401
    except ImportError:
        return False
    return True


def do_demo(state: State, out: Output) -> int:
    return guarded(out, lambda: _demo(state, out))  # a reader that goes away (| head) is exit 141, not 1


def _demo(state: State, out: Output) -> int:
    work = tempfile.mkdtemp(prefix="agentctl-demo-")
    home = os.path.join(work, "home")
    cwd = os.getcwd()
    saved = {k: os.environ.get(k) for k in ("AGENTCTL_KEYSTORE", "AGENTCTL_SECRET_KEY", "AGENTCTL_PASSPHRASE", "AGENTCTL_FORMAT", "AGENTCTL_HOME", "COLUMNS")}
    # on a terminal each step's tables fit what is left of its width after the indent; lines are never
    # cut or wrapped here (the terminal wraps prose, a pipe keeps every line whole)
    terminal = out.is_terminal and not out.json_mode
    inner_width = max(out.width - 4, 20) if terminal else None
    steps = []
    failed = None
    skipped = None
    try:
        os.chdir(work)
        os.environ["AGENTCTL_KEYSTORE"] = "file"  # never touch the user's own keyring
        for k in ("AGENTCTL_SECRET_KEY", "AGENTCTL_PASSPHRASE", "AGENTCTL_FORMAT", "AGENTCTL_HOME"):
            os.environ.pop(k, None)
        if inner_width is not None:
            os.environ["COLUMNS"] = str(inner_width)
        with open(os.path.join(work, "pr.json"), "w", encoding="utf-8") as f:
            f.write('{"title": "Fix flaky test", "base": "main", "head": "linter/fix-flaky"}\n')
        with open(os.path.join(work, "release.json"), "w", encoding="utf-8") as f:
            f.write('{"service": "acme/web", "version": "1.4.0"}\n')
        with open(os.path.join(work, "seed.rego"), "w", encoding="utf-8") as f:
            f.write(SEED_POLICY)
        with open(os.path.join(work, "ctx.json"), "w", encoding="utf-8") as f:
            f.write(SEED_CONTEXT)
        with_policy = rego_installed()
        if not out.json_mode:
            out.line(f"agentctl demo — a throwaway home in {home}\n")
        from .entry import main

        for n, (why, args, want) in enumerate(STEPS, 1):
            argv = list(args)
            if n - 1 in POLICY_STEPS and not with_policy:
                if n - 1 == POLICY_FIRST:
                    skipped = ("Policy steps skipped: the Rego engine is not installed here. To see a policy allow one"
                               " action and deny another: pip install -e '.[rego]'")
                    if not out.json_mode:
                        out.line(f"▸ {skipped}\n")
                continue
            if n - 1 == POLICY_FIRST and not out.json_mode:
                out.line("▸ Teams also have rules of their own. This one, in Rego, lets the code reviewer open pull requests"
                         " in acme's repositories for engineers; the tool server names the repo in ctx.json.")
                out.line("  seed.rego:")
                for line in SEED_POLICY.splitlines():
                    out.line("    " + line)
                out.line("  ctx.json: " + SEED_CONTEXT)
            if args[:2] == ["keygen", "user:carol"]:  # from here on, the demo home requires approvals
                _require_approvals(home)
            stdout, stderr = (_Terminal() if terminal else io.StringIO()), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = main(["--home", home, *argv])
            steps.append({"step": n, "explanation": why or None, "command": ["agentctl", *args], "exit_code": code,
                          "expected_exit_code": want, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()})
            if not out.json_mode:
                if why:
                    out.line(f"▸ {why}")
                out.line("  $ agentctl " + " ".join(_quote(a) for a in args))
                for line in (stdout.getvalue() + stderr.getvalue()).rstrip("\n").splitlines():
                    out.line("    " + line)
                out.line(f"    (exit {code})\n")
            if code != want:
                failed = f"step {n} exited {code}, expected {want}"
                break
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        out.stderr.write(f"agentctl: error: the demo went wrong: {failed}\n")
        out.result({"ok": False, "error": "operational", "reason": None, "message": f"the demo went wrong: {failed}",
                    "exit_code": 3, "steps": steps})
        return 3
    out.result({"ok": True, "steps": steps, **({"skipped": skipped} if skipped else {})},
               "That is agentctl: identities, delegation that only narrows, signed actions verified offline,\n"
               "and an audit log that proves it was not edited. The demo home has been deleted.")
    return 0


def _require_approvals(home: str) -> None:
    path = os.path.join(home, "config.toml")
    with open(path, "a", encoding="utf-8") as f:
        f.write('audience = "deploy-gate"\n\n[approvals]\nrequire = ["deploy.production:**"]\n'
                'approvers = ["role:approver"]\n')


class _Terminal(io.StringIO):
    """A step's stdout, rendered as for the terminal the demo prints to."""

    def isatty(self) -> bool:
        return True


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " *{}") else arg
