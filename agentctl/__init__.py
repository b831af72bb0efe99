"""agentctl: cryptographic identities, delegation grants, signed actions and a tamper-evident audit
log for AI agents.

The library never prints or exits; every failure is an :class:`agentctl.errors.Error`. Names are
imported lazily so that ``import agentctl`` stays cheap for the command line.
"""

__version__ = "0.1.0"

_EXPORTS = {
    # surroundings
    "Context": "agentctl.context",
    "Home": "agentctl.home",
    "Store": "agentctl.store",
    "FixedClock": "agentctl.clock",
    # failures
    "Error": "agentctl.errors",
    "VerificationError": "agentctl.errors",
    "REASONS": "agentctl.errors",
    # verifying, with or without a home
    "Verifier": "agentctl.verify",
    "StaticTrust": "agentctl.verify",
    "StoreTrust": "agentctl.verify",
    "VerifiedGrant": "agentctl.verify",
    "VerifiedAction": "agentctl.verify",
    "NO_AUDIT": "agentctl.verify",
    "Role": "agentctl.verify",
    "MemorySeenStore": "agentctl.seen",
    "HomeSeenStore": "agentctl.seen",
    "Revocation": "agentctl.models",
    "Revocations": "agentctl.models",
    "verify_list": "agentctl.revocation_lists",
    # making things
    "keygen": "agentctl.identity",
    "rotate": "agentctl.identity",
    "delegate": "agentctl.delegation",
    "sign_action": "agentctl.signing",
    "delegate_with": "agentctl.delegation",
    "sign_action_with": "agentctl.signing",
    "signer_from_seed": "agentctl.signing",
    "signer_from_secret": "agentctl.signing",
    "Scope": "agentctl.scopes",
    "parse_scopes": "agentctl.scopes",
    # the audit log
    "AuditLog": "agentctl.audit",
    "Event": "agentctl.events",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentctl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
