"""agentctl: cryptographic identities, delegation grants, signed actions and a tamper-evident audit
log for AI agents.

The public API is exactly the names in :data:`__all__`, each documented in ``docs/library.md``;
every module and every other name is private and may change without notice. The library never
prints or exits; every failure is an :class:`Error`. Names are imported lazily, so that
``import agentctl`` stays cheap for the command line.
"""

__version__ = "0.1.0"

#: public name -> the private module that defines it, grouped as docs/library.md presents them
_EXPORTS = {
    # failures
    "Error": "agentctl.errors",
    "UsageError": "agentctl.errors",
    "OperationalError": "agentctl.errors",
    "VerificationError": "agentctl.errors",
    "REASONS": "agentctl.errors",
    # time
    "system_clock": "agentctl.clock",
    "FixedClock": "agentctl.clock",
    # keys, without a home
    "Signer": "agentctl.signers",
    "signer_from_seed": "agentctl.signing",
    "signer_from_secret": "agentctl.signing",
    "public_from_did_key": "agentctl.encoding",
    "public_from_jwk": "agentctl.encoding",
    "did_key": "agentctl.encoding",
    # minting, without a home
    "delegate_with": "agentctl.delegation",
    "sign_action_with": "agentctl.signing",
    "request_with": "agentctl.approvals",
    "approve_with": "agentctl.approvals",
    "ApprovalRules": "agentctl.approvals",
    "Scope": "agentctl.scopes",
    "parse_scopes": "agentctl.scopes",
    # verifying, with or without a home
    "Verifier": "agentctl.verify",
    "Trust": "agentctl.verify",
    "StaticTrust": "agentctl.verify",
    "StoreTrust": "agentctl.verify",
    "Role": "agentctl.verify",
    "Principal": "agentctl.models",
    "Key": "agentctl.models",
    "Revocation": "agentctl.models",
    "Revocations": "agentctl.models",
    "verify_list": "agentctl.revocation_lists",
    "VerifiedGrant": "agentctl.verify",
    "VerifiedAction": "agentctl.verify",
    # policies (Rego and Cedar engines are optional extras, imported only when a set is compiled)
    "load_sets": "agentctl.policy",
    "PolicySet": "agentctl.policy",
    "Decision": "agentctl.policy",
    # once: seen-stores
    "SeenStore": "agentctl.seen",
    "MemorySeenStore": "agentctl.seen",
    "HomeSeenStore": "agentctl.seen",
    # recording decisions
    "Recorder": "agentctl.recording",
    "NO_AUDIT": "agentctl.recording",
    "NoRecorder": "agentctl.recording",
    "MemoryRecorder": "agentctl.recording",
    "HomeRecorder": "agentctl.recording",
    "Event": "agentctl.events",
    "AuditLog": "agentctl.audit",
    # a home: what the command line works in
    "Home": "agentctl.home",
    "Context": "agentctl.context",
    "keygen": "agentctl.identity",
    "rotate": "agentctl.identity",
    "import_principal": "agentctl.identity",
    "import_rotation": "agentctl.rotation_import",
    "set_roles": "agentctl.identity",
    "revoke_principal": "agentctl.identity",
    "revoke_key": "agentctl.identity",
    "revoke_grant": "agentctl.identity",
    "delegate": "agentctl.delegation",
    "sign_action": "agentctl.signing",
    # the MCP tool boundary (docs/mcp.md; an SDK server needs the mcp extra)
    "McpGuard": "agentctl.mcp",
    "McpSigner": "agentctl.mcp",
    "current_tool_call": "agentctl.mcp",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentctl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
