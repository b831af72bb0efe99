"""Presentations: a chain's tokens joined by ``~`` (SPEC, "Token format").

    PRESENTATION = TOKEN *("~" TOKEN)      root grant, each re-delegated grant, [approval], [action]

Each token is a plain JWS that verifies on its own; a re-delegated grant names its parent in ``prf``
and an action names the leaf grant in ``grant`` and the approval in ``approval``, each as
:func:`digest` of the referenced token's text. :func:`parse` reads a presentation once: grammar, size,
count, order, references and the type each position requires. It trusts nothing; the pipeline in
:mod:`agentctl.verify` decides whether it holds.

Refused: more than 64 KiB, non-ASCII, inner whitespace, an empty token (``malformed``); more than
:data:`MAX_GRANTS` grants (``chain_broken``); a repeated token, a token nothing references, a token
out of its place (``malformed``); a reference to a token that is not there (``chain_broken``); the
earlier nested form, a token inside ``prf`` or ``grant`` (``unsupported``, hint: re-mint).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable

from . import jws
from .encoding import b64u_encode
from .errors import VerificationError
from .frozen import dataclass, field

__all__ = ["MAX_PRESENTATION_BYTES", "MAX_GRANTS", "SEP", "APPROVAL", "Presentation", "digest", "text_of", "split",
           "parse", "parse_grants", "check_reference", "nested_form"]

MAX_PRESENTATION_BYTES = 64 * 1024
MAX_GRANTS = 8
SEP = "~"
APPROVAL = jws.APPROVAL
_DIGEST = re.compile(r"[A-Za-z0-9_-]{43}")
_POSITIONS = (jws.GRANT, APPROVAL, jws.ACTION)
_ORDER = "a presentation holds the grants, root first, then the approval if any, then the action"
REMINT = "re-mint it with this version of agentctl (delegate, then delegate --parent and sign --grant with the presentation)"


def _malformed(detail: str) -> VerificationError:
    return VerificationError("malformed", detail)


def digest(token: str) -> str:
    """The reference to a token: base64url (no padding) of SHA-256 over its ASCII text."""
    return b64u_encode(hashlib.sha256(token.encode("ascii")).digest())


def nested_form(what: str) -> VerificationError:
    """The earlier nested form (a token where a digest belongs): unsupported, with a hint to re-mint."""
    e = VerificationError("unsupported", f"{what} holds a token, not its digest: this is the earlier nested form, "
                                         "which presentations replace")
    e.hint = REMINT
    return e


def check_reference(value: object, what: str) -> str | None:
    """A ``prf``/``grant``/``approval`` claim: absent, or a digest. A token in it is the nested form."""
    if value is None:
        return None
    if isinstance(value, str) and _DIGEST.fullmatch(value):
        return value
    if isinstance(value, str) and value.count(".") == 2:
        raise nested_form(what)
    raise _malformed(f"{what} must be the base64url SHA-256 digest of the token it names (43 characters)")


def text_of(token: object) -> str:
    """The presentation's text: ASCII, at most 64 KiB, outer whitespace dropped, none inside."""
    text = jws.ascii_text(token, MAX_PRESENTATION_BYTES, "presentation")
    if not text.isascii():
        raise _malformed("presentation is not ASCII")
    if len(text.split(None, 1)) != 1:  # str.split's whitespace is the regex's \s, found faster
        raise _malformed("whitespace inside a presentation: its tokens are joined by '~' alone")
    return text


def split(token: object) -> list[str]:
    """The tokens of a presentation, by the grammar alone: none empty, none repeated."""
    return _split(text_of(token))


def _split(text: str) -> list[str]:
    parts = text.split(SEP)
    if "" in parts:
        raise _malformed(f"an empty token in the presentation (token {parts.index('') + 1} of {len(parts)})")
    n = len(parts)
    if n > 1 and (any(parts[i] == parts[j] for i in range(1, n) for j in range(i)) if n <= 4
                  else len(set(parts)) != n):  # a few tokens: compared, not hashed
        seen: set = set()
        for i, p in enumerate(parts):
            if p in seen:
                raise _malformed(f"token {i + 1} of the presentation repeats an earlier one")
            seen.add(p)
    return parts


def _misplaced(what: str, value: str, parts: list[str]) -> VerificationError:
    """A reference that does not name the token its position requires: to a token elsewhere in the
    presentation, out of order (malformed); to no token there, chain_broken."""
    where = {digest(p): i for i, p in enumerate(parts)}.get(value)
    if where is not None:
        return _malformed(f"{what} names token {where + 1} of the presentation, out of order: {_ORDER}")
    return VerificationError("chain_broken", f"{what} names a token that is not in the presentation")


