"""CORS policy: the per-flow config model, the per-path merge and the request-time answers."""

from __future__ import annotations

import textwrap

import pytest

from flowlet.errors import ConfigError
from flowlet.security.cors import (CorsConfig, FlowCorsInput, PathCors, csrf_endpoint_cors,
                                   merge_path, parse_cors, parse_origin)
from flowlet.source import load_yaml
from fakes import request

PATH = "/api/user/{id:int}"
SEED_ORIGIN = "https://test.example.com"


def cors(body: str, file: str = "flows/x.yaml") -> CorsConfig:
    """Parse a flow's ``cors:`` block written as YAML (the block starts on line 2)."""
    text = "endpoint:\n  cors:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    return parse_cors(load_yaml(text, file)["endpoint"]["cors"])


def load_error(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cors(body)
    return info.value


def flow(method: str, body: str | None, *, auth: bool = False, csrf: bool = False,
         file: str | None = None) -> FlowCorsInput:
    file = file or f"flows/{method.lower()}.yaml"
    return FlowCorsInput(method=method, cors=cors(body, file) if body is not None else None,
                         uses_auth=auth, csrf=csrf, where=(file, 1))


def merged(*flows: FlowCorsInput, path: str = PATH) -> PathCors:
    answer, _ = merge_path(path, list(flows), "X-CSRF-TOKEN")
    assert answer is not None
    return answer


def preflight(answer: PathCors, origin: str | None = SEED_ORIGIN, method: str = "PUT",
              headers: str | None = None) -> tuple[int, list[tuple[bytes, bytes]]]:
    h = {"access-control-request-method": method}
    if origin is not None:
        h["origin"] = origin
    if headers is not None:
        h["access-control-request-headers"] = headers
    return answer.preflight(request(h, method="OPTIONS", path="/api/user/1"))


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [k for k, _ in headers]


def value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    found = [v for k, v in headers if k == name]
    assert len(found) <= 1, f"{name!r} sent {len(found)} times"
    return found[0] if found else None


SEED = """\
allow: selected
domains: "*.example.com"
headers: Content-Type
max_age: 300
"""


def seed_path() -> PathCors:
    return merged(flow("GET", SEED), flow("PUT", SEED))


# ---- docs/cors.md's examples -------------------------------------------------------------------

def test_seed_example_preflight_is_exactly_the_documented_answer():
    status, headers = preflight(seed_path(), headers="content-type")
    assert status == 204
    assert headers == [
        (b"access-control-allow-origin", b"https://test.example.com"),
        (b"access-control-allow-methods", b"PUT, GET"),
        (b"access-control-allow-headers", b"Content-Type"),
        (b"access-control-max-age", b"300"),
        (b"vary", b"Origin"),
    ]


def test_seed_example_defaults_give_the_same_answer():
    minimal = "allow: selected\ndomains: '*.example.com'\n"
    answer = merged(flow("PUT", minimal), flow("GET", minimal))
    assert preflight(answer) == preflight(seed_path())


def test_allowed_methods_order_does_not_depend_on_flow_order():
    for order in (("GET", "PUT"), ("PUT", "GET")):
        answer = merged(*(flow(m, SEED) for m in order))
        assert value(preflight(answer)[1], b"access-control-allow-methods") == b"PUT, GET"


def test_all_writes_come_before_get_in_allowed_methods():
    answer = merged(*(flow(m, SEED) for m in ("GET", "DELETE", "PATCH", "POST", "PUT")))
    assert value(preflight(answer)[1], b"access-control-allow-methods") == \
        b"PUT, POST, PATCH, DELETE, GET"


def test_seed_header_merge_allows_both_headers_on_both_methods():
    post = flow("POST", "allow: selected\ndomains: '*.example.com'\nheaders: X-Foo\n")
    put = flow("PUT", "allow: selected\ndomains: '*.example.com'\nheaders: X-Bar\n")
    answer = merged(post, put)
    for method in ("POST", "PUT"):
        status, headers = preflight(answer, method=method, headers="x-foo, x-bar")
        assert status == 204
        assert value(headers, b"access-control-allow-headers") == b"X-Bar, X-Foo"


def test_header_merge_warns_at_the_widened_flow():
    post = flow("POST", "allow: selected\ndomains: '*.example.com'\nheaders: X-Foo\n")
    put = flow("PUT", "allow: selected\ndomains: '*.example.com'\nheaders: X-Bar\n")
    _, warnings = merge_path("/api/user", [post, put], "X-CSRF-TOKEN")
    found = {(w.file, w.line, w.message) for w in warnings}
    assert ("flows/put.yaml", 5, "PUT /api/user: X-Foo allowed because POST allows it") in found
    assert ("flows/post.yaml", 5, "POST /api/user: X-Bar allowed because PUT allows it") in found
    assert len(warnings) == 2


# ---- origin matching --------------------------------------------------------------------------

@pytest.mark.parametrize("origin", [
    "https://test.example.com",
    "https://a.b.example.com",
    "https://TEST.Example.COM",
    "HTTPS://test.example.com",
    "https://test.example.com:443",
    "https://xn--bcher-kva.example.com",
])
def test_wildcard_entry_matches(origin):
    answer = seed_path()
    assert answer.allows_origin(origin)
    assert value(answer.actual_headers(origin), b"access-control-allow-origin") == origin.encode()


@pytest.mark.parametrize("origin", [
    "https://example.com",                      # the apex is not its own wildcard
    "https://evilexample.com",
    "https://example.com.evil.net",
    "https://test.example.com.evil.net",
    "http://test.example.com",                  # scheme must match
    "https://test.example.com:8443",            # port must match
    "null",
    "https://test.example.com.",                # trailing dot
    "https://user@test.example.com",            # userinfo
    "https://user:pw@test.example.com",
    "https://test.example.com/",                # path
    "https://test.example.com/x",
    "https://test.example.com?x=1",
    "https://test.example.com#x",
    "https://tëst.example.com",                 # browsers send IDN as punycode
    "test.example.com",                         # no scheme
    "https://test..example.com",
    "https://.example.com",
    "https://test.example.com:",
    "https://test.example.com:99999",
    "https://test.example.com\n",
    " https://test.example.com",
    "https://test.example.com%2eevil.net",
    "wss://test.example.com",
    "",
])
def test_wildcard_entry_does_not_match(origin):
    answer = seed_path()
    assert not answer.allows_origin(origin)
    assert names(answer.actual_headers(origin)) == [b"vary"]
    assert preflight(answer, origin=origin) == (403, [(b"vary", b"Origin")])


def test_idn_entry_is_compared_in_ascii_form():
    answer = merged(flow("GET", "allow: selected\ndomains: '*.Bücher.example, münchen.example'\n"))
    assert [d["domains"] for d in [answer.describe()]] == [
        ["https://*.xn--bcher-kva.example", "https://xn--mnchen-3ya.example"]]
    assert answer.allows_origin("https://shop.xn--bcher-kva.example")
    assert answer.allows_origin("https://xn--mnchen-3ya.example")
    assert not answer.allows_origin("https://shop.bücher.example")
    assert not answer.allows_origin("https://xn--bcher-kva.example")


def test_explicit_scheme_and_port_must_both_match():
    answer = merged(flow("GET", "allow: selected\ndomains: 'http://localhost:3000'\n"))
    assert answer.allows_origin("http://localhost:3000")
    assert not answer.allows_origin("https://localhost:3000")
    assert not answer.allows_origin("http://localhost:3001")
    assert not answer.allows_origin("http://localhost")


def test_entry_without_scheme_means_https_on_the_default_port():
    answer = merged(flow("GET", "allow: selected\ndomains: app.example.org\n"))
    assert answer.allows_origin("https://app.example.org")
    assert answer.allows_origin("https://app.example.org:443")
    assert not answer.allows_origin("http://app.example.org")
    assert not answer.allows_origin("https://x.app.example.org")


def test_http_default_port_is_dropped():
    answer = merged(flow("GET", "allow: selected\ndomains: 'http://app.example.org:80'\n"))
    assert answer.describe()["domains"] == ["http://app.example.org"]
    assert answer.allows_origin("http://app.example.org")


def test_ipv6_entry_matches_the_same_address_written_differently():
    answer = merged(flow("GET", "allow: selected\ndomains: 'http://[0:0::1]:8080'\n"))
    assert answer.allows_origin("http://[::1]:8080")
    assert not answer.allows_origin("http://[::2]:8080")


def test_wildcard_under_localhost_is_allowed():
    answer = merged(flow("GET", "allow: selected\ndomains: 'http://*.localhost:5173'\n"))
    assert answer.allows_origin("http://app.localhost:5173")
    assert not answer.allows_origin("http://localhost:5173")


def test_allowed_origin_is_echoed_byte_for_byte():
    answer = seed_path()
    origin = "https://Test.EXAMPLE.com:443"
    status, headers = preflight(answer, origin=origin)
    assert status == 204
    assert value(headers, b"access-control-allow-origin") == origin.encode()


def test_parse_origin_lowercases_and_drops_the_default_port():
    assert parse_origin("HTTPS://A.Example.COM:443") == ("https", ("a", "example", "com"), 443)
    assert parse_origin("http://a.example.com:8080") == ("http", ("a", "example", "com"), 8080)
    assert parse_origin("null") is None


def test_origin_cache_stays_bounded_under_hostile_origins():
    answer = seed_path()
    for i in range(5000):
        answer.actual_headers(f"https://h{i}.evil.net")
        answer.actual_headers(f"https://x{i}.example.com")
    assert len(answer._cache) <= 512
    assert answer.allows_origin("https://x4999.example.com")
    assert not answer.allows_origin("https://h4999.evil.net")


def test_overlong_origin_is_refused_and_not_cached():
    answer = seed_path()
    origin = "https://" + "a." * 200 + "example.com"
    assert not answer.allows_origin(origin)
    assert origin not in answer._cache


# ---- preflight --------------------------------------------------------------------------------

def test_preflight_to_an_undeclared_method_is_refused():
    assert preflight(seed_path(), method="DELETE") == (403, [(b"vary", b"Origin")])


def test_preflight_method_is_case_sensitive():
    assert preflight(seed_path(), method="put")[0] == 403


def test_preflight_without_origin_is_refused():
    assert preflight(seed_path(), origin=None)[0] == 403


def test_preflight_for_a_flow_without_cors_on_a_shared_path_is_refused():
    answer = merged(flow("GET", SEED), flow("DELETE", None), flow("PATCH", "allow: none\n"))
    assert answer.methods == frozenset({"GET", "HEAD"})
    assert preflight(answer, method="DELETE")[0] == 403
    assert preflight(answer, method="PATCH")[0] == 403
    assert value(preflight(answer, method="GET")[1], b"access-control-allow-methods") == b"GET"


def test_path_without_cors_has_no_answer():
    assert merge_path(PATH, [flow("GET", None), flow("PUT", "allow: none\n")], "X") == (None, [])


def test_head_carries_what_get_carries():
    answer = seed_path()
    assert "HEAD" in answer.methods
    assert preflight(answer, method="HEAD")[0] == 204


def test_requested_headers_are_compared_case_insensitively():
    answer = merged(flow("PUT", "allow: selected\ndomains: '*.example.com'\n"
                                "headers: 'Content-Type, X-Foo'\n"))
    assert preflight(answer, headers="CONTENT-TYPE,x-foo")[0] == 204
    assert preflight(answer, headers=" x-Foo ,, content-type ")[0] == 204
    assert preflight(answer, headers="")[0] == 204


def test_each_requested_header_must_be_allowed():
    answer = merged(flow("PUT", SEED))
    assert preflight(answer, headers="content-type, x-evil") == (403, [(b"vary", b"Origin")])
    assert preflight(answer, headers="content-type x-evil")[0] == 403


def test_safelisted_headers_are_not_allowed_implicitly():
    # A browser names Accept only when its value is not safelisted, and then checks the list.
    assert preflight(merged(flow("PUT", SEED)), headers="accept")[0] == 403


def test_empty_headers_list_allows_no_request_headers():
    answer = merged(flow("PUT", "allow: selected\ndomains: '*.example.com'\nheaders: ''\n"))
    status, headers = preflight(answer)
    assert status == 204 and value(headers, b"access-control-allow-headers") is None
    assert preflight(answer, headers="content-type")[0] == 403


def test_refused_preflight_has_no_allow_headers():
    for status, headers in (preflight(seed_path(), origin="https://evil.net"),
                            preflight(seed_path(), method="POST"),
                            preflight(seed_path(), headers="x-nope")):
        assert status == 403
        assert not [k for k in names(headers) if k.startswith(b"access-control-")]


# ---- credentials, max age, Vary ---------------------------------------------------------------

def test_credentials_are_announced_on_preflight_and_actual_responses():
    answer = merged(flow("PUT", SEED + "credentials: true\n"))
    status, headers = preflight(answer)
    assert status == 204
    assert value(headers, b"access-control-allow-credentials") == b"true"
    assert value(answer.actual_headers(SEED_ORIGIN), b"access-control-allow-credentials") == b"true"


def test_without_credentials_nothing_announces_them():
    answer = seed_path()
    assert value(preflight(answer)[1], b"access-control-allow-credentials") is None
    assert value(answer.actual_headers(SEED_ORIGIN), b"access-control-allow-credentials") is None


def test_credentials_if_any_flow_allows_them_with_a_warning_for_the_others():
    answer, warnings = merge_path(PATH, [flow("GET", SEED), flow("PUT", SEED + "credentials: true\n")],
                                  "X-CSRF-TOKEN")
    assert answer.credentials
    assert [(w.file, w.message) for w in warnings] == [
        ("flows/get.yaml", f"GET {PATH}: credentials allowed because PUT allows them")]


def test_largest_max_age_wins_with_a_warning():
    answer, warnings = merge_path(PATH, [flow("GET", SEED), flow("PUT", SEED.replace("300", "600"))],
                                  "X-CSRF-TOKEN")
    assert value(preflight(answer)[1], b"access-control-max-age") == b"600"
    assert [(w.file, w.line) for w in warnings] == [("flows/get.yaml", 6)]
    assert "600" in warnings[0].message and "PUT" in warnings[0].message


def test_actual_response_to_allowed_origin():
    assert seed_path().actual_headers(SEED_ORIGIN) == [
        (b"access-control-allow-origin", b"https://test.example.com"), (b"vary", b"Origin")]


def test_actual_response_without_origin_still_varies_on_origin():
    assert seed_path().actual_headers(None) == [(b"vary", b"Origin")]


def test_vary_is_never_duplicated():
    selected = merged(flow("PUT", SEED + "credentials: true\n"))
    star = merged(flow("PUT", "allow: all\n"))
    lists = [preflight(selected)[1], preflight(selected, method="GET")[1], preflight(star)[1],
             selected.actual_headers(SEED_ORIGIN), selected.actual_headers("https://evil.net"),
             selected.actual_headers(None), star.actual_headers(SEED_ORIGIN),
             star.actual_headers(None)]
    for _ in range(2):          # a second call answers from the cache: same lists
        for headers in lists:
            assert names(headers).count(b"vary") == 1


def test_returned_lists_are_copies():
    answer = seed_path()
    answer.actual_headers(SEED_ORIGIN).append((b"x", b"y"))
    preflight(answer)[1].append((b"x", b"y"))
    assert len(answer.actual_headers(SEED_ORIGIN)) == 2
    assert len(preflight(answer)[1]) == 5


# ---- allow: all -------------------------------------------------------------------------------

def test_allow_all_answers_star():
    answer = merged(flow("GET", "allow: all\n"))
    assert answer.actual_headers("https://anything.net") == [
        (b"access-control-allow-origin", b"*"), (b"vary", b"Origin")]
    status, headers = preflight(answer, origin="https://anything.net", method="GET")
    assert status == 204 and value(headers, b"access-control-allow-origin") == b"*"


def test_allow_all_widens_a_selected_flow_on_the_same_path():
    answer, warnings = merge_path(PATH, [flow("GET", "allow: all\n"), flow("PUT", SEED)], "X")
    assert answer.allow == "all" and answer.methods >= {"GET", "PUT"}
    assert [w.message for w in warnings] == [f"PUT {PATH}: every origin allowed because GET allows all"]


def test_allow_all_with_credentials_is_a_load_error():
    err = load_error("allow: all\ncredentials: true\n")
    assert (err.file, err.line) == ("flows/x.yaml", 4)
    assert "allow: all" in err.message


def test_allow_all_and_credentials_on_one_path_is_a_load_error():
    with pytest.raises(ConfigError) as info:
        merge_path(PATH, [flow("GET", "allow: all\n"), flow("PUT", SEED + "credentials: true\n")], "X")
    assert (info.value.file, info.value.line) == ("flows/put.yaml", 7)


def test_csrf_on_a_path_whose_answer_is_allow_all_is_a_load_error():
    with pytest.raises(ConfigError) as info:
        merge_path(PATH, [flow("GET", "allow: all\n"), flow("PUT", None, csrf=True)], "X")
    assert info.value.file == "flows/put.yaml" and "csrf" in info.value.message


# ---- Authorization and the CSRF header --------------------------------------------------------

def test_authorization_is_allowed_when_a_flow_uses_auth():
    answer = merged(flow("GET", SEED), flow("PUT", SEED, auth=True))
    assert answer.headers == ("Content-Type", "Authorization")
    assert preflight(answer, method="GET", headers="authorization")[0] == 204


def test_csrf_header_is_allowed_when_a_flow_requires_csrf():
    answer, _ = merge_path(PATH, [flow("PUT", SEED, csrf=True)], "X-My-Csrf")
    assert value(preflight(answer)[1], b"access-control-allow-headers") == b"Content-Type, X-My-Csrf"


def test_domain_widening_warns_only_where_not_already_covered():
    post = flow("POST", "allow: selected\ndomains: '*.example.com'\n")
    put = flow("PUT", "allow: selected\ndomains: 'app.example.com, https://x.example.org'\n")
    answer, warnings = merge_path("/api/u", [post, put], "X")
    assert answer.describe()["domains"] == ["https://app.example.com", "https://x.example.org",
                                            "https://*.example.com"]
    assert [(w.file, w.message) for w in warnings] == [
        ("flows/put.yaml", "PUT /api/u: https://*.example.com allowed because POST allows it"),
        ("flows/post.yaml", "POST /api/u: https://x.example.org allowed because PUT allows it")]


def test_describe_lists_the_merged_answer():
    assert merged(flow("GET", SEED), flow("PUT", SEED + "credentials: true\n"), flow("DELETE", None)
                  ).describe() == {
        "allow": "selected", "methods": ["PUT", "GET"], "domains": ["https://*.example.com"],
        "headers": ["Content-Type"], "credentials": True, "max_age": 300}


# ---- the /api/csrf endpoint -------------------------------------------------------------------

def test_csrf_endpoint_allows_the_union_with_credentials():
    a = merged(flow("PUT", SEED, csrf=True))
    b = merged(flow("POST", "allow: selected\ndomains: 'https://app.example.org'\n", csrf=True))
    answer = csrf_endpoint_cors([a, b])
    assert answer.methods == frozenset({"GET", "HEAD"}) and answer.credentials
    for origin in (SEED_ORIGIN, "https://app.example.org"):
        status, headers = answer.preflight(request({"origin": origin, "access-control-request-method": "GET"},
                                                  method="OPTIONS", path="/api/user/1"))
        assert status == 204
        assert value(headers, b"access-control-allow-credentials") == b"true"
        assert value(answer.actual_headers(origin), b"access-control-allow-origin") == origin.encode()
    assert not answer.allows_origin("https://evil.net")


def test_csrf_endpoint_without_protected_paths_has_no_cors():
    assert csrf_endpoint_cors([]) is None


# ---- load errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, words", [
    ("null", "null"),
    ("'*'", "allow: all"),
    ("'*.com'", "too broad"),
    ("'*.*.example.com'", "one '*'"),
    ("'app*.example.com'", "whole label"),
    ("'https://app.example.com/'", "path"),
    ("'ftp://app.example.com'", "scheme"),
    ("'app.example.com:70000'", "port"),
    ("'app.example.com:x'", "port"),
    ("'user@app.example.com'", "user"),
    ("'app.example.com.'", "trailing dot"),
    ("'app..example.com'", "label"),
    ("'ex ample.com'", "label"),
    ("'https://'", "no host"),
    ("'*.0.0.1'", "too broad"),
    ("'[::1'", "IPv6"),
])
def test_bad_domain_entry_is_a_load_error_at_its_line(entry, words):
    err = load_error(f"allow: selected\ndomains: {entry}\n")
    assert (err.file, err.line) == ("flows/x.yaml", 4)
    assert words in err.message


