"""CSRF by double submit cookie: settings, keys and rotation, issuing, and every refusal."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import timeit
from http.cookies import SimpleCookie

import pytest

from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.security import csrf as csrf_mod
from flowlet.security.csrf import (CsrfKeys, CsrfPolicy, CsrfSettings, issue_token,
                                   parse_csrf_settings, rotate)
from flowlet.source import load_yaml
import fakes
from fakes import Clock, Store, View

HOST = "api.example.test"
OWN_ORIGIN = f"https://{HOST}"


# ---- fakes and helpers -----------------------------------------------------------------------

class FakeCors:
    def __init__(self, *origins: str):
        self.origins = set(origins)

    def allows_origin(self, origin: str) -> bool:
        return origin in self.origins


request = functools.partial(fakes.request, method="POST", path="/api/things", host=HOST)


def cookie_pair(set_cookie: bytes) -> tuple[str, str]:
    jar = SimpleCookie()
    jar.load(set_cookie.decode("latin-1"))
    (name, morsel), = jar.items()
    return name, morsel.value


class World:
    """One workspace's CSRF machinery: store, one worker's view, keys, a policy, a clock."""

    def __init__(self, settings: CsrfSettings | None = None, cors=None):
        self.settings = settings or CsrfSettings()
        self.clock = Clock(1_000_000.0)
        self.store = Store()
        self.view = View(store=self.store)
        self.keys = CsrfKeys(self.view, self.store)
        self.policy = CsrfPolicy(self.settings, self.keys, cors, clock=self.clock)

    def issue(self, *, api_prefix="/api", domain=None) -> tuple[str, str]:
        body, set_cookie = issue_token(self.settings, self.keys, api_prefix=api_prefix, domain=domain)
        return json.loads(body)["token"], cookie_pair(set_cookie)[1]

    def rotate(self):
        rotate(self.store, clock=self.clock)
        self.view.refresh()

    def headers(self, token, cookie, *extra):
        return [(self.settings.header, token), ("cookie", f"{self.settings.cookie}={cookie}"), *extra]


def refused(policy: CsrfPolicy, req: Request) -> bool:
    try:
        policy.check(req)
    except HTTPError as exc:
        assert exc.status == 400
        assert exc.message == "CSRF token missing or invalid"
        return True
    return False


@pytest.fixture
def world() -> World:
    return World(cors=FakeCors("https://app.example.test"))


@pytest.fixture
def issued(world):
    token, cookie = world.issue()
    return world, token, cookie


def ymap(text: str):
    return load_yaml(text, "flowlet.yaml")["csrf"]


# ---- settings ------------------------------------------------------------------------------

def test_settings_default_when_block_absent():
    assert parse_csrf_settings(None) == CsrfSettings("csrf", "X-CSRF-TOKEN", 86400)


def test_settings_read_all_keys():
    s = parse_csrf_settings(ymap("csrf:\n  cookie: xsrf\n  header: X-XSRF\n  grace_s: 0\n"))
    assert (s.cookie, s.header, s.grace_s) == ("xsrf", "X-XSRF", 0)


def test_settings_are_frozen():
    with pytest.raises(Exception):
        CsrfSettings().cookie = "other"  # type: ignore[misc]


def test_settings_unknown_key_is_error_with_line():
    with pytest.raises(ConfigError) as e:
        parse_csrf_settings(ymap("csrf:\n  cookie: csrf\n  heder: X-A\n"))
    assert e.value.line == 3 and "heder" in e.value.message and "header" in e.value.message


@pytest.mark.parametrize("key, value", [
    ("cookie", '"a b"'), ("cookie", '"a;b"'), ("cookie", '"a=b"'), ("cookie", '""'), ("cookie", "1"),
    ("cookie", "__Host-csrf"),
    ("header", '"X CSRF"'), ("header", '"X:CSRF"'), ("header", '""'),
    ("header", "Cookie"), ("header", "Origin"), ("header", "content-type"), ("header", "Authorization"),
    ("header", "Sec-Token"), ("header", "X-HTTP-Method-Override"),
    ("grace_s", "-1"), ("grace_s", "soon"), ("grace_s", "true"),
])
def test_settings_bad_values_are_errors_with_line(key, value):
    with pytest.raises(ConfigError) as e:
        parse_csrf_settings(ymap(f"csrf:\n  {key}: {value}\n"))
    assert e.value.line == 2 and e.value.file == "flowlet.yaml"


def test_settings_not_a_mapping_is_error():
    with pytest.raises(ConfigError):
        parse_csrf_settings("yes")  # type: ignore[arg-type]


# ---- issuing -------------------------------------------------------------------------------

def b64url_decode(text: str) -> bytes:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_issue_body_is_token_of_32_random_bytes(world):
    body, _ = issue_token(world.settings, world.keys, api_prefix="/api", domain=None)
    assert body.startswith(b'{"token":"')
    token = json.loads(body)["token"]
    assert "=" not in token and len(b64url_decode(token)) == 32


def test_issue_gives_a_new_token_each_time(world):
    assert world.issue() != world.issue()


def test_cookie_attributes_without_domain(world):
    _, set_cookie = issue_token(world.settings, world.keys, api_prefix="/api", domain=None)
    jar = SimpleCookie()
    jar.load(set_cookie.decode())
    morsel = jar["csrf"]
    assert morsel["path"] == "/api"
    assert morsel["samesite"] == "Strict"
    assert morsel["secure"] is True and morsel["httponly"] is True
    assert morsel["domain"] == "" and morsel["max-age"] == "" and morsel["expires"] == ""


def test_cookie_attributes_with_domain_and_custom_name(world):
    settings = CsrfSettings(cookie="xsrf")
    _, set_cookie = issue_token(settings, world.keys, api_prefix="/v1", domain="example.test")
    jar = SimpleCookie()
    jar.load(set_cookie.decode())
    assert list(jar) == ["xsrf"]
    assert jar["xsrf"]["domain"] == "example.test" and jar["xsrf"]["path"] == "/v1"


def test_set_cookie_has_the_documented_attribute_order(world):
    _, set_cookie = issue_token(world.settings, world.keys, api_prefix="/api", domain="flowlet.app")
    assert re.fullmatch(rb"csrf=[A-Za-z0-9_-]{43}; Domain=flowlet\.app; Path=/api; "
                        rb"SameSite=Strict; Secure; HttpOnly", set_cookie)


def test_root_prefix_gives_root_cookie_path(world):
    _, set_cookie = issue_token(world.settings, world.keys, api_prefix="", domain=None)
    assert cookie_pair(set_cookie)[0] == "csrf" and b"Path=/;" in set_cookie


def test_cookie_value_is_hmac_sha256_of_token_under_the_stored_key(world):
    token, cookie = world.issue()
    record = json.loads(world.store.keys[csrf_mod.KEY_NAME])
    key = b64url_decode(record["current"])
    assert len(key) == 32
    expected = hmac.new(key, token.encode(), hashlib.sha256).digest()
    assert b64url_decode(cookie) == expected


def test_key_is_created_once_and_shared_by_workers():
    store = Store()
    a = CsrfKeys(View(store=store), store)
    b = CsrfKeys(View(store=store), store)     # another worker, its view taken before the key existed
    settings = CsrfSettings()
    body, set_cookie = issue_token(settings, a, api_prefix="/api", domain=None)
    issue_token(settings, b, api_prefix="/api", domain=None)
    assert store.writes == 1
    token, cookie = json.loads(body)["token"], cookie_pair(set_cookie)[1]
    policy_b = CsrfPolicy(settings, b, None)
    policy_b.check(request([("X-CSRF-TOKEN", token), ("cookie", f"csrf={cookie}")]))


def test_check_with_no_key_anywhere_refuses():
    store = Store()
    policy = CsrfPolicy(CsrfSettings(), CsrfKeys(View(store=store), store), None)
    assert refused(policy, request([("X-CSRF-TOKEN", "a" * 43), ("cookie", "csrf=" + "b" * 43)]))


def test_key_created_by_another_server_is_used_before_the_view_catches_up():
    store = Store()
    issuer = CsrfKeys(View(store=store), store)
    token = "t" * 43
    cookie = issuer.sign(token)                 # another server creates the key and signs
    stale_view = type("Stale", (), {"get_key": lambda self, name: None})()
    policy = CsrfPolicy(CsrfSettings(), CsrfKeys(stale_view, store), None)
    policy.check(request([("X-CSRF-TOKEN", token), ("cookie", f"csrf={cookie}")]))


def test_keys_repr_shows_no_key_material(world):
    world.issue()
    record = json.loads(world.store.keys[csrf_mod.KEY_NAME])
    assert record["current"] not in repr(world.keys) and record["current"] not in repr(world.keys.state())


# ---- the whole flow and acceptance ----------------------------------------------------------

def test_issued_token_with_its_cookie_is_accepted(issued):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie)))


def test_header_name_is_case_insensitive(issued):
    world, token, cookie = issued
    world.policy.check(request([("x-csrf-token", token), ("cookie", f"csrf={cookie}")]))


def test_custom_cookie_and_header_names():
    w = World(CsrfSettings(cookie="xsrf", header="X-Xsrf"))
    token, cookie = w.issue()
    w.policy.check(request([("X-Xsrf", token), ("cookie", f"other=1; xsrf={cookie}")]))
    assert refused(w.policy, request([("X-CSRF-TOKEN", token), ("cookie", f"csrf={cookie}")]))


def test_other_cookies_alongside_are_fine(issued):
    world, token, cookie = issued
    world.policy.check(request([(world.settings.header, token),
                                ("cookie", f"session=abc; csrf={cookie}; theme=dark")]))


def test_same_origin_origin_header_accepted(issued):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie, ("origin", OWN_ORIGIN),
                                             ("sec-fetch-site", "same-origin"))))


def test_own_origin_with_explicit_default_port_accepted(issued):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie, ("origin", "https://API.example.test")),
                               host=f"{HOST}:443"))


def test_own_origin_over_plain_http_uses_http_scheme(issued):
    world, token, cookie = issued
    req = request(world.headers(token, cookie, ("origin", "http://localhost:8080")),
                  scheme="http", host="localhost:8080")
    world.policy.check(req)
    req = request(world.headers(token, cookie, ("origin", "https://localhost:8080")),
                  scheme="http", host="localhost:8080")
    assert refused(world.policy, req)


def test_same_site_origin_allowed_by_cors_accepted(issued):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie, ("origin", "https://app.example.test"),
                                             ("sec-fetch-site", "same-site"))))


def test_sec_fetch_site_none_accepted(issued):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie, ("sec-fetch-site", "none"))))


def test_token_reusable_for_several_requests(issued):
    world, token, cookie = issued
    for _ in range(3):
        world.policy.check(request(world.headers(token, cookie)))


# ---- each refusal -------------------------------------------------------------------------------

def test_missing_cookie_refused(issued):
    world, token, _ = issued
    assert refused(world.policy, request([(world.settings.header, token)]))


def test_missing_header_refused(issued):
    world, _, cookie = issued
    assert refused(world.policy, request([("cookie", f"csrf={cookie}")]))


def test_nothing_at_all_refused(world):
    assert refused(world.policy, request())


def test_mismatched_pair_refused(world):
    token1, cookie1 = world.issue()
    token2, cookie2 = world.issue()
    assert refused(world.policy, request(world.headers(token1, cookie2)))
    assert refused(world.policy, request(world.headers(token2, cookie1)))


def test_cookie_equal_to_token_refused(issued):
    """The naive double submit (cookie == header) must not pass: the cookie is a keyed hash."""
    world, token, _ = issued
    assert refused(world.policy, request(world.headers(token, token)))


def test_planted_second_cookie_does_not_lock_out_the_real_pair(issued):
    # cookie tossing: a sibling subdomain plants csrf=... with Domain=; the browser sends both
    world, token, cookie = issued
    _, planted_cookie = world.issue()
    world.policy.check(request([(world.settings.header, token),
                                ("cookie", f"csrf={planted_cookie}; csrf={cookie}")]))
    world.policy.check(request([(world.settings.header, token), ("cookie", f"csrf={cookie}"),
                                ("cookie", "csrf=garbage!")]))


def test_duplicate_cookies_none_matching_refused(issued):
    world, token, _ = issued
    _, other = world.issue()
    assert refused(world.policy, request([(world.settings.header, token),
                                          ("cookie", f"csrf={other}; csrf={other[::-1]}")]))


def test_many_cookies_of_the_name_refused(issued):
    world, token, cookie = issued
    assert refused(world.policy, request([(world.settings.header, token),
                                          ("cookie", "; ".join([f"csrf={cookie}"] * 5))]))


def test_duplicate_headers_refused(issued):
    world, token, cookie = issued
    assert refused(world.policy, request([(world.settings.header, token), (world.settings.header, token),
                                          ("cookie", f"csrf={cookie}")]))


def test_empty_header_refused(issued):
    world, _, cookie = issued
    assert refused(world.policy, request(world.headers("", cookie)))


def test_empty_cookie_refused(issued):
    world, token, _ = issued
    assert refused(world.policy, request(world.headers(token, "")))


def test_overlong_values_refused_before_any_hmac(issued, caplog):
    world, token, cookie = issued
    with caplog.at_level(logging.INFO, logger="flowlet.csrf"):
        assert refused(world.policy, request(world.headers(token + "A" * 200, cookie)))
        assert refused(world.policy, request(world.headers(token, cookie + "A" * 200)))
        assert refused(world.policy, request(world.headers("A" * 100_000, cookie)))
    assert [r.getMessage().endswith("too long") for r in caplog.records] == [True] * 3


@pytest.mark.parametrize("bad", ["not base64!", "a+b/c", "abc=", "tok\u00e9n", " x"])
def test_non_base64url_refused(issued, bad):
    world, token, cookie = issued
    assert refused(world.policy, request(world.headers(bad, cookie)))
    assert refused(world.policy, request(world.headers(token, bad)))


def test_padded_cookie_refused(issued):
    world, token, cookie = issued
    assert refused(world.policy, request(world.headers(token, cookie + "=")))


def test_token_only_in_query_string_refused(issued):
    world, token, cookie = issued
    req = request([("cookie", f"csrf={cookie}")], query=f"X-CSRF-TOKEN={token}&csrf={token}".encode())
    assert refused(world.policy, req)


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_method_override_headers_refused(issued, header):
    world, token, cookie = issued
    assert refused(world.policy, request(world.headers(token, cookie, (header, "DELETE"))))
    assert refused(world.policy, request(world.headers(token, cookie, (header, "POST"))))


def test_sec_fetch_site_cross_site_refused(issued):
    world, token, cookie = issued
    assert refused(world.policy, request(world.headers(token, cookie, ("sec-fetch-site", "cross-site"))))


@pytest.mark.parametrize("origin", [
    "https://evil.test", "http://api.example.test",            # other scheme than the server's
    "https://api.example.test:8443", "https://app.example.test.evil.test",
    "https://api.example.test/path", "https://user@api.example.test", "api.example.test", "",
])
def test_foreign_or_malformed_origin_refused(issued, origin):
    world, token, cookie = issued
    assert refused(world.policy, request(world.headers(token, cookie, ("origin", origin))))


def test_null_origin_refused_even_if_cors_says_yes(issued):
    world, token, cookie = issued
    policy = CsrfPolicy(world.settings, world.keys, FakeCors("null"), clock=world.clock)
    assert refused(policy, request(world.headers(token, cookie, ("origin", "null"))))


def test_origin_without_cors_only_own_origin_accepted(issued):
    world, token, cookie = issued
    policy = CsrfPolicy(world.settings, world.keys, None)
    policy.check(request(world.headers(token, cookie, ("origin", OWN_ORIGIN))))
    assert refused(policy, request(world.headers(token, cookie, ("origin", "https://app.example.test"))))


def test_origin_without_host_header_needs_cors(issued):
    world, token, cookie = issued
    assert refused(world.policy, request(world.headers(token, cookie, ("origin", OWN_ORIGIN)), host=None))
    world.policy.check(request(world.headers(token, cookie, ("origin", "https://app.example.test")), host=None))


@pytest.mark.parametrize("origin, accepted", [
    ("https://app.example.test", True), ("https://a.b.example.test", True),
    ("https://example.test", False), ("https://evilexample.test", False),
    ("https://app.example.test.evil.net", False), ("http://app.example.test", False),
    ("null", False),
])
def test_origin_checked_against_the_real_path_cors(issued, origin, accepted):
    from flowlet.security.cors import FlowCorsInput, merge_path, parse_cors
    world, token, cookie = issued
    cfg = parse_cors(load_yaml("cors:\n  allow: selected\n  domains: '*.example.test'\n"
                               "  credentials: true\n", "flows/a.yaml")["cors"])
    path_cors, _ = merge_path("/api/things", [FlowCorsInput("POST", cfg, False, True)], "X-CSRF-TOKEN")
    policy = CsrfPolicy(world.settings, world.keys, path_cors, clock=world.clock)
    req = request(world.headers(token, cookie, ("origin", origin), ("sec-fetch-site", "same-site")),
                  host="api.other.test")
    assert refused(policy, req) is not accepted


def test_duplicate_origin_refused(issued):
    world, token, cookie = issued
    assert refused(world.policy, request(world.headers(token, cookie, ("origin", OWN_ORIGIN),
                                                       ("origin", OWN_ORIGIN))))


def test_hmac_under_a_wrong_key_refused(world):
    token = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    forged = base64.urlsafe_b64encode(hmac.new(os.urandom(32), token.encode(), hashlib.sha256).digest())
    world.issue()       # the server has a key, just not that one
    assert refused(world.policy, request(world.headers(token, forged.rstrip(b"=").decode())))


def test_pair_from_another_workspace_refused(issued):
    world, _, _ = issued
    other = World()
    token, cookie = other.issue()
    assert refused(world.policy, request(world.headers(token, cookie)))


def test_refusal_logs_reason_without_token_values(issued, caplog):
    world, token, cookie = issued
    with caplog.at_level(logging.DEBUG, logger="flowlet.csrf"):
        refused(world.policy, request(world.headers(token, cookie[:-2] + "AA")))
        refused(world.policy, request([("cookie", f"csrf={cookie}")]))
    text = caplog.text
    assert "does not match" in text and "header missing" in text
    assert token not in text and cookie not in text and cookie[:-2] not in text


# ---- rotation and grace ----------------------------------------------------------------------

def test_rotation_issues_under_the_new_key(issued):
    world, token, cookie = issued
    world.rotate()
    token2, cookie2 = world.issue()
    record = json.loads(world.store.keys[csrf_mod.KEY_NAME])
    new_key = b64url_decode(record["current"])
    assert b64url_decode(cookie2) == hmac.new(new_key, token2.encode(), hashlib.sha256).digest()
    world.policy.check(request(world.headers(token2, cookie2)))


def test_previous_key_valid_within_grace(issued):
    world, token, cookie = issued
    world.rotate()
    world.clock.now += world.settings.grace_s - 1
    world.policy.check(request(world.headers(token, cookie)))


def test_previous_key_refused_after_grace(issued):
    world, token, cookie = issued
    world.rotate()
    world.clock.now += world.settings.grace_s
    assert refused(world.policy, request(world.headers(token, cookie)))


def test_new_key_stays_valid_after_grace(issued):
    world, _, _ = issued
    world.rotate()
    token, cookie = world.issue()
    world.clock.now += world.settings.grace_s * 10
    world.policy.check(request(world.headers(token, cookie)))


def test_zero_grace_ends_previous_key_at_once():
    w = World(CsrfSettings(grace_s=0))
    token, cookie = w.issue()
    w.rotate()
    assert refused(w.policy, request(w.headers(token, cookie)))


def test_second_rotation_ends_the_first_key_at_once(issued):
    world, token, cookie = issued
    world.rotate()
    token2, cookie2 = world.issue()
    world.clock.now += 10
    world.rotate()
    assert refused(world.policy, request(world.headers(token, cookie)))
    world.policy.check(request(world.headers(token2, cookie2)))


def test_worker_sees_rotation_only_after_its_view_refreshes(issued):
    world, token, cookie = issued
    rotate(world.store, clock=world.clock)
    # not refreshed yet: still issuing under the old key, which keeps verifying
    token_old, cookie_old = world.issue()
    world.policy.check(request(world.headers(token_old, cookie_old)))
    world.view.refresh()
    world.clock.now += world.settings.grace_s + 1
    assert refused(world.policy, request(world.headers(token_old, cookie_old)))
    token_new, cookie_new = world.issue()
    world.policy.check(request(world.headers(token_new, cookie_new)))


def test_rotate_before_any_key_creates_one(world):
    rotate(world.store, clock=world.clock)
    world.view.refresh()
    record = json.loads(world.store.keys[csrf_mod.KEY_NAME])
    assert record["previous"] is None
    token, cookie = world.issue()
    world.policy.check(request(world.headers(token, cookie)))


def test_corrupt_key_record_refuses_and_issue_fails_cleanly(world, caplog):
    world.store.put_key(csrf_mod.KEY_NAME, b"\xffnot json")
    world.view.refresh()
    assert refused(world.policy, request(world.headers("a" * 43, "b" * 43)))
    with pytest.raises(HTTPError) as e:
        world.issue()
    assert e.value.status == 500
    rotate(world.store, clock=world.clock)      # the documented way out
    world.view.refresh()
    token, cookie = world.issue()
    world.policy.check(request(world.headers(token, cookie)))


def test_store_failure_when_creating_the_key_is_a_clean_500():
    class BrokenStore(Store):
        def add_key_if_absent(self, name, value):
            raise OSError("disk full")
    store = BrokenStore()
    keys = CsrfKeys(View(store=store), store)
    with pytest.raises(HTTPError) as e:
        issue_token(CsrfSettings(), keys, api_prefix="/api", domain=None)
    assert e.value.status == 500


def test_with_the_real_sqlite_store(tmp_path, monkeypatch):
    from flowlet.secrets import open_store
    monkeypatch.delenv("FLOWLET_MASTER_KEY", raising=False)
    worker, cli = open_store(tmp_path), open_store(tmp_path)

    class WorkerView:  # the worker's copy, re-read only on refresh()
        keys: dict = {}

        def get_key(self, name):
            return self.keys.get(name)

        def refresh(self):
            self.keys = {csrf_mod.KEY_NAME: worker.get_key(csrf_mod.KEY_NAME)}

    try:
        clock = Clock(1_000_000.0)
        keys = CsrfKeys(WorkerView(), worker)
        view = keys._secrets
        policy = CsrfPolicy(CsrfSettings(grace_s=60), keys, None, clock=clock)

        def issue():
            body, set_cookie = issue_token(CsrfSettings(), keys, api_prefix="/api", domain=None)
            return json.loads(body)["token"], cookie_pair(set_cookie)[1]

        def ok(token, cookie):
            return not refused(policy, request([("X-CSRF-TOKEN", token), ("cookie", f"csrf={cookie}")]))

        token, cookie = issue()
        assert ok(token, cookie)
        assert worker.list() == []                    # the key is internal, not a secret
        version = worker.version()
        rotate(cli, clock=clock)                      # `flowlet secrets rotate-csrf`, another process
        assert worker.version() != version
        assert ok(token, cookie)                      # not refreshed yet
        view.refresh()
        token2, cookie2 = issue()
        assert ok(token, cookie) and ok(token2, cookie2)
        clock.now += 60
        assert not ok(token, cookie) and ok(token2, cookie2)
    finally:
        worker.close()
        cli.close()


def test_keys_derived_once_per_record_not_per_request(issued, monkeypatch):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie)))
    calls = []
    real_new = csrf_mod.hmac.new
    monkeypatch.setattr(csrf_mod.hmac, "new", lambda *a, **k: calls.append(1) or real_new(*a, **k))
    for _ in range(5):
        world.policy.check(request(world.headers(token, cookie)))
    world.view.refresh()           # nothing changed: still no re-derivation
    world.policy.check(request(world.headers(token, cookie)))
    assert calls == []


# ---- cost ------------------------------------------------------------------------------------

def test_check_cost_for_a_valid_request(issued, capsys):
    world, token, cookie = issued
    headers = [(b"host", HOST.encode()), (b"origin", OWN_ORIGIN.encode()),
               (b"sec-fetch-site", b"same-origin"), (b"content-type", b"application/json"),
               (b"x-csrf-token", token.encode()), (b"cookie", f"session=abc; csrf={cookie}".encode())]
    scope = {"type": "http", "method": "POST", "path": "/api/things", "query_string": b"",
             "scheme": "https", "headers": headers}
    reqs = [Request(scope) for _ in range(20000)]    # fresh requests: cookie parsing is included
    it = iter(reqs)
    n = 10000
    per_check = min(timeit.repeat(lambda: world.policy.check(next(it)), number=n, repeat=2)) / n
    with capsys.disabled():
        print(f"\nCsrfPolicy.check, valid request (incl. cookie parse): {per_check * 1e6:.2f} us")
    assert per_check < 200e-6     # a generous bound; typically a few microseconds


# ---- over the wire: the real `flowlet serve` with TLS and HTTP/2 ------------------------------

WIRE_FILES = {
    "flowlet.yaml": "name: wire\ncsrf:\n  grace_s: 3600\n",
    "flows/things.yaml": """
        endpoint:
          method: POST
          path: /things
          csrf: true
          cors:
            allow: selected
            domains: "*.example.test"
            credentials: true
        respond:
          status: 200
          body: {ok: true}
    """,
    "flows/open.yaml": """
        endpoint:
          method: POST
          path: /open
        respond:
          status: 200
          body: {open: true}
    """,
}


@pytest.fixture(scope="module")
def wire(tmp_path_factory):
    import ssl
    from conftest import make_workspace, run_server
    root = make_workspace(tmp_path_factory.mktemp("csrf-wire"), WIRE_FILES)
    with run_server(root, "--tls-self-signed") as server:
        ctx = ssl.create_default_context(cafile=str(root / ".flowlet" / "tls" / "dev-cert.pem"))
        yield root, server, ctx


def wire_client(wire):
    import httpx
    _, server, ctx = wire
    return httpx.Client(http2=True, verify=ctx, base_url=server.url)


def fetch_token(client):
    r = client.get("/api/csrf")
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    return r, r.json()["token"]


def stored_current_key(root) -> bytes:
    from flowlet.secrets import open_store
    store = open_store(root)
    try:
        return b64url_decode(json.loads(store.get_key(csrf_mod.KEY_NAME))["current"])
    finally:
        store.close()


def test_wire_csrf_endpoint_answer(wire):
    with wire_client(wire) as client:
        r, token = fetch_token(client)
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) == {"token"} and len(b64url_decode(token)) == 32
    name, value = cookie_pair(r.headers["set-cookie"].encode())
    assert name == "csrf"
    jar = SimpleCookie()
    jar.load(r.headers["set-cookie"])
    morsel = jar["csrf"]
    assert (morsel["path"], morsel["samesite"], morsel["secure"], morsel["httponly"], morsel["domain"]) == \
        ("/api", "Strict", True, True, "")
    key = stored_current_key(wire[0])
    assert b64url_decode(value) == hmac.new(key, token.encode(), hashlib.sha256).digest()


def test_wire_token_flow_accepted(wire):
    with wire_client(wire) as client:
        _, token = fetch_token(client)
        r = client.post("/api/things", headers={"X-CSRF-TOKEN": token}, json={"a": 1})
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_wire_refusals_are_400_with_the_exact_error(wire):
    with wire_client(wire) as client:
        _, token = fetch_token(client)
        attempts = [
            client.post("/api/things", json={}),                                        # no header
            client.post("/api/things", headers={"X-CSRF-TOKEN": token[:-2] + "AA"}),    # mismatch
            client.post(f"/api/things?X-CSRF-TOKEN={token}"),                           # query only
            client.post("/api/things", headers={"X-CSRF-TOKEN": token, "Origin": "https://evil.test"}),
            client.post("/api/things", headers={"X-CSRF-TOKEN": token, "Origin": "null"}),
            client.post("/api/things", headers={"X-CSRF-TOKEN": token, "Sec-Fetch-Site": "cross-site"}),
            client.post("/api/things", headers={"X-CSRF-TOKEN": token, "X-HTTP-Method-Override": "POST"}),
        ]
    for r in attempts:
        assert r.status_code == 400, r.text
        assert r.json() == {"error": "CSRF token missing or invalid"}
        assert token not in r.text


def test_wire_no_cookie_refused(wire):
    with wire_client(wire) as client:
        _, token = fetch_token(client)
    with wire_client(wire) as fresh:                  # a client without the cookie
        r = fresh.post("/api/things", headers={"X-CSRF-TOKEN": token})
    assert r.status_code == 400 and r.json() == {"error": "CSRF token missing or invalid"}


def test_wire_same_site_origin_allowed_by_cors_accepted(wire):
    with wire_client(wire) as client:
        _, token = fetch_token(client)
        r = client.post("/api/things", headers={"X-CSRF-TOKEN": token, "Origin": "https://app.example.test",
                                                "Sec-Fetch-Site": "same-site"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example.test"


def test_wire_unprotected_flow_needs_no_token(wire):
    with wire_client(wire) as client:
        assert client.post("/api/open").status_code == 200


def test_wire_rotation_seen_without_restart_and_grace_applies(wire):
    import time as _time
    from conftest import flowlet
    root = wire[0]

    def rotate_csrf():                                 # the real command, another process
        done = flowlet("secrets", "rotate-csrf", "-w", str(root))
        assert done.returncode == 0, done.stderr

    with wire_client(wire) as old_client:
        _, old_token = fetch_token(old_client)
        before = stored_current_key(root)
        rotate_csrf()
        after = stored_current_key(root)
        assert after != before
        deadline = _time.monotonic() + 5
        while True:                                    # the server picks it up within ~2 s
            with wire_client(wire) as c:
                r, token = fetch_token(c)
            value = cookie_pair(r.headers["set-cookie"].encode())[1]
            if b64url_decode(value) == hmac.new(after, token.encode(), hashlib.sha256).digest():
                break
            assert _time.monotonic() < deadline, "server did not see the rotation"
            _time.sleep(0.2)
        # the old pair is still within grace
        assert old_client.post("/api/things", headers={"X-CSRF-TOKEN": old_token}).status_code == 200
        # a second rotation ends the first key at once
        rotate_csrf()
        deadline = _time.monotonic() + 5
        while old_client.post("/api/things", headers={"X-CSRF-TOKEN": old_token}).status_code != 400:
            assert _time.monotonic() < deadline, "first key still accepted after a second rotation"
            _time.sleep(0.2)


# ---- remembered pairs -------------------------------------------------------------------------

def test_a_remembered_pair_still_follows_rotation_and_grace(issued):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie)))       # verified, then remembered
    assert world.keys.matched(token, cookie)
    world.policy.check(request(world.headers(token, cookie)))       # answered from memory
    world.rotate()
    assert not world.keys.matched(token, cookie)                    # a new key forgets every pair
    world.clock.now += world.settings.grace_s - 1
    world.policy.check(request(world.headers(token, cookie)))       # the previous key, in its grace
    world.clock.now += 1
    assert refused(world.policy, request(world.headers(token, cookie)))


def test_only_the_exact_pair_is_remembered(issued):
    world, token, cookie = issued
    world.policy.check(request(world.headers(token, cookie)))
    other, _ = world.issue()
    assert refused(world.policy, request(world.headers(other, cookie)))
    assert refused(world.policy, request(world.headers(token, cookie[:-2] + "AA")))


def test_remembered_pairs_are_bounded(world, monkeypatch):
    monkeypatch.setattr(csrf_mod, "MATCHED_MAX", 8)
    pairs = [world.issue() for _ in range(20)]
    for token, cookie in pairs:
        world.policy.check(request(world.headers(token, cookie)))
    assert len(world.keys._matched) <= 8
    for token, cookie in pairs:                                     # forgotten ones verify again
        world.policy.check(request(world.headers(token, cookie)))
