"""agentctl: cryptographic identities, delegation grants, signed actions and a tamper-evident audit
log for AI agents.

The library never prints or exits; every failure is an :class:`agentctl.errors.Error`. Names are
imported lazily so that ``import agentctl`` stays cheap for the command line.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Context": "agentctl.context",
    "Home": "agentctl.home",
    "Store": "agentctl.store",
    "Error": "agentctl.errors",
    "VerificationError": "agentctl.errors",
    "FixedClock": "agentctl.clock",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentctl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
