"""The client side: a fresh action token for every ``tools/call`` (SPEC, "MCP").

:class:`CallSigner` holds an agent's key (from a home's keystore, an exported secret, or any
:class:`~agentctl.identity.Signer`) and its grant presentation, and signs action ``mcp.call`` on
``SERVER/TOOL`` bound to the call's canonical arguments, for the audience ``mcp:SERVER`` unless told
otherwise. With an SDK ``ClientSession``: ``await signer.call_tool(session, "search", {"q": "x"})``,
or pass ``meta=signer.meta("search", {"q": "x"})`` to ``session.call_tool`` yourself. With
``approvals=`` (a directory, or a list of approval tokens) each call carries the approval whose binding
matches it exactly (SPEC "Approvals"). Needs no SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..clock import Clock, system_clock
from ..errors import UsageError
from .mapping import ACTION, META_KEY, arguments_payload, check_server, check_tool, default_audience, resource_of

__all__ = ["CallSigner", "DEFAULT_CALL_TTL", "read_grant"]

#: An action token is used at once: a short life (a retried call needs a new token anyway).
DEFAULT_CALL_TTL = 60
_MAX_APPROVAL = 64 * 1024  # an approval file is a few hundred bytes: a larger file is none


def read_grant(path: str | Path) -> str:
    """A grant presentation from a file (outer whitespace ignored)."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise UsageError(f"no grant file {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the grant file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not text:
        raise UsageError(f"the grant file {path} is empty")
    return text


class CallSigner:
    """Signs tool calls for the server called ``server`` as ``signer`` under ``grant`` (a presentation,
    or None when the agent acts on its own authority).

    ``trust``/``recorder`` are passed to :func:`~agentctl.signing.sign_action_with` (the holder's checks
    of the grant, and the ``sign`` event of each call)."""

    def __init__(self, signer: Any, *, server: str, grant: str | None = None, audience: str | None = None,
                 ttl: int = DEFAULT_CALL_TTL, clock: Clock = system_clock, trust: Any = None, recorder: Any = None,
                 approvals: "str | Path | Sequence[str] | None" = None) -> None:
        self.signer = signer
        self.approvals = approvals
        if isinstance(approvals, (str, Path)) and not Path(approvals).is_dir():
            raise UsageError(f"no approvals directory {approvals}")
        self.server = check_server(server)
        self.audience = default_audience(self.server, audience)
        self.grant = grant
        self.ttl = ttl
        self.clock = clock
        self.trust = trust
        self.recorder = recorder

    @classmethod
    def from_secret(cls, text: str, **kw: Any) -> "CallSigner":
        """From an exported secret (``AGENTCTL-SECRET-KEY-1…``)."""
        from ..signing import signer_from_secret

        return cls(signer_from_secret(text), **kw)

    @classmethod
    def for_home(cls, ctx: Any, as_: str, **kw: Any) -> "CallSigner":
        """``as_``'s key from ``ctx``'s keystore (or ``AGENTCTL_SECRET_KEY``), checked against the home's
        trust; each call's ``sign`` event goes to ``recorder`` when one is given."""
        from ..identity import signer_for
        from ..store import Store
        from ..verify import StoreTrust

        kw.setdefault("trust", StoreTrust(Store(ctx.home)))
        kw.setdefault("clock", ctx.clock)
        return cls(signer_for(ctx, as_), **kw)

    def presentation(self, name: str, arguments: object = None) -> str:
        """The presentation for one call of tool ``name`` with ``arguments``: a fresh action token.
        A tool name outside MCP's set or arguments that are not I-JSON are ``malformed``."""
        from ..signing import sign_action_with

        tool = check_tool(name)
        payload = arguments_payload(arguments)
        resource = resource_of(self.server, tool)
        approval = self.approval_for(resource, payload) if self.approvals is not None else None
        return sign_action_with(self.signer, action=ACTION, resource=resource, grant=self.grant,
                                data=payload, audience=self.audience, ttl=self.ttl, clock=self.clock, trust=self.trust,
                                recorder=self.recorder, approval=approval)

    def _approval_texts(self) -> list[tuple[str, str]]:
        """(where, text) of every approval offered: each file of the directory (read at every call, so
        an approval dropped in later is found), or each text of the list."""
        if isinstance(self.approvals, (str, Path)):
            out = []
            try:
                files = sorted(p for p in Path(self.approvals).iterdir() if p.is_file())
            except OSError as e:
                raise UsageError(f"cannot read the approvals directory {self.approvals}: {e.strerror or e}") from None
            for f in files:
                try:
                    if f.stat().st_size <= _MAX_APPROVAL:
                        out.append((str(f), f.read_text(encoding="ascii")))
                except (OSError, UnicodeDecodeError):
                    continue  # not an approval: only an exact match is ever used
            return out
        return [(f"approvals[{i}]", t) for i, t in enumerate(self.approvals or ()) if isinstance(t, str)]

    def approval_for(self, resource: str, payload: bytes) -> str | None:
        """The approval to carry for ``mcp.call`` on ``resource`` with ``payload``: one whose binding
        matches exactly (agent, action, resource, payload digest, grant digest) and that has not
        expired (the latest-expiring when several do); None when none matches."""
        from .. import jws
        from ..actions import payload_digest
        from ..approvals import approval_from
        from ..errors import VerificationError
        from ..grants import parse_chain

        grant = parse_chain(self.grant.strip()).leaf.digest if self.grant is not None else None
        want = (self.signer.name, ACTION, resource, payload_digest(payload), grant)
        now = self.clock()
        best = None
        for _, text in self._approval_texts():
            try:
                a = approval_from(jws.decode(text.strip(), jws.APPROVAL))
            except (VerificationError, ValueError):  # EncodingError is a ValueError
                continue
            if (a.agent, a.action, a.resource, a.sha256, a.grant) == want and a.exp > now and a.nbf <= now + 60 \
                    and (best is None or a.exp > best.exp):
                best = a
        return best.text if best is not None else None

    def meta(self, name: str, arguments: object = None, meta: dict | None = None) -> dict:
        """``meta`` (the call's other ``_meta`` members) with the presentation added."""
        return {**(meta or {}), META_KEY: self.presentation(name, arguments)}

    async def call_tool(self, session: Any, name: str, arguments: dict | None = None, *, meta: dict | None = None, **kw: Any) -> Any:
        """``session.call_tool`` with a fresh presentation in ``_meta``."""
        return await session.call_tool(name, arguments, meta=self.meta(name, arguments, meta), **kw)
