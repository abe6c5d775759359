"""Request.from_rsgi: granian's header map is read name by name, and each scope field only when
something asks for it (an open GET asks for none). The real server is covered by every HTTP test;
here a scope that behaves like granian's counts what was read."""

from __future__ import annotations

import pytest

from flowlet.errors import HTTPError
from flowlet.http import Request
from flowlet.server.wire import check_wire


class Headers:
    """granian's RSGIHeaders: get/items leave out values that are not visible ASCII; `in` does not."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = pairs
        self.calls: list[str] = []

    def _ok(self, value: str) -> bool:
        return value.isascii() and value.isprintable()

    def get(self, key, default=None):
        self.calls.append(f"get {key}")
        found = [v for k, v in self.pairs if k == key and self._ok(v)]
        return found[0] if found else default

    def get_all(self, key):
        self.calls.append(f"get_all {key}")
        return [v for k, v in self.pairs if k == key and self._ok(v)]

    def items(self):
        self.calls.append("items")
        return [(k, v) for k, v in self.pairs if self._ok(v)]

    def __contains__(self, key):
        self.calls.append(f"in {key}")
        return any(k == key for k, _ in self.pairs)

    def __len__(self):
        return len({k for k, _ in self.pairs})

    def __getitem__(self, key):
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


class Scope:
    FIELDS = {"proto": "http", "method": "GET", "path": "/api/x", "scheme": "http", "client": "10.0.0.7:51234",
              "http_version": "1.1", "query_string": "a=1&b=2", "authority": None, "server": "127.0.0.1:8080"}

    def __init__(self, pairs, **fields):
        self._fields = {**self.FIELDS, **fields}
        self._headers = Headers(pairs)
        self.read: list[str] = []

    def __getattr__(self, name):
        if name == "headers":
            self.read.append(name)
            return self._headers
        if name in self.FIELDS:
            self.read.append(name)
            return self._fields[name]
        raise AttributeError(name)


def test_building_a_request_reads_only_method_path_and_the_header_map():
    scope = Scope([("host", "example.com")])
    req = Request.from_rsgi(scope)
    assert scope.read == ["method", "path", "headers"]
    assert scope._headers.calls == []
    assert (req.method, req.path) == ("GET", "/api/x")


def test_fields_are_read_once_when_first_asked_for():
    scope = Scope([("host", "example.com")], scheme="https", client="[::1]:5000")
    req = Request.from_rsgi(scope)
    assert req.client == "::1" and req.secure and req.host == "example.com"
    assert req.query_string == "a=1&b=2" and req.query == {"a": "1", "b": "2"} and req.http_version == "1.1"
    first = list(scope.read)
    req.client, req.secure, req.host, req.http_version  # noqa: B018
    assert scope.read == first


def test_a_trusted_proxy_can_replace_client_scheme_and_host():
    req = Request.from_rsgi(Scope([("host", "internal:8080")]))
    req.client, req.secure, req.host = "203.0.113.9", True, "api.example.com"
    assert (req.client, req.secure, req.host) == ("203.0.113.9", True, "api.example.com")


def test_http2_host_is_the_authority():
    req = Request.from_rsgi(Scope([], http_version="2", authority="example.com"))
    assert req.host == "example.com"


def test_wire_check_of_a_plain_request_asks_for_host_and_codings_only():
    scope = Scope([("host", "example.com"), ("user-agent", "x"), ("accept", "*/*")])
    check_wire(Request.from_rsgi(scope))
    assert "items" not in scope._headers.calls
    assert scope._headers.calls == ["get_all host", "get transfer-encoding", "get content-encoding"]


@pytest.mark.parametrize("pairs, message", [
    ([("host", "a"), ("host", "b")], "more than one Host header"),
    ([("host", "a"), ("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")],
     "more than one Transfer-Encoding header"),
    ([], "missing Host header"),
])
def test_wire_check_refuses_repeated_or_missing_host(pairs, message):
    with pytest.raises(HTTPError) as err:
        check_wire(Request.from_rsgi(Scope(pairs)))
    assert err.value.status == 400 and err.value.message == message


def test_duplicates_and_header_map_come_from_one_read_of_every_header():
    scope = Scope([("host", "h"), ("origin", "https://a"), ("origin", "https://b"), ("x-bad", "caf\u00e9\x01")])
    req = Request.from_rsgi(scope)
    assert req.duplicates == frozenset({"origin"})
    assert req.header_map() == {"host": "h", "origin": "https://b"}     # last value wins; x-bad left out
    assert scope._headers.calls == ["items"]


def test_repeated_asks_for_one_name_until_every_header_was_read():
    scope = Scope([("host", "h"), ("authorization", "Basic a"), ("authorization", "Basic b")])
    req = Request.from_rsgi(scope)
    assert req.repeated("authorization") and not req.repeated("host")
    assert "items" not in scope._headers.calls
    assert req.duplicates == frozenset({"authorization"})
    calls = len(scope._headers.calls)
    assert req.repeated("authorization")
    assert len(scope._headers.calls) == calls                          # answered from the duplicates


@pytest.mark.parametrize("read_all_first", [False, True])
def test_cookies_of_several_field_lines_are_joined(read_all_first):
    # HTTP/2 sends one field line per cookie.
    req = Request.from_rsgi(Scope([("host", "h"), ("cookie", "a=1"), ("cookie", "csrf=x; b=2"), ("cookie", "a=3")]))
    if read_all_first:
        assert req.duplicates == frozenset({"cookie"})
    assert req.cookies == {"a": "3", "csrf": "x", "b": "2"}
    assert req.cookie_values("a") == ["1", "3"]


def test_expressions_see_a_plain_dict_of_headers():
    req = Request.from_rsgi(Scope([("host", "h"), ("x-one", "1")]))
    view = req.expr_view()
    assert type(view["headers"]) is dict and view["headers"] == {"host": "h", "x-one": "1"}
    assert view["client"] == "10.0.0.7"


def test_an_asgi_request_offers_the_same_fields():
    req = Request({"type": "http", "method": "POST", "path": "/p", "scheme": "https", "client": ("10.1.1.1", 9),
                   "query_string": b"q=1", "http_version": "2",
                   "headers": [(b"host", b"h"), (b"Cookie", b"a=1"), (b"cookie", b"b=2")]})
    assert (req.secure, req.client, req.host, req.query_string, req.http_version) == \
        (True, "10.1.1.1", "h", b"q=1", "2")
    assert req.duplicates == frozenset({"cookie"}) and req.repeated("cookie") and not req.repeated("host")
    assert req.cookies == {"a": "1", "b": "2"}
    assert req.header_map() is req.headers
