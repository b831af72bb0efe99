"""Cedar sets on ``cedarpy``, behind :class:`PolicySet`.

The input document maps onto fixed entity types (the schema below, printed by ``agentctl policy
schema --cedar``): the principal ``Agentctl::Agent::"<agent.id>"`` (attributes ``kid``, ``known``,
``attrs``; parents its roles, ``Agentctl::Role::"<role>"``), the action ``Agentctl::Action::"<action>"``,
the resource ``Agentctl::Resource::"<resource.id>"`` (the context's resource attributes), and the user
``Agentctl::User::"<id>"`` (parents: its roles). The Cedar context holds ``delegation`` (its ``user`` an
entity reference to that user), ``approval``, ``token``, ``payload``, ``context`` and ``now``, null
members omitted. A set allows only on ``Allow`` with no errors; a ``forbid`` overrides every ``permit``.
Cedar evaluation always terminates, so no time-out applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OperationalError, UsageError
from . import Decision, PolicyFile, PolicySet

__all__ = ["CedarSet", "SCHEMA", "compile_set", "check_files", "to_request"]

INSTALL_HINT = "install the cedar extra of this checkout: pip install -e '.[cedar]' (cedarpy)"

SCHEMA = """\
// The entity types agentctl maps a policy input document onto (agentctl policy schema --cedar).
// Actions are the verified action names; 'policy check' declares each one its policies name.
namespace Agentctl {
  entity Role;
  entity User in [Role] {
    attrs?: {},
  };
  entity Agent in [Role] {
    kid: String,
    known: Bool,
    attrs?: {},
  };
  entity Resource;
  type Hop = {
    iss: String,
    holder: String,
    scope: Set<String>,
    iat: Long,
    exp: Long,
    jti: String,
  };
  type Context = {
    delegation?: {
      user: User,
      user_role?: String,
      user_roles: Set<String>,
      user_attrs?: {},
      chain: Set<Hop>,
      depth: Long,
      issued_at: Long,
      expires_at: Long,
    },
    approval?: { by: String, at: Long, note?: String, jti: String },
    token: { type: String, jti?: String, iat?: Long, exp?: Long, aud?: Set<String> },
    payload?: { sha256?: String },
    context: {},
    now: Long,
  };
}
"""

_ACTION_DECL = '  action "{name}" appliesTo {{ principal: [Agent], resource: [Resource], context: Context }};\n'


def _cedarpy():
    try:
        import cedarpy
    except ImportError:
        raise OperationalError("the cedar engine is not installed (cedarpy)", hint=INSTALL_HINT) from None
    return cedarpy


@dataclass(frozen=True)
class Compiled:
    files: tuple[str, ...]
    query: str
    digest: str
    policies: object  # cedarpy.PolicySet


def compile_set(files: list[PolicyFile], query: str, digest: str) -> Compiled:
    cedarpy = _cedarpy()
    for f in files:  # each file alone first, so an error names its file
        _parse(cedarpy, f)
    text = "\n".join(f.text for f in files)
    if not re.search(r"\b(permit|forbid)\s*\(", text):
        raise UsageError(f"policy set {', '.join(f.path for f in files)} holds no permit or forbid policy")
    return Compiled(tuple(f.path for f in files), query, digest, _parse(cedarpy, PolicyFile(", ".join(f.path for f in files), text, b"")))


def _parse(cedarpy, f: PolicyFile):
    try:
        return cedarpy.PolicySet.from_str(f.text)
    except ValueError as e:
        raise UsageError(f"policy {f.path} does not compile: {str(e).splitlines()[0] if str(e) else 'parse error'}") from None


def schema_for(text: str) -> str:
    """The shipped schema with an action declared for each action the policies name."""
    names = sorted(set(re.findall(r'Agentctl::Action::"((?:[^"\\]|\\.)*)"', text)))
    decls = "".join(_ACTION_DECL.format(name=n) for n in names)
    return SCHEMA.rstrip().rstrip("}") + decls + "}\n"


def check_files(files: list[PolicyFile]) -> list[str]:
    """Compile, then validate against the schema; the validator's findings, one line each."""
    cedarpy = _cedarpy()
    for f in files:
        _parse(cedarpy, f)
    findings = []
    for f in files:
        result = cedarpy.validate_policies(f.text, schema_for(f.text))
        for err in result.errors:
            findings.append(f"{f.path}: {err}")
    return findings


def _strip_nulls(value: object) -> object:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value if v is not None]
    return value


def _uid(kind: str, ident: object) -> dict:
    return {"type": f"Agentctl::{kind}", "id": "" if ident is None else str(ident)}


def to_request(doc: dict) -> tuple[dict, list[dict]]:
    """The Cedar request and entities for an input document."""
    agent = doc.get("agent") or {}
    resource = doc.get("resource") or {}
    roles = set(agent.get("roles") or [])
    entities = [
        {"uid": _uid("Agent", agent.get("id")),
         "attrs": _strip_nulls({"kid": agent.get("kid"), "known": bool(agent.get("known")), "attrs": agent.get("attrs") or {}}),
         "parents": [_uid("Role", r) for r in sorted(agent.get("roles") or [])]},
        {"uid": _uid("Resource", resource.get("id")),
         "attrs": _strip_nulls({k: v for k, v in resource.items() if k != "id"}), "parents": []},
        {"uid": _uid("Action", doc.get("action")), "attrs": {}, "parents": []},
    ]
    context = {k: doc.get(k) for k in ("delegation", "approval", "token", "payload", "context", "now")}
    delegation = doc.get("delegation")
    if isinstance(delegation, dict) and delegation.get("user") is not None:
        user_roles = list(delegation.get("user_roles") or [])
        roles.update(user_roles)
        entities.append({"uid": _uid("User", delegation["user"]),
                         "attrs": {"attrs": _strip_nulls(delegation.get("user_attrs") or {})},
                         "parents": [_uid("Role", r) for r in sorted(user_roles)]})
        context["delegation"] = {**delegation, "user": {"__entity": _uid("User", delegation["user"])}}
    entities.extend({"uid": _uid("Role", r), "attrs": {}, "parents": []} for r in sorted(roles))
    request = {
        "principal": _uid("Agent", agent.get("id")),
        "action": _uid("Action", doc.get("action")),
        "resource": _uid("Resource", resource.get("id")),
        "context": _strip_nulls(context),
    }
    return request, entities  # type: ignore[return-value]  # JSON values, as cedarpy takes them


class CedarSet(PolicySet):
    engine = "cedar"

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.query = compiled.query
        self.digest = compiled.digest
        self.files = compiled.files

    def decide(self, input_doc: dict) -> Decision:
        cedarpy = _cedarpy()
        try:
            request, entities = to_request(input_doc)
            result = cedarpy.is_authorized(request, self.compiled.policies, entities)
        except Exception as e:  # noqa: BLE001 - a value Cedar cannot take (a float) is a deny, never a crash
            return self._decision(False, None, f"evaluation error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        decision = result.decision.value
        diag = result.diagnostics
        names = [diag.id_annotations_by_reason.get(r) or r for r in diag.reasons]
        by = f" (decided by {', '.join(names)})" if names else " (no policy applied)"
        if diag.errors:
            return self._decision(False, decision, f"evaluation error: {diag.errors[0]}" + (f" (and {len(diag.errors) - 1} more)" if len(diag.errors) > 1 else ""))
        if decision == "Allow":
            return self._decision(True, decision, "Allow" + by)
        return self._decision(False, decision, decision + by)
