"""The tamper-evident audit log.

- :mod:`.log`: :class:`AuditLog`, appending and querying (SQLite);
- :mod:`.schema`: the migrations, and the schema checked by definition;
- :mod:`.tree` and :mod:`.proof`: RFC 6962 Merkle trees, proofs and their verifiers;
- :mod:`.note`: C2SP signed notes and checkpoints;
- :mod:`.tamper`: the tamper verifier (:func:`~.tamper.verify`, :class:`~.tamper.VerifyReport`).

Names are imported lazily: ``agentctl.audit.tree`` and ``.note`` do not load SQLite.
"""

from __future__ import annotations

_EXPORTS = {
    "AuditLog": "log",
    "NotAnAuditLog": "log",
    "FIELDS": "log",
    "host_name": "log",
    "VerifyReport": "tamper",
    "parse_kept_checkpoint": "note",
    "SCHEMA_VERSION": "schema",
    "TABLES": "schema",
    "TRIGGERS": "schema",
    "Event": "..events",
    "OUTCOMES": "..events",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'agentctl.audit' has no attribute {name!r}")
    import importlib

    module = importlib.import_module("agentctl.events" if where == "..events" else f"agentctl.audit.{where}")
    return getattr(module, name)
