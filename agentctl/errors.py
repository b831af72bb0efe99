"""One error hierarchy for the whole library.

Every failure agentctl reports is an :class:`Error`. Each knows its exit code (see the table in
SPEC.md) and how to describe itself in one lower-case line, with an optional hint for the next step.
The CLI has a single ``except Error``; the library never prints or exits.
"""

from __future__ import annotations

__all__ = [
    "Error",
    "UsageError",
    "NotFoundError",
    "ExistsError",
    "SecretFormatError",
    "OperationalError",
    "StoreError",
    "KeystoreError",
    "PassphraseError",
    "DeniedError",
    "VerificationError",
    "REASONS",
    "KINDS",
]

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3

#: Verification reason codes, in the order of the pipeline that yields them (SPEC, "Verification").
REASONS = (
    "malformed",
    "unsupported",
    "bad_signature",
    "unknown_key",
    "untrusted_root",
    "revoked",
    "stale_revocations",
    "stale_trust",
    "expired",
    "not_yet_valid",
    "chain_broken",
    "scope_escalation",
    "scope_denied",
    "audience_mismatch",
    "payload_mismatch",
    "approval_required",
    "approval_invalid",
    "policy_denied",
    "replayed",
)


#: The kinds of failure a ``--json`` document names in ``error`` (SPEC "Exit codes and messages"), with
#: their exit codes. Every subclass of :class:`Error` is one of these; the subclass says more to Python.
KINDS = {"usage": EXIT_USAGE, "denied": EXIT_DENIED, "tampered": EXIT_DENIED, "operational": EXIT_OPERATIONAL}


class Error(Exception):
    """Base of every agentctl failure."""

    exit_code = EXIT_OPERATIONAL
    kind = "operational"
    #: The verification reason code of a verdict (:class:`VerificationError`); None for every other failure.
    reason: str | None = None
    #: The library parameter(s) the message names (``max_depth``, ``ttl``, …), so that a front end can
    #: name its own spelling of them (the CLI: its flags); None when it names none.
    param: str | tuple[str, ...] | None = None

    def __init__(self, message: str, *, hint: str | None = None, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if param is not None:
            self.param = param

    def describe(self) -> dict:
        """The one failure shape (SPEC "Commands"): ``ok``, ``error`` (a kind of :data:`KINDS`),
        ``reason`` (a reason code or None), ``message``, ``exit_code``, and ``hint`` where there is one."""
        doc: dict = {"ok": False, "error": self.kind, "reason": self.reason, "message": self.message, "exit_code": self.exit_code}
        if self.hint:
            doc["hint"] = self.hint
        return doc


class UsageError(Error):
    """Bad argument, bad name or duration, missing file (exit 2)."""

    exit_code = EXIT_USAGE
    kind = "usage"


class NotFoundError(UsageError):
    """A principal, key or file that does not exist."""

    kind = "usage"


class ExistsError(UsageError):
    """Something that must not exist yet does."""

    kind = "usage"


class SecretFormatError(UsageError):
    """An exported secret that is truncated, mistyped or not one at all."""

    kind = "usage"


class OperationalError(Error):
    """Keystore unavailable, store damaged, I/O failure (exit 3)."""

    exit_code = EXIT_OPERATIONAL
    kind = "operational"


class StoreError(OperationalError):
    """A damaged or unreadable file in the home; the message names the file."""

    kind = "operational"


class KeystoreError(OperationalError):
    """The keystore cannot be used."""

    kind = "operational"


class DeniedError(Error):
    """Something was checked and did not hold (exit 1)."""

    exit_code = EXIT_DENIED
    kind = "denied"


class PassphraseError(UsageError):
    """A key file's passphrase is missing or wrong (or the file was altered): a bad argument, exit 2.
    Exit 1 is kept for verdicts about tokens and the audit log."""

    kind = "usage"


class VerificationError(DeniedError):
    """A token did not verify. ``reason`` is one of :data:`REASONS`."""

    reason: str  # always a reason code here

    kind = "denied"

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:  # a programming error, never user input
            raise ValueError(f"unknown reason code {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def describe(self) -> dict:
        """The failure shape with the verdict's ``detail``."""
        return {**super().describe(), "detail": self.detail}
