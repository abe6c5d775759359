"""HTTP Basic authentication (RFC 7617) with argon2id hashes and the verification cache."""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import pytest
from argon2 import PasswordHasher

import flowlet.security.basic as basic_module
from flowlet.errors import ConfigError, HTTPError
from flowlet.http import Request
from flowlet.secrets.model import BasicSecret, JwtSecret
from flowlet.security.auth import compile_auth, parse_auth
from flowlet.security.basic import BasicPolicy, parse_basic
from flowlet.security.runtime import AuthRuntime
from flowlet.source import load_yaml
import fakes
from fakes import Clock, View, request, run

# Cheap argon2id parameters keep the suite fast; one test below uses the real defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse:battery staple"


def users_secret(**users) -> BasicSecret:
    return BasicSecret("team", {u: FAST.hash(p) for u, p in users.items()})


@pytest.fixture(scope="module")
def team():
    return users_secret(alice=PASSWORD)


def basic(user: str, password: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


_RUNTIMES: list[AuthRuntime] = []


@pytest.fixture(autouse=True)
def _close_runtimes():
    """Each test's runtimes end with it (their hashing threads with them)."""
    yield
    while _RUNTIMES:
        _RUNTIMES.pop().close()


def runtime(clock=None, **options) -> AuthRuntime:
    clock = clock or Clock()
    rt = AuthRuntime(clock=clock, monotonic=clock, **options)
    _RUNTIMES.append(rt)
    return rt


def policy(secret=None, *, view=None, clock=None, realm="shop", rt=None) -> BasicPolicy:
    view = view or View(secret)
    return BasicPolicy("team", realm=realm, secrets=view, runtime=rt or runtime(clock))


def refused(pol: BasicPolicy, req: Request) -> HTTPError:
    return fakes.refused(pol, req, challenge=b"Basic realm=")


# ---- parsing (RFC 7617) ----------------------------------------------------------------------------

def b64(text: bytes) -> str:
    return base64.b64encode(text).decode()


@pytest.mark.parametrize("value,expected", [
    ("Basic " + b64(b"alice:pw"), ("alice", "pw")),
    ("basic " + b64(b"alice:pw"), ("alice", "pw")),
    ("BASIC " + b64(b"alice:pw"), ("alice", "pw")),
    ("Basic   " + b64(b"alice:pw"), ("alice", "pw")),
    ("Basic " + b64(b"alice:pw:with:colons"), ("alice", "pw:with:colons")),
    ("Basic " + b64(b"alice:"), ("alice", "")),
    ("Basic " + b64(b":pw"), ("", "pw")),
    ("Basic " + b64("bj\u00f6rk:p\u00e4ss\u20ac".encode()), ("bj\u00f6rk", "p\u00e4ss\u20ac")),
])
def test_parse_basic_accepts(value, expected):
    assert parse_basic(value) == expected


@pytest.mark.parametrize("value", [
    "Bearer " + b64(b"alice:pw"),
    "Basic",
    "Basic ",
    "Basic " + b64(b"alice-no-colon"),
    "Basic " + b64(b"alice:pw").rstrip("="),                 # padding missing
    "Basic " + b64(b"alice:pw") + "=",                       # padding extra
    "Basic " + b64(b"alice:pw")[:4] + " " + b64(b"alice:pw")[4:],   # whitespace inside
    "Basic " + b64(b"alice:pw") + "\t",
    "Basic " + b64(b"alice:pw")[:-2] + "x=",                 # stray bits (non-canonical)
    "Basic " + base64.urlsafe_b64encode(b"al?ce>:pw~~~").decode(),  # base64url alphabet
    "Basic " + b64(b"alice:\xff\xfe"),                       # not UTF-8
    "Basic " + b64(b"alice:p\x00w"),                         # control character
    "Basic " + b64(b"ali\nce:pw"),
    "Basic " + b64(b"alice:pw") + "\u00e9",
    "Basic " + "QUFB" * 2000,                                # over the size cap
    "Basic=" + b64(b"alice:pw"),
])
def test_parse_basic_refuses(value):
    assert parse_basic(value) is None


# ---- the policy -------------------------------------------------------------------------------------

def test_right_password_gives_the_auth_value(team):
    assert run(policy(team).authenticate(request([basic("alice", PASSWORD)]))) == {
        "type": "basic", "user": "alice", "claims": {}, "scopes": []}


def test_missing_header_is_401_with_realm_and_charset(team):
    err = refused(policy(team), request())
    assert dict(err.headers)[b"www-authenticate"] == b'Basic realm="shop", charset="UTF-8"'
    assert err.message == "authentication required"


def test_realm_is_quote_escaped(team):
    err = refused(policy(team, realm='a "b" \\c'), request())
    assert dict(err.headers)[b"www-authenticate"] == b'Basic realm="a \\"b\\" \\\\c", charset="UTF-8"'


def test_wrong_password_is_401(team):
    err = refused(policy(team), request([basic("alice", "wrong")]))
    assert err.message == "invalid user name or password"


def test_unknown_user_is_401_with_the_same_message(team):
    assert refused(policy(team), request([basic("mallory", PASSWORD)])).message == "invalid user name or password"


def test_password_is_split_at_the_first_colon():
    secret = users_secret(**{"a": "b:c", "a:b": "c"})
    assert run(policy(secret).authenticate(request([basic("a", "b:c")])))["user"] == "a"
    pol = policy(users_secret(**{"a:b": "c"}))      # "a:b:c" means user a, so user "a:b" never matches
    refused(pol, request([basic("a:b", "c")]))


def test_non_ascii_credentials_are_utf8():
    secret = users_secret(**{"bj\u00f6rk": "p\u00e4ss\u20ac"})
    auth = run(policy(secret).authenticate(request([basic("bj\u00f6rk", "p\u00e4ss\u20ac")])))
    assert auth["user"] == "bj\u00f6rk"


def test_latin1_credentials_are_refused():
    secret = users_secret(**{"bj\u00f6rk": "pw"})
    value = "Basic " + b64("bj\u00f6rk:pw".encode("latin-1"))
    refused(policy(secret), request([("authorization", value)]))


def test_bearer_header_is_refused_by_basic(team):
    refused(policy(team), request([("authorization", "Bearer abc")]))


def test_repeated_authorization_header_is_refused(team):
    refused(policy(team), request([basic("alice", PASSWORD), basic("alice", PASSWORD)]))


def test_hash_that_argon2_cannot_read_is_a_401_not_a_500():
    secret = BasicSecret("team", {"alice": "not-a-phc-string"})
    refused(policy(secret), request([basic("alice", "x")]))


def test_deleted_secret_refuses_at_request_time(team):
    view = View(team)
    pol = policy(view=view)
    run(pol.authenticate(request([basic("alice", PASSWORD)])))
    del view.secrets["team"]
    refused(pol, request([basic("alice", PASSWORD)]))


def test_secret_changed_to_another_type_refuses(team):
    view = View(team)
    pol = policy(view=view)
    view.put(JwtSecret("team", hs_key=b"k" * 32))
    refused(pol, request([basic("alice", PASSWORD)]))


# ---- the cache ---------------------------------------------------------------------------------------

class CountingVerifier:
    """Wraps the real argon2 check to count how often it runs (it still runs)."""

    def __init__(self, pol: BasicPolicy):
        self.calls = 0
        verifier = pol._v
        real = verifier.check_password

        def counted(*args):
            self.calls += 1
            return real(*args)
        verifier.check_password = counted


def test_cache_hit_skips_argon2(team):
    pol = policy(team)
    count = CountingVerifier(pol)
    for _ in range(5):
        run(pol.authenticate(request([basic("alice", PASSWORD)])))
    assert count.calls == 1


def test_failures_are_not_cached(team):
    pol = policy(team)
    count = CountingVerifier(pol)
    for _ in range(3):
        refused(pol, request([basic("alice", "wrong")]))
    assert count.calls == 3


def test_cache_entry_expires_after_the_ttl(team):
    clock = Clock()
    pol = policy(team, clock=clock)
    count = CountingVerifier(pol)
    run(pol.authenticate(request([basic("alice", PASSWORD)])))
    clock.now += basic_module.CACHE_TTL - 1
    run(pol.authenticate(request([basic("alice", PASSWORD)])))
    assert count.calls == 1
    clock.now += 2
    run(pol.authenticate(request([basic("alice", PASSWORD)])))
    assert count.calls == 2


def test_cache_is_dropped_when_the_secret_changes(team):
    view = View(team)
    pol = policy(view=view)
    run(pol.authenticate(request([basic("alice", PASSWORD)])))
    view.put(users_secret(alice="new password"))
    refused(pol, request([basic("alice", PASSWORD)]))
    run(pol.authenticate(request([basic("alice", "new password")])))


def test_removed_user_is_refused_at_once(team):
    view = View(users_secret(alice=PASSWORD, bob="pw"))
    pol = policy(view=view)
    run(pol.authenticate(request([basic("bob", "pw")])))
    view.put(BasicSecret("team", {"alice": view.get("team").users["alice"]}))
    refused(pol, request([basic("bob", "pw")]))


def test_cache_is_bounded(team, monkeypatch):
    monkeypatch.setattr(basic_module, "CACHE_MAX", 3)
    secret = users_secret(**{f"u{i}": "pw" for i in range(6)})
    pol = policy(secret)
    for i in range(6):
        run(pol.authenticate(request([basic(f"u{i}", "pw")])))
    assert len(pol._v.cache) <= 3


def test_cache_keys_are_not_the_credentials(team):
    pol = policy(team)
    run(pol.authenticate(request([basic("alice", PASSWORD)])))
    for key in pol._v.cache:
        assert PASSWORD.encode() not in key and b"alice" not in key and len(key) == 32


def test_concurrent_requests_with_the_same_credentials_share_one_verification(team):
    pol = policy(team)
    count = CountingVerifier(pol)

    async def burst():
        return await asyncio.gather(*(pol.authenticate(request([basic("alice", PASSWORD)])) for _ in range(8)))
    results = run(burst())
    assert all(r["user"] == "alice" for r in results)
    assert count.calls == 1


def test_verification_runs_off_the_event_loop():
    secret = BasicSecret("team", {"alice": PasswordHasher().hash("pw")})   # real cost, ~0.1-0.2 s
    pol = policy(secret)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async def scenario():
        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        await pol.authenticate(request([basic("alice", "pw")]))
        elapsed = time.perf_counter() - started
        task.cancel()
        return elapsed
    elapsed = run(scenario())
    assert elapsed > 0.03 and ticks >= 3        # the loop kept running meanwhile (blocked: 0 or 1)


def test_unknown_user_costs_a_verification_too():
    """No user enumeration by timing: an unknown user is verified against a dummy hash."""
    secret = BasicSecret("team", {"alice": PasswordHasher().hash("pw")})
    pol = policy(secret)
    pol.prepare()

    def timed(user: str) -> float:
        started = time.perf_counter()
        refused(pol, request([basic(user, "wrong")]))
        return time.perf_counter() - started
    known = min(timed("alice") for _ in range(2))
    unknown = min(timed("nobody") for _ in range(2))
    assert unknown > 0.5 * known and known > 0.02


def test_password_never_reaches_logs_errors_or_reprs(team, caplog):
    pol = policy(team)
    secret_text = "s3cr3t-Pa55"
    with caplog.at_level(logging.DEBUG):
        err = refused(pol, request([basic("alice", secret_text)]))
        run(pol.authenticate(request([basic("alice", PASSWORD)])))
    for text in (caplog.text, err.message, repr(err), repr(pol), repr(team)):
        assert secret_text not in text and PASSWORD not in text
        assert "$argon2" not in text


# ---- the auth: block with basic ------------------------------------------------------------------------

def test_compile_auth_builds_a_basic_policy_without_scope(team):
    cfg = parse_auth(load_yaml("type: basic\nsecret: team\n", "flows/a.yaml"))
    auth, scope = compile_auth(cfg, realm="shop", secrets=View(team), runtime=runtime(), compile_expr=None)
    assert isinstance(auth, BasicPolicy) and scope is None
    assert run(auth.authenticate(request([basic("alice", PASSWORD)])))["user"] == "alice"


def test_compile_auth_with_a_jwt_secret_for_basic_is_a_load_error():
    cfg = parse_auth(load_yaml("type: basic\nsecret: team\n", "flows/a.yaml"))
    with pytest.raises(ConfigError) as err:
        compile_auth(cfg, realm="shop", secrets=View(JwtSecret("team", hs_key=b"k" * 32)), runtime=runtime(),
                     compile_expr=None)
    assert err.value.line == 2 and "needs a basic secret" in err.value.message


def test_compile_auth_missing_basic_secret_is_a_load_error():
    cfg = parse_auth(load_yaml("type: basic\nsecret: team\n", "flows/a.yaml"))
    with pytest.raises(ConfigError) as err:
        compile_auth(cfg, realm="shop", secrets=View(), runtime=runtime(), compile_expr=None)
    assert "--type basic" in err.value.message and err.value.line == 2


# ---- over HTTP, through the real server ------------------------------------------------------------

def test_basic_auth_over_http_and_a_password_change_without_restart(tmp_path):
    import httpx

    from conftest import assert_json_error, flowlet, make_workspace, run_server

    ws = make_workspace(tmp_path, {
        "flowlet.yaml": "name: my shop\n",
        "flows/me.yaml": """
            endpoint: {method: GET, path: /me, auth: {type: basic, secret: team}}
            respond: {body: {user: "=auth.user", type: "=auth.type", scopes: "=auth.scopes"}}
        """,
    })
    done = flowlet("secrets", "set", "team", "-w", str(ws), "--type", "basic", "--user", "bj\u00f6rk",
                   "--password-stdin", input="p\u00e4ss:word\n")
    assert done.returncode == 0, done.stderr
    with run_server(ws) as srv:
        url = srv.url + "/api/me"
        resp = httpx.get(url)
        assert_json_error(resp, 401, "authentication required")
        assert resp.headers["www-authenticate"] == 'Basic realm="my shop", charset="UTF-8"'
        good = httpx.BasicAuth("bj\u00f6rk".encode(), "p\u00e4ss:word".encode())
        resp = httpx.get(url, auth=good)
        assert resp.status_code == 200 and resp.json() == {"user": "bj\u00f6rk", "type": "basic", "scopes": []}
        assert httpx.get(url, auth=good).status_code == 200                         # cached
        assert_json_error(httpx.get(url, auth=("bj\u00f6rk", "wrong")), 401)
        assert_json_error(httpx.get(url, headers={"authorization": "Basic !!!"}), 401)

        done = flowlet("secrets", "set", "team", "-w", str(ws), "--type", "basic", "--user", "bj\u00f6rk",
                       "--password-stdin", input="new-password\n")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 5
        while httpx.get(url, auth=good).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert_json_error(httpx.get(url, auth=good), 401)
        assert httpx.get(url, auth=("bj\u00f6rk", "new-password")).status_code == 200
    assert "p\u00e4ss:word" not in srv.stderr and "new-password" not in srv.stderr


def test_a_flood_of_slow_checks_is_answered_429_not_queued(monkeypatch, team):
    """Past the runtime's bound of password checks in flight, new ones are refused at once
    (429 + Retry-After)."""
    import threading

    release = threading.Event()
    pol = policy(team, rt=runtime(max_queued=2))
    original = basic_module._Verifier.check_password

    def slow(self, users, user, password):
        release.wait(10)
        return original(self, users, user, password)

    monkeypatch.setattr(basic_module._Verifier, "check_password", slow)

    async def scenario():
        tasks = [asyncio.ensure_future(pol.authenticate(request([basic(f"u{i}", "wrong")]))) for i in range(3)]
        await asyncio.sleep(0.05)
        done = [t for t in tasks if t.done()]
        assert len(done) == 1
        exc = done[0].exception()
        assert isinstance(exc, HTTPError) and exc.status == 429 and (b"retry-after", b"1") in exc.headers
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sorted(getattr(r, "status", None) for r in results) == [401, 401, 429]

    asyncio.run(scenario())


# ---- the runtime the workspace owns ------------------------------------------------------------------

def test_endpoints_sharing_a_secret_share_one_verifier_within_a_runtime(team):
    view = View(team)
    rt = runtime()
    a = BasicPolicy("team", realm="r", secrets=view, runtime=rt)
    b = BasicPolicy("team", realm="other", secrets=view, runtime=rt)
    count = CountingVerifier(a)
    run(a.authenticate(request([basic("alice", PASSWORD)])))
    run(b.authenticate(request([basic("alice", PASSWORD)])))
    assert count.calls == 1
    assert BasicPolicy("team", realm="r", secrets=view, runtime=runtime())._v is not a._v


def test_closing_the_runtime_ends_its_hashing_threads(team):
    import threading

    rt = runtime()
    run(policy(team, rt=rt).authenticate(request([basic("alice", PASSWORD)])))
    workers = [t for t in threading.enumerate() if t.name.startswith("argon2")]
    assert workers
    rt.close()
    for t in workers:
        t.join(5)
    assert not any(t.is_alive() for t in workers)
