"""examples/mcp_guarded_server.py and examples/mcp_signing_client.py, end to end as subprocesses: the
client signs, the guard verifies, ``delete`` runs only with an approval, and the examples use only
``agentctl.__all__`` and the SDK."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess
pytest.importorskip("mcp")

import agentctl  # noqa: E402
from agentctl import approve_with, delegate_with, did_key, request_with, signer_from_seed  # noqa: E402
from agentctl.encoding import canonical_json  # noqa: E402
from agentctl.secret import encode_secret  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def client(tmp_path, env, *calls, approvals=None):
    args = [sys.executable, str(EXAMPLES / "mcp_signing_client.py"), "--grant", str(tmp_path / "bot.grant")]
    if approvals:
        args += ["--approvals", str(approvals)]
    for tool, arguments in calls:
        args += ["--call", tool, json.dumps(arguments)]
    args += ["--", sys.executable, str(EXAMPLES / "mcp_guarded_server.py"), *env["SERVER_ARGS"].split()]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()], r.stderr


def test_the_examples_end_to_end(tmp_path):
    seeds = {n: os.urandom(32) for n in ("user:alice", "agent:bot", "user:carol")}
    alice, bot, carol = (signer_from_seed(n, s) for n, s in seeds.items())
    grant, _ = delegate_with(alice, to="agent:bot", to_public=bot.public, scopes=["mcp.call:files/*"])
    (tmp_path / "bot.grant").write_text(grant)
    env = {**os.environ, "AGENTCTL_SECRET_KEY": encode_secret("agent:bot", seeds["agent:bot"]),
           "SERVER_ARGS": f"--trust user:alice={did_key(alice.public)} --approver user:carol={did_key(carol.public)}"}

    out, log = client(tmp_path, env, ("read_note", {"name": "todo"}), ("delete", {"name": "todo"}))
    assert out[0] == {"tool": "read_note", "result": "water the plants (for agent:bot on behalf of user:alice)"}
    err = out[1]["error"]
    assert err["reason"] == "approval_required" and err["resource"] == "files/delete" and err["agent"] == "agent:bot"
    assert '"reason": "approval_required"' in log  # the server's recorder saw the decision

    # carol approves exactly that call; the client finds the approval in its directory
    req = request_with(bot, action="mcp.call", resource="files/delete", audience="mcp:files", grant=grant,
                       data=canonical_json({"name": "todo"}))
    (tmp_path / "approvals").mkdir()
    (tmp_path / "approvals" / "delete-todo.jwt").write_text(approve_with(carol, req))
    out, _ = client(tmp_path, env, ("delete", {"name": "ideas"}), ("delete", {"name": "todo"}), ("delete", {"name": "todo"}),
                    approvals=tmp_path / "approvals")
    assert out[0]["error"]["reason"] == "approval_required"  # other arguments: not approved
    assert out[1] == {"tool": "delete", "result": "deleted todo"}
    assert out[2]["error"]["reason"] == "replayed"  # an approval is used once

    # a client whose grant is from someone the server does not trust
    mallory = signer_from_seed("user:mallory", os.urandom(32))
    (tmp_path / "bot.grant").write_text(delegate_with(mallory, to="agent:bot", to_public=bot.public, scopes=["mcp.call:files/*"])[0])
    out, _ = client(tmp_path, env, ("read_note", {"name": "todo"}))
    assert "error" in out[0] and out[0]["error"]["reason"] in ("unknown_issuer", "untrusted_root", "unknown_principal")


@pytest.mark.parametrize("name", ["mcp_guarded_server.py", "mcp_signing_client.py"])
def test_the_examples_use_only_the_public_names(name):
    tree = ast.parse((EXAMPLES / name).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "agentctl":
            assert node.module == "agentctl", node.module
            assert {a.name for a in node.names} <= set(agentctl.__all__)
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] != "agentctl" for a in node.names)