def parse_grants(parts: list[str], last: jws.Jws | None = None):
    """The :class:`~agentctl.grants.Chain` of the grant tokens ``parts`` (root first), each parsed once
    and each referencing the one before it. The last token is decoded first (``last``: already
    decoded), then the others in order."""
    global _grants
    if _grants is None:
        from . import grants as _grants
    Chain, hop_from, quick_hop = _grants.Chain, _grants.hop_from, _grants.quick_hop
    if len(parts) > MAX_GRANTS:
        raise VerificationError("chain_broken", f"the presentation holds {len(parts)} grants; at most {MAX_GRANTS}")
    hops: list = []
    n = len(parts)
    # A usual grant is read in one pass (quick_hop); any other is decoded and checked step by step,
    # which names its fault, in the same order as ever: the last token's decoding first.
    quick_last = quick_hop(parts[-1]) if last is None else None
    if last is None and quick_last is None:
        last = jws.decode(parts[-1], _POSITIONS, clean=True)
    for i, part in enumerate(parts):
        hop = quick_last if i == n - 1 else quick_hop(part)
        if hop is None:
            t = last if i == n - 1 and last is not None else jws.decode(part, _POSITIONS, clean=True)  # each decoded once
            if t.typ != jws.GRANT:
                raise _malformed(f"token {i + 1} of the presentation is an {t.typ.split('-')[1].split('+')[0]} where a "
                                 f"grant must stand: {_ORDER}")
            hop = hop_from(t, part, i + 1)
        if i == 0:
            if hop.prf is not None:
                raise _misplaced("the first grant's 'prf'", hop.prf, parts)
        elif hop.prf is None:
            raise _malformed(f"grant {i + 1} is a root grant (no 'prf'), so nothing references grant {i}: {_ORDER}")
        elif hop.prf != hops[-1].digest:
            raise _misplaced(f"grant {i + 1}'s 'prf'", hop.prf, parts)
        hops.append(hop)
    chain = object.__new__(Chain)  # as Chain(...) would (a frozen dataclass, built without its __init__)
    chain.__dict__["hops"] = tuple(hops)
    return chain


@dataclass(frozen=True)
class Presentation:
    """A parsed presentation: the chain (or None), the approval token (or None), the action (or None)."""

    text: str = field(repr=False)
    chain: object | None
    approval: jws.Jws | None = field(repr=False)
    action: object | None

    @property
    def kind(self) -> str:
        return "action" if self.action is not None else "grant"

    @property
    def grants_text(self) -> str | None:
        return self.chain.text if self.chain is not None else None  # type: ignore[attr-defined]


def _presentation(text: str, chain: object, approval: jws.Jws | None, action: object) -> Presentation:
    p = object.__new__(Presentation)  # every field set, as Presentation(...) would (a frozen dataclass, built without its __init__)
    p.__dict__.update(text=text, chain=chain, approval=approval, action=action)
    return p


_grants: Any = None  # agentctl.grants, imported on first use (it imports this module)
_action_from: Any = None


def parse(token: object, *, expect: str | None = None, chains: Callable[..., object] | None = None) -> Presentation:
    """Parse a presentation once. ``expect`` ("grant" or "action") requires the last token's type;
    ``chains(text, parts)`` may supply the chain of a grant prefix (its text and tokens), e.g. from a
    cache; by default :func:`parse_grants` parses it. The last token's header is read first, and the
    last token is the first decoded."""
    global _action_from
    text = text_of(token)
    parts = _split(text)
    header, typ = jws.peek(parts[-1], _POSITIONS, clean=True)
    if expect is not None and typ != (jws.ACTION if expect == "action" else jws.GRANT):
        raise _malformed(f"expected a {jws.ACTION if expect == 'action' else jws.GRANT} token, got {header['typ']!r}")
    if typ == APPROVAL:
        raise _malformed(f"the presentation ends with an approval: {_ORDER}")
    if typ == jws.GRANT:
        if len(parts) > MAX_GRANTS:  # refused before any hop is parsed
            raise VerificationError("chain_broken", f"the presentation holds {len(parts)} grants; at most {MAX_GRANTS}")
        return _presentation(text, chains(text, parts) if chains is not None else parse_grants(parts), None, None)
    if _action_from is None:
        from .actions import action_from as _action_from
    act = _action_from(jws.decode(parts[-1], jws.ACTION, clean=True))
    rest = parts[:-1]
    approval = None
    if act.approval is not None:
        if not rest or digest(rest[-1]) != act.approval:
            raise _misplaced("the action's 'approval'", act.approval, parts)
        approval = jws.decode(rest[-1], _POSITIONS, clean=True)
        if approval.typ != APPROVAL:
            raise _malformed(f"the action's 'approval' names a {approval.typ} token: {_ORDER}")
        rest = rest[:-1]
    if act.grant is None:
        if rest:
            raise _malformed(f"the action names no grant, so nothing references token {len(rest)} of the presentation: {_ORDER}")
        return Presentation(text, None, approval, act)
    if not rest or digest(rest[-1]) != act.grant:
        raise _misplaced("the action's 'grant'", act.grant, parts)
    if len(rest) > MAX_GRANTS:
        raise VerificationError("chain_broken", f"the presentation holds {len(rest)} grants; at most {MAX_GRANTS}")
    return Presentation(text, chains(SEP.join(rest), rest) if chains is not None else parse_grants(rest), approval, act)
