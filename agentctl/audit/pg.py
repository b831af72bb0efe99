"""Connecting to the central audit store (PostgreSQL, through psycopg 3, the ``postgres`` extra).

The store's address is a libpq connection string, a URL (``postgresql://role@host/db``) or key=value
(``service=audit``), taken from ``--to``/``--from``, else ``AGENTCTL_AUDIT_URL``, else a libpq service
(``PGSERVICE``, with ``~/.pg_service.conf``). A password in an argument is refused: other users of the
machine can read the process list. Passwords come from ``~/.pgpass`` (``PGPASSFILE``), a service file
or ``AGENTCTL_AUDIT_URL``, and are never printed: :func:`describe` is the only form shown, and error
messages from the driver are scrubbed of the password before they are raised.

psycopg is imported only here, and only when a store is used.
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import parse_qsl, urlsplit

from ..errors import OperationalError, UsageError

__all__ = ["resolve_url", "refuse_password", "describe", "connect", "scrub", "require_psycopg"]

_INSTALL_HINT = ("install the postgres extra into agentctl's environment: pip install 'psycopg[binary]>=3.1' "
                 "(from a checkout: pip install -e '.[postgres]')")
_KV_PASSWORD = re.compile(r"(?:^|\s)password\s*=", re.IGNORECASE)


def _is_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def _password_of(text: str) -> str | None:
    if _is_url(text):
        try:
            parts = urlsplit(text)
            if parts.password:
                return parts.password
            for k, v in parse_qsl(parts.query):
                if k == "password":
                    return v
        except ValueError:
            return None
        return None
    m = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", text, re.IGNORECASE)
    return m.group(1).strip("'") if m else None


def refuse_password(text: str, option: str) -> None:
    """A usage error when ``text`` (given as an argument) carries a password. Never echoes it."""
    has = _password_of(text) is not None or (not _is_url(text) and _KV_PASSWORD.search(text) is not None)
    if has or (_is_url(text) and "password=" in text.lower()):
        raise UsageError(f"{option}: a password on the command line is refused (the process list shows it to other users)",
                         hint="put it in ~/.pgpass (PGPASSFILE) or a libpq service file, or set AGENTCTL_AUDIT_URL")


def resolve_url(given: str | None, option: str, env: Mapping[str, str]) -> str:
    """The connection string to use: the argument (never with a password), else
    ``AGENTCTL_AUDIT_URL``, else ``""`` when ``PGSERVICE`` names a libpq service."""
    if given is not None:
        if not given.strip():
            raise UsageError(f"{option}: an empty store address")
        refuse_password(given, option)
        return given
    url = env.get("AGENTCTL_AUDIT_URL")
    if url:
        return url
    if env.get("PGSERVICE"):
        return ""
    raise UsageError(f"no audit store given: use {option} URL, AGENTCTL_AUDIT_URL or a libpq service (PGSERVICE)")


def describe(url: str, env: Mapping[str, str] | None = None) -> str:
    """The store's address as it may be shown: without a password or query parameters."""
    if not url:
        return f"service={(env or {}).get('PGSERVICE', '?')}"
    if _is_url(url):
        try:
            p = urlsplit(url)
            user = f"{p.username}@" if p.username else ""
            host = p.hostname or ""
            port = f":{p.port}" if p.port else ""
            return f"{p.scheme}://{user}{host}{port}{p.path}"
        except ValueError:
            return "postgresql://?"
    return re.sub(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", "password=***", url)


def scrub(message: str, url: str) -> str:
    """``message`` without the password of ``url`` (driver errors may quote what they were given)."""
    pw = _password_of(url) if url else None
    first = message.strip().splitlines()[0] if message.strip() else "database error"
    return first.replace(pw, "***") if pw else first


def require_psycopg():
    try:
        import psycopg
    except ImportError:
        raise OperationalError("the central audit store needs psycopg 3, which is not installed", hint=_INSTALL_HINT) from None
    return psycopg


def connect(url: str, *, autocommit: bool = False):
    """A psycopg connection, or :class:`OperationalError` naming the store (without a password)."""
    psycopg = require_psycopg()
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10, application_name="agentctl")
    except psycopg.Error as e:
        raise OperationalError(f"cannot connect to the audit store {describe(url)}: {scrub(str(e), url)}") from None