def test_bad_domain_in_a_yaml_list_points_at_its_item():
    err = load_error("allow: selected\ndomains:\n  - '*.example.com'\n  - 'evil.*'\n")
    assert (err.file, err.line) == ("flows/x.yaml", 6)


@pytest.mark.parametrize("entry", [
    "*.co.uk", "https://*.co.uk", "*.github.io", "http://*.github.io:8080", "*.com.au",
    "*.s3.amazonaws.com", "*.blogspot.com", "*.x.kobe.jp", "*.xn--gmqw5a.xn--j6w193g", "*.\u043e\u0440\u0433.\u0441\u0440\u0431",
])
def test_wildcard_over_a_public_suffix_is_a_load_error_at_its_line(entry):
    err = load_error(f"allow: selected\ndomains:\n  - a.example.com\n  - '{entry}'\ncredentials: true\n")
    assert (err.file, err.line) == ("flows/x.yaml", 6)
    assert "public suffix" in err.message and "too broad" in err.message


@pytest.mark.parametrize("entry, origin", [
    ("*.example.co.uk", "https://app.example.co.uk"),
    ("*.myname.github.io", "https://docs.myname.github.io"),
    ("*.example.com", "https://a.example.com"),
    ("*.example.test", "https://app.example.test"),
    ("*.city.kobe.jp", "https://www.city.kobe.jp"),
])
def test_wildcard_under_a_registrable_domain_still_loads(entry, origin):
    answer = merged(flow("GET", f"allow: selected\ndomains: '{entry}'\ncredentials: true\n"))
    assert answer.allows_origin(origin)


