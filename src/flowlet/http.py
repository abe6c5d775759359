"""The request as policies and flows see it: parsed once, lazily where parsing costs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable
from urllib.parse import parse_qsl

from flowlet.errors import HTTPError

if TYPE_CHECKING:
    from granian.rsgi import Scope as RSGIScope


class Request:
    """A read-only view of one HTTP request, from an ASGI scope (``Request(scope)``) or an RSGI
    one (``Request.from_rsgi(scope)``).

    ``headers`` maps lower-case names to the *last* value sent; ``duplicates`` holds the
    lower-case names that were sent more than once (CSRF refuses those). ``cookies`` and
    ``query`` are parsed on first use only.
    """

    __slots__ = ("scope", "method", "path", "headers", "duplicates", "_cookies", "_dup_cookies",
                 "_query", "secure", "client", "host", "query_string", "http_version", "rsgi", "route",
                 "refusal")
    # _dup_cookies: name -> every value sent, in order, for names sent more than once
    # route, refusal: what the server found (the matched route, the HTTPError that refused),
    # for the metrics and the access log

    def __init__(self, scope: dict):
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        headers: dict[str, str] = {}
        dups: set[str] | None = None
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            if name in headers:
                if dups is None:
                    dups = set()
                dups.add(name)
            headers[name] = v.decode("latin-1")
        self.headers = headers
        self.duplicates: frozenset[str] = frozenset(dups) if dups else frozenset()
        self.secure: bool = scope.get("scheme") == "https"
        # the direct peer and Host; a trusted proxy's forwarding headers may replace them (edge.proxy)
        peer = scope.get("client")
        self.client: str | None = peer[0] if peer else None
        self.host: str | None = headers.get("host")
        self._cookies: dict[str, str] | None = None
        self._dup_cookies: dict[str, list[str]] = {}
        self._query: dict[str, str] | None = None
        self.query_string: bytes | str = scope.get("query_string", b"")
        self.http_version: str = scope.get("http_version", "1.1")
        self.rsgi = False
        self.route: object | None = None
        self.refusal: HTTPError | None = None

    @classmethod
    def from_rsgi(cls, scope: RSGIScope) -> Request:
        """granian hands names in lower case and values as str (it drops a header whose value
        is not visible ASCII); dict() keeps the last value of a repeated name, as above."""
        self = cls.__new__(cls)
        self.scope = scope
        self.method = scope.method
        self.path = scope.path
        pairs = scope.headers.items()
        headers = self.headers = dict(pairs)
        self.duplicates = frozenset() if len(headers) == len(pairs) else _repeated(k for k, _ in pairs)
        self.secure = scope.scheme == "https"
        # the direct peer ("ip:port", "[v6]:port") and Host (HTTP/2: the :authority)
        peer = scope.client
        self.client = peer.rsplit(":", 1)[0].strip("[]") if peer else None
        self.host = headers.get("host") or scope.authority
        self._cookies = None
        self._dup_cookies = {}
        self._query = None
        self.query_string = scope.query_string
        self.http_version = scope.http_version
        self.rsgi = True
        self.route = None
        self.refusal = None
        return self

    def header_values(self, name: str) -> list[str]:
        """Every value sent for the lower-case header ``name``, in order."""
        if self.rsgi:
            return self.scope.headers.get_all(name)
        raw = name.encode("latin-1")
        return [v.decode("latin-1") for k, v in self.scope["headers"] if k.lower() == raw]

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            self._parse_cookies()
        return self._cookies  # type: ignore[return-value]

    @property
    def duplicate_cookies(self) -> dict[str, list[str]]:
        """Cookie names that appeared more than once in the Cookie header(s), with every value."""
        if self._cookies is None:
            self._parse_cookies()
        return self._dup_cookies

    def cookie_values(self, name: str) -> list[str]:
        """Every value sent for cookie ``name``, in the order sent (usually one, or none)."""
        many = self.duplicate_cookies.get(name)
        if many is not None:
            return many
        value = self.cookies.get(name)
        return [] if value is None else [value]

    def _parse_cookies(self) -> None:
        cookies: dict[str, str] = {}
        dups: dict[str, list[str]] = {}
        raw = self.headers.get("cookie", "")
        if "cookie" in self.duplicates:
            raw = "; ".join(self.header_values("cookie"))
        for part in raw.split(";"):
            name, sep, value = part.strip().partition("=")
            if not sep or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if name in cookies:
                dups.setdefault(name, [cookies[name]]).append(value)
            cookies[name] = value
        self._cookies = cookies
        self._dup_cookies = dups

    def expr_view(self) -> dict:
        """``request`` as expressions see it; ``client`` is the effective client address."""
        return {"method": self.method, "path": self.path, "headers": self.headers, "query": self.query,
                "cookies": self.cookies, "client": self.client}

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            qs = self.query_string
            if isinstance(qs, bytes):
                qs = qs.decode("latin-1")
            self._query = dict(parse_qsl(qs, keep_blank_values=True)) if qs else {}
        return self._query


def _repeated(names: Iterable[str]) -> frozenset[str]:
    seen: set[str] = set()
    dups: set[str] = set()
    for name in names:
        (dups if name in seen else seen).add(name)
    return frozenset(dups)
