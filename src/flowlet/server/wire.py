"""HTTP framing checks the server library leaves to the application (RFC 9112).

The server parses the request; what it lets through here would otherwise be served as if it
were fine: an HTTP/1.1 request without a Host (or with two), a transfer coding the body was
never decoded from (a content coding likewise), a path whose percent-escapes are not UTF-8 (the server hands those on
with U+FFFD in place of the bytes), and a path that decodes to a NUL character (``%00``, refused
as nginx does: a flow would pass it on to file names, databases and C libraries). Each check is
a membership test on the common path.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from flowlet.errors import HTTPError
from flowlet.http import Request

# uri-host [":" port] (RFC 3986): an IP literal, or registered-name characters.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]*)?")
_VALID_HOSTS: set[str] = set()     # Host values seen valid (bounded)


def check_wire(req: Request) -> None:
    """Raise HTTPError (400, 415 or 501) when the request's framing is not one to serve."""
    headers = req.headers
    if req.rsgi:                        # granian's map: ask for the two names, not for every header
        hosts = headers.get_all("host")
        if len(hosts) > 1:
            raise HTTPError(400, "more than one Host header")
        host = hosts[0] if hosts else None
    else:
        dups = req.duplicates
        if dups and ("host" in dups or "transfer-encoding" in dups):
            raise HTTPError(400, f"more than one {'Host' if 'host' in dups else 'Transfer-Encoding'} header")
        host = headers.get("host")
    # An absent Host reaches the application as an empty one; neither names the server, and
    # an http URI may not have an empty host.
    if not host:
        if req.http_version == "1.1":
            raise HTTPError(400, "missing Host header")
    elif host not in _VALID_HOSTS:
        if _HOST.fullmatch(host) is None:
            raise HTTPError(400, "invalid Host header")
        if len(_VALID_HOSTS) < 64:          # a server is reached under a few names: skip the regex
            _VALID_HOSTS.add(host)
    coding = headers.get("transfer-encoding")
    if coding is not None and req.rsgi and len(headers.get_all("transfer-encoding")) > 1:
        raise HTTPError(400, "more than one Transfer-Encoding header")
    if coding is not None and coding.strip().lower() != "chunked":
        # The server only removes the chunked framing: a gzip (or any other) coding would reach
        # the flow as if it were the body.
        raise HTTPError(501, "Transfer-Encoding other than chunked is not supported")
    content_coding = headers.get("content-encoding")
    if content_coding is not None and content_coding.strip().lower() not in ("", "identity"):
        raise HTTPError(415, "Content-Encoding of request bodies is not supported")
    if "\ufffd" in req.path and not _path_is_utf8(_scope(req, "raw_path")):
        raise HTTPError(400, "request path does not percent-decode to UTF-8")
    if "\x00" in req.path:
        raise HTTPError(400, "request path holds a NUL character (%00)")


def _scope(req: Request, name: str) -> str | bytes | None:
    """A field of the server's request scope: an ASGI dict, or an RSGI object (no raw path)."""
    scope = req.scope
    return scope.get(name) if isinstance(scope, dict) else getattr(scope, name, None)


def _path_is_utf8(raw_path: bytes | None) -> bool:
    """Whether the path as sent decodes to UTF-8. Without the raw path (an interface that
    only gives the decoded one) a replacement character means the bytes were not UTF-8."""
    if raw_path is None:
        return False
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