def test_the_public_suffix_list_is_read_without_the_network(monkeypatch):
    import socket

    from flowlet.security import cors as cors_module

    def no_network(*args, **kwargs):
        raise AssertionError("the public suffix list must not be downloaded")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    cors_module._public_suffixes.cache_clear()
    assert "public suffix" in load_error("allow: selected\ndomains: '*.github.io'\n").message


def test_null_domains_is_a_load_error():
    for body in ("allow: selected\ndomains: null\n", "allow: selected\ndomains: [null]\n"):
        err = load_error(body)
        assert err.line == 4 and "null" in err.message


@pytest.mark.parametrize("body, line, words", [
    ("allow: some\ndomains: a.example.com\n", 3, "none, all, selected"),
    ("allow: selected\n", 3, "domains"),
    ("allow: selected\ndomains: ''\n", 4, "domains"),
    ("domain: a.example.com\nallow: selected\n", 3, "did you mean 'domains'"),
    ("allow: selected\ndomains: a.example.com\nheaders: '*'\n", 5, "'*'"),
    ("allow: selected\ndomains: a.example.com\nheaders: 'X Foo'\n", 5, "header name"),
    ("allow: selected\ndomains: a.example.com\nmax_age: -1\n", 5, "at least 0"),
    ("allow: selected\ndomains: a.example.com\nmax_age: 100000\n", 5, "at most"),
    ("allow: selected\ndomains: a.example.com\ncredentials: yes please\n", 5, "true or false"),
    ("credentials: true\n", 3, "allow"),
])
def test_bad_cors_block_is_a_load_error_with_its_line(body, line, words):
    err = load_error(body)
    assert (err.file, err.line) == ("flows/x.yaml", line)
    assert words in err.message


