"""The MCP mapping (SPEC, "MCP"): a ``tools/call`` is action ``mcp.call`` on resource ``SERVER/TOOL``,
its payload the RFC 8785 canonical JSON of its ``arguments``; where the presentation travels; the
denial as a JSON-RPC error. Pure functions: no SDK, no I/O."""

from __future__ import annotations

import json
import re

from ..actions import check_audience, param_error, payload_digest
from ..encoding import EncodingError, b64u_decode, canonical_json, loads_strict
from ..errors import VerificationError

__all__ = ["ACTION", "META_KEY", "DENIED", "check_server", "check_tool", "resource_of", "default_audience",
           "arguments_payload", "denial_error", "is_interim"]

ACTION = "mcp.call"
META_KEY = "dev.agentctl/presentation"
#: The JSON-RPC error code of a denied call: outside JSON-RPC's reserved range, and not -32001 (a
#: time-out to some SDKs).
DENIED = -31001
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def check_server(server: str, param: str = "server") -> str:
    """The name given to a guard or a signer: 1–128 characters of ``A–Z a–z 0–9 _ - .`` (so that
    ``mcp.call:SERVER/*`` covers exactly its tools)."""
    if isinstance(server, str) and _NAME.fullmatch(server):
        return server
    raise param_error(param, f"bad server name {server!r}: 1 to 128 characters of A-Z a-z 0-9 _ - .")


def check_tool(name: object) -> str:
    """A tool name in MCP's recommended set, else ``malformed``."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return name
    shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:60]) + "…"
    raise VerificationError("malformed", f"tool name {shown} is not 1 to 128 characters of A-Z a-z 0-9 _ - .")


def resource_of(server: str, tool: str) -> str:
    return f"{server}/{tool}"


def default_audience(server: str, audience: str | None = None, param: str = "audience") -> str:
    if audience is None:
        return f"mcp:{server}"
    try:
        return check_audience(audience)
    except Exception as e:  # name the caller's parameter
        raise param_error(param, getattr(e, "message", str(e))) from None


def arguments_payload(arguments: object) -> bytes:
    """The payload an action binds: RFC 8785 canonical JSON of ``arguments`` (``{}`` when absent or
    null). Arguments that are not an object, or not I-JSON, are ``malformed``."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise VerificationError("malformed", f"the call's arguments are a {type(arguments).__name__}, not a JSON object")
    try:
        return canonical_json(arguments)
    except (EncodingError, ValueError, TypeError, RecursionError) as e:
        raise VerificationError("malformed", f"the call's arguments are not I-JSON: {e}") from None


def digest(payload: bytes) -> str:
    return payload_digest(payload)


def denial_error(e: VerificationError) -> dict:
    """The JSON-RPC ``error`` member of a denied call."""
    data = {"reason": e.reason, "detail": e.detail}
    extra = getattr(e, "mcp_data", None)  # approval_required: the binding an approver needs
    if isinstance(extra, dict):
        data.update(extra)
    return {"code": DENIED, "message": f"agentctl: denied: {e.reason}: {e.detail}", "data": data}


def is_interim(result: object) -> bool:
    """Whether a ``tools/call`` result is MCP's ``input_required`` interim result (the client retries
    the call with a fresh action token), not the final one; a wire mapping or an SDK model alike."""
    if isinstance(result, dict):
        return result.get("resultType") == "input_required"
    return getattr(result, "result_type", None) == "input_required"


# --- what a presentation carries, read after (or for) its verification -----------------------
def verified_iat(presentation: str | None) -> int | None:
    """The action's ``iat``, read when step 12 runs: every earlier step has verified the token (its
    JSON strictly), so a plain read of its claims is enough."""
    if presentation is None:
        return None
    try:
        iat = json.loads(b64u_decode(presentation.strip().rpartition("~")[2].split(".")[1])).get("iat")
    except (EncodingError, IndexError, ValueError, AttributeError):
        return None
    return iat if type(iat) is int else None


def _claims(presentation: object) -> dict:
    """The claims of a presentation's last token, unverified (read only for what the verifier has
    just checked, or to tell an approver what to approve); {} when unreadable."""
    if not isinstance(presentation, str) or len(presentation) > 65536:
        return {}
    try:
        claims = loads_strict(b64u_decode(presentation.strip().rsplit("~", 1)[-1].split(".")[1]))
    except (EncodingError, IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def approval_binding(presentation: str, resource: str, sha: str) -> dict:
    """What ``approval_required`` tells the caller: the binding an approval of this call must copy
    (SPEC, "MCP"). Step 10 runs after the signatures, so the action's agent and grant are verified."""
    claims = _claims(presentation)
    agent, grant = claims.get("iss"), claims.get("grant")
    return {"agent": agent if isinstance(agent, str) else None, "action": ACTION, "resource": resource,
            "payload_sha256": sha, "grant": grant if isinstance(grant, str) else None}
