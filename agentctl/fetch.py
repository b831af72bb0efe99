"""Fetching a source's token over https:// or from a file:// path: conditional, bounded and timed.

At most :data:`MAX_REDIRECTS` redirects, each to https:// (never to http, never to file://); a body
larger than the limit is refused before it is all read; the whole fetch, redirects included, runs
within one timeout. A :class:`Fetcher` takes the TLS context to trust (the system's by default).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from .errors import DeniedError, OperationalError

__all__ = ["Fetcher", "Fetched", "Unreachable", "Refused", "MAX_REDIRECTS"]

MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


class Unreachable(OperationalError):
    """The source could not be fetched (exit 3); the last good copy stays."""

    kind = "unreachable"


class Refused(DeniedError):
    """The source answered with something that is refused (a redirect to http, too many redirects, a
    body over the limit): exit 1."""

    kind = "refused"


@dataclass(frozen=True)
class Fetched:
    body: bytes | None  # None: not modified (304)
    etag: str | None = None
    last_modified: str | None = None


class Fetcher:
    """Fetches one url. ``context`` is the TLS context (default: the system's trust store);
    ``monotonic`` measures the timeout."""

    def __init__(self, *, context: ssl.SSLContext | None = None, limit: int | None = None, monotonic=time.monotonic) -> None:
        from .jws import MAX_LIST_BYTES

        self.context = context
        self.limit = MAX_LIST_BYTES if limit is None else limit
        self.monotonic = monotonic

    def get(self, url: str, *, timeout: float, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        if url.startswith("file:"):
            return Fetched(self._file(url))
        deadline = self.monotonic() + timeout
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme != "https":
                raise Refused(f"refused a redirect to {parts.scheme or 'a relative'}:// url; sources are fetched over https only")
            status, headers, body = self._request(parts, deadline, etag, last_modified)
            if status in (301, 302, 303, 307, 308):
                location = headers.get("location")
                if not location:
                    raise Unreachable(f"{url} answered {status} without a Location")
                url = urljoin(url, location)
                continue
            if status == 304:
                return Fetched(None, etag, last_modified)
            if status != 200:
                raise Unreachable(f"{_plain(url)} answered HTTP {status}")
            return Fetched(body, headers.get("etag"), headers.get("last-modified"))
        raise Refused(f"more than {MAX_REDIRECTS} redirects")

    def _request(self, parts, deadline: float, etag, last_modified):
        left = deadline - self.monotonic()
        if left <= 0:
            raise Unreachable("timed out")
        context = self.context or _default_context()
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=left, context=context)
        try:
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            headers = {"User-Agent": "agentctl", "Accept": "application/jwt, */*"}
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            length = hdrs.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                raise Refused(f"the source serves {length} bytes; at most {self.limit}")
            body = bytearray()
            if resp.status == 200:
                while True:
                    if self.monotonic() > deadline:
                        raise Unreachable("timed out while reading")
                    if conn.sock is not None:
                        conn.sock.settimeout(max(0.001, deadline - self.monotonic()))
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    body += chunk
                    if len(body) > self.limit:
                        raise Refused(f"the source serves more than {self.limit} bytes")
            return resp.status, hdrs, bytes(body)
        except (socket.timeout, TimeoutError):
            raise Unreachable("timed out") from None
        except ssl.SSLError as e:
            raise Unreachable(f"TLS failed: {e.reason or e}") from None
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f"cannot fetch: {getattr(e, 'strerror', None) or type(e).__name__}") from None
        finally:
            conn.close()

    def _file(self, url: str) -> bytes:
        path = unquote(urlsplit(url).path)
        try:
            with open(path, "rb") as f:
                body = f.read(self.limit + 1)
        except FileNotFoundError:
            raise Unreachable(f"no such file: {path}") from None
        except OSError as e:
            raise Unreachable(f"cannot read {path}: {e.strerror or e}") from None
        if len(body) > self.limit:
            raise Refused(f"{path} is larger than {self.limit} bytes")
        return body


_DEFAULT_CONTEXT: ssl.SSLContext | None = None


def _default_context() -> ssl.SSLContext:
    """The system's trust store, loaded once per process (loading it costs milliseconds per fetch)."""
    global _DEFAULT_CONTEXT
    if _DEFAULT_CONTEXT is None:
        _DEFAULT_CONTEXT = ssl.create_default_context()
    return _DEFAULT_CONTEXT


def _plain(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}{':' + str(p.port) if p.port else ''}{p.path}"