def test_domains_without_allow_means_selected():
    assert cors("domains: '*.example.com'\n").allow == "selected"


def test_duplicate_entries_are_merged():
    cfg = cors("allow: selected\ndomains: 'a.example.com, https://A.example.com:443'\n"
               "headers: 'X-Foo, x-foo'\n")
    assert [d.text for d in cfg.domains] == ["https://a.example.com"]
    assert cfg.headers == ("X-Foo",)


def test_authorization_added_for_another_flow_is_a_headers_warning():
    _, warnings = merge_path("/api/u", [flow("GET", SEED), flow("PUT", SEED, auth=True)], "X")
    assert [w.message for w in warnings] == ["GET /api/u: Authorization allowed because PUT uses auth"]


def test_several_widened_headers_make_one_warning_per_flow():
    post = flow("POST", "allow: selected\ndomains: '*.example.com'\nheaders: 'X-A, X-B'\n", csrf=True)
    put = flow("PUT", SEED)
    _, warnings = merge_path("/api/u", [post, put], "X-CSRF-TOKEN")
    put_warnings = [w.message for w in warnings if w.file == "flows/put.yaml"]
    assert put_warnings == ["PUT /api/u: X-A, X-B allowed because POST allows them; "
                            "X-CSRF-TOKEN allowed because POST requires CSRF"]


def test_domains_ignored_with_allow_all_is_a_warning():
    _, warnings = merge_path("/api/u", [flow("GET", "allow: all\ndomains: a.example.com\n")], "X")
    assert [(w.line, w.message) for w in warnings] == [(4, "GET /api/u: domains are ignored with allow: all")]
