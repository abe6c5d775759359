"""The request as policies and flows see it: parsed once, lazily where parsing costs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import parse_qsl

from flowlet.errors import HTTPError

if TYPE_CHECKING:
    from granian.rsgi import Scope as RSGIScope


class Request:
    """A read-only view of one HTTP request, from an ASGI scope (``Request(scope)``) or an RSGI
    one (``Request.from_rsgi(scope)``).

    ``headers`` maps lower-case names to the *last* value sent: a dict under ASGI, granian's
    own header map under RSGI (read name by name, never copied: ``get``, ``in``, ``[]``);
    ``header_map()`` is a plain dict of them either way. ``duplicates`` holds the lower-case
    names that were sent more than once (CSRF refuses those). Under RSGI the fields that
    cost a call into the server (``client``, ``secure``, ``host``, ``query_string``,
    ``http_version``, ``duplicates``), and ``cookies`` and ``query`` always, are read on
    first use only: an open GET asks for none of them.
    """

    __slots__ = ("scope", "method", "path", "headers", "_dups", "_cookies", "_dup_cookies",
                 "_query", "_secure", "_client", "_host", "_qs", "_version", "rsgi", "route",
                 "refusal", "_map")
    # _dup_cookies: name -> every value sent, in order, for names sent more than once
    # route, refusal: what the server found (the matched route, the HTTPError that refused),
    # for the metrics and the access log
    # _secure, _client, _host, _qs, _version, _dups, _map: _UNREAD until first use (RSGI)

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
        self.headers = self._map = headers
        self._dups: frozenset[str] = frozenset(dups) if dups else frozenset()
        self._secure: bool = scope.get("scheme") == "https"
        # the direct peer and Host; a trusted proxy's forwarding headers may replace them (edge.proxy)
        peer = scope.get("client")
        self._client: str | None = peer[0] if peer else None
        self._host: str | None = headers.get("host")
        self._cookies: dict[str, str] | None = None
        self._dup_cookies: dict[str, list[str]] = {}
        self._query: dict[str, str] | None = None
        self._qs: bytes | str = scope.get("query_string", b"")
        self._version: str = scope.get("http_version", "1.1")
        self.rsgi = False
        self.route: object | None = None
        self.refusal: HTTPError | None = None

    @classmethod
    def from_rsgi(cls, scope: RSGIScope) -> Request:
        """granian hands names in lower case and values as str (``get`` and ``items`` leave out
        a value that is not visible ASCII); every field but the method, the path and the header
        map (one copy made by granian) waits until something asks for it."""
        self = cls.__new__(cls)
        self.scope = scope
        self.method = scope.method
        self.path = scope.path
        self.headers = scope.headers
        self._dups = self._secure = self._client = self._host = self._qs = self._version = self._map = _UNREAD
        self._cookies = None
        self._dup_cookies = {}
        self._query = None
        self.rsgi = True
        self.route = None
        self.refusal = None
        return self

    # ---- fields read on first use (RSGI); a trusted proxy may set client, secure and host ----

    @property
    def duplicates(self) -> frozenset[str]:
        dups = self._dups
        if dups is _UNREAD:           # RSGI: every header once, kept as header_map() too
            pairs = self.headers.items()
            m = self._map = dict(pairs)
            dups = self._dups = frozenset() if len(m) == len(pairs) else _repeated(k for k, _ in pairs)
        return dups

    def repeated(self, name: str) -> bool:
        """Whether the lower-case header ``name`` was sent more than once (one call into
        granian's map for one name, where ``duplicates`` asks for every header)."""
        if self._dups is _UNREAD:
            return len(self.headers.get_all(name)) > 1
        return name in self._dups

    @property
    def secure(self) -> bool:
        secure = self._secure
        if secure is _UNREAD:
            secure = self._secure = self.scope.scheme == "https"
        return secure

    @secure.setter
    def secure(self, value: bool) -> None:
        self._secure = value

    @property
    def client(self) -> str | None:
        """The direct peer ("ip:port", "[v6]:port" from granian) as an address, or None."""
        client = self._client
        if client is _UNREAD:
            peer = self.scope.client
            client = self._client = peer.rsplit(":", 1)[0].strip("[]") if peer else None
        return client

    @client.setter
    def client(self, value: str | None) -> None:
        self._client = value

    @property
    def host(self) -> str | None:
        """Host as sent (HTTP/2: the :authority)."""
        host = self._host
        if host is _UNREAD:
            host = self._host = self.headers.get("host") or self.scope.authority
        return host

    @host.setter
    def host(self, value: str | None) -> None:
        self._host = value

    @property
    def query_string(self) -> bytes | str:
        """bytes under ASGI, str under RSGI."""
        qs = self._qs
        if qs is _UNREAD:
            qs = self._qs = self.scope.query_string
        return qs

    @property
    def http_version(self) -> str:
        version = self._version
        if version is _UNREAD:
            version = self._version = self.scope.http_version
        return version

    def header_map(self) -> dict[str, str]:
        """Every header as a plain dict (last value wins): what expressions and schemas see."""
        m = self._map
        if m is _UNREAD:
            self.duplicates           # reads them all once
            m = self._map
        return m

    def header_values(self, name: str) -> list[str]:
        """Every value sent for the lower-case header ``name``, in order."""
        if self.rsgi:
            return self.headers.get_all(name)
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
        if self._dups is _UNREAD:         # RSGI, headers not read yet: ask for the one name
            raw = "; ".join(self.headers.get_all("cookie"))
        elif "cookie" in self._dups:      # HTTP/2 sends one field line per cookie
            raw = "; ".join(self.header_values("cookie"))
        else:
            raw = self._map.get("cookie", "")
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
        return {"method": self.method, "path": self.path, "headers": self.header_map(), "query": self.query,
                "cookies": self.cookies, "client": self.client}

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            qs = self.query_string
            if isinstance(qs, bytes):
                qs = qs.decode("latin-1")
            self._query = dict(parse_qsl(qs, keep_blank_values=True)) if qs else {}
        return self._query


_UNREAD: Any = object()      # a lazily read field not read yet (None is a value: no client, no Host)


def _repeated(names: Iterable[str]) -> frozenset[str]:
    seen: set[str] = set()
    dups: set[str] = set()
    for name in names:
        (dups if name in seen else seen).add(name)
    return frozenset(dups)
