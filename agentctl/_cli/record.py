"""Recording decisions from the commands: the library's :class:`~agentctl.recording.HomeRecorder`.

A command makes its recorder before it acts, so a log that cannot be opened fails the command
(exit 3) before anything changes; it records after it acts, and a failed append fails the command too.
"""

from __future__ import annotations

from ..recording import HomeRecorder as Recorder
from ..recording import audit_signer, host_keys

__all__ = ["Recorder", "audit_signer", "host_keys"]
