"""Rate limits: config models, the shared counter table, Redis counters and their outage, the
endpoint limit and the authentication throttle."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import socket
import threading
import uuid

import pytest

import redis_keys

from flowlet.edge.authlimit import AuthThrottle
from flowlet.edge.counters import LocalTable, create_shared_table
from flowlet.edge.ratelimit import (EndpointRateLimit, Limiter, RateLimitSettings, client_key,
                                    compile_endpoint_limit, parse_endpoint_rate_limit,
                                    parse_rate_limit_settings, probe)
from flowlet.errors import ConfigError, HTTPError
from flowlet.expr import compile_expr
from flowlet.http import Request
from flowlet.source import load_yaml

REDIS = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not redis_up(), reason="no Redis on 127.0.0.1:6379")


_PREFIXES: list[str] = []


def prefix() -> str:
    _PREFIXES.append(redis_keys.new_prefix())
    return _PREFIXES[-1]


@pytest.fixture(autouse=True)
def _drop_test_keys():
    yield
    while _PREFIXES:
        redis_keys.drop(_PREFIXES.pop())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(client: str = "198.51.100.7", **headers: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/api/x", "scheme": "http",
                    "client": (client, 1234), "query_string": b"",
                    "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]})


# ---- config ---------------------------------------------------------------------------------

def settings(text: str) -> RateLimitSettings:
    return parse_rate_limit_settings(load_yaml(text, "flowlet.yaml")["rate_limits"])


def test_defaults_are_on():
    s = parse_rate_limit_settings(None)
    assert (str(s.per_client), str(s.per_user), s.store) == ("30/60s", "10/60s", None)


def test_rates_and_store_parse():
    s = settings("rate_limits:\n  store: redis://10.0.0.5:6379/0\n  auth_failures: {per_client: 5/1m, per_user: '3/30s'}\n")
    assert (s.store, str(s.per_client), str(s.per_user)) == ("redis://10.0.0.5:6379/0", "5/60s", "3/30s")


def test_auth_failures_can_be_turned_off_explicitly():
    assert settings("rate_limits: {auth_failures: false}\n").per_client is None


@pytest.mark.parametrize("text,line,needle", [
    ("rate_limits:\n  auth_failures:\n    per_client: lots\n", 3, "30/60s"),
    ("rate_limits:\n  auth_failures:\n    per_user: 0/60s\n", 3, "at least 1"),
    ("rate_limits:\n  store: memcached://x\n", 2, "redis://"),
    ("rate_limits:\n  stor: redis://x\n", 2, "did you mean 'store'"),
    ("rate_limits:\n  auth_failures:\n    per_ip: 1/1s\n", 3, "per_client"),
])
def test_config_errors_name_file_and_line(text, line, needle):
    with pytest.raises(ConfigError) as info:
        settings(text)
    assert str(info.value).startswith(f"flowlet.yaml:{line}: error:") and needle in str(info.value)


def test_endpoint_block_parses_and_checks():
    doc = load_yaml("endpoint:\n  rate_limit: {limit: 5, window_s: 10, key: '=auth.claims.tenant'}\n", "flows/a.yaml")
    cfg = parse_endpoint_rate_limit(doc["endpoint"]["rate_limit"], doc["endpoint"])
    assert (cfg.limit, cfg.window_s, cfg.key) == (5, 10, "=auth.claims.tenant")
    bad = load_yaml("endpoint:\n  rate_limit:\n    limit: 5\n    window_s: 10\n    key: ip\n", "flows/a.yaml")
    with pytest.raises(ConfigError) as info:
        parse_endpoint_rate_limit(bad["endpoint"]["rate_limit"], bad["endpoint"])
    assert str(info.value).startswith("flows/a.yaml:5: error:")


def test_user_key_needs_auth():
    cfg = EndpointRateLimit(5, 10, "user", key_where=("flows/a.yaml", 7))
    with pytest.raises(ConfigError, match="flows/a.yaml:7.*auth"):
        compile_endpoint_limit(cfg, route_id="GET /a", limiter=Limiter(RateLimitSettings(), LocalTable()),
                               uses_auth=False, compile_expr=compile_expr)


def test_expression_key_syntax_error_is_a_load_error():
    cfg = EndpointRateLimit(5, 10, "=request.headers[", key_where=("flows/a.yaml", 4))
    with pytest.raises(ConfigError, match="flows/a.yaml:4"):
        compile_endpoint_limit(cfg, route_id="GET /a", limiter=Limiter(RateLimitSettings(), LocalTable()),
                               uses_auth=False, compile_expr=compile_expr)


def test_ipv6_clients_count_per_64():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("198.51.100.7") == "198.51.100.7"


# ---- the shared table -----------------------------------------------------------------------

def _hammer(path: str, n: int) -> None:
    table = LocalTable(path)
    for _ in range(n):
        table.add("shared", 1, 60_000)


def test_table_is_exact_across_processes():
    path = create_shared_table(groups=64)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(path, 2000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert LocalTable(path).get("shared")[0] == 8000


def test_table_window_starts_over():
    table = LocalTable()
    assert table.add("k", 1, 10_000, now_ms=1_000)[0] == 1
    assert table.add("k", 1, 10_000, now_ms=9_999) == (2, 10_000)
    assert table.add("k", 1, 10_000, now_ms=10_000) == (1, 20_000)


def test_full_group_evicts_the_earliest_window_not_a_crash():
    table = LocalTable(create_shared_table(groups=1, per_group=4))
    for i in range(10):
        table.add(f"k{i}", 1, 60_000)
    assert table.get("k9")[0] == 1
    # k0's slot now holds another key: the remembered position must not be trusted
    assert table.add("k0", 1, 60_000)[0] == 1
    assert sorted(table.get(f"k{i}")[0] for i in range(10)) == [0] * 6 + [1] * 4


# ---- the endpoint limit ---------------------------------------------------------------------

def endpoint_limit(limit: int, key: str, limiter: Limiter, uses_auth: bool = False):
    cfg = EndpointRateLimit(limit, 60, key)
    return compile_endpoint_limit(cfg, route_id=f"GET /t{uuid.uuid4().hex}", limiter=limiter,
                                  uses_auth=uses_auth, compile_expr=compile_expr)


async def passes(policy, req, auth=None) -> int:
    ok = 0
    for _ in range(5):
        try:
            await policy.check(req, auth or {"user": None}, {})
            ok += 1
        except HTTPError as exc:
            assert exc.status == 429
    return ok


def test_over_the_limit_is_429_with_the_draft_headers():
    policy = endpoint_limit(2, "client", Limiter(RateLimitSettings(), LocalTable()))

    async def go():
        await policy.check(request(), {}, {})
        await policy.check(request(), {}, {})
        with pytest.raises(HTTPError) as info:
            await policy.check(request(), {}, {})
        return info.value
    err = asyncio.run(go())
    headers = dict(err.headers)
    assert err.status == 429 and 1 <= int(headers[b"retry-after"]) <= 60
    assert headers[b"ratelimit-policy"] == b'"endpoint";q=2;w=60'
    assert headers[b"ratelimit"] == b'"endpoint";r=0;t=' + headers[b"retry-after"]


def test_keys_separate_clients_users_and_expressions():
    limiter = Limiter(RateLimitSettings(), LocalTable())
    by_client = endpoint_limit(2, "client", limiter)
    by_user = endpoint_limit(2, "user", limiter, uses_auth=True)
    by_header = endpoint_limit(2, "=request.headers['x-tenant']", limiter)

    async def go():
        return [await passes(by_client, request("10.0.0.1")), await passes(by_client, request("10.0.0.2")),
                await passes(by_user, request("10.0.0.3"), {"user": "ann"}),
                await passes(by_user, request("10.0.0.4"), {"user": "ann"}),
                await passes(by_header, request("10.0.0.5", x_tenant="a")),
                await passes(by_header, request("10.0.0.6", x_tenant="b"))]
    assert asyncio.run(go()) == [2, 2, 2, 0, 2, 2]


def test_expression_key_missing_header_counts_per_client_not_500():
    policy = endpoint_limit(1, "=request.headers['x-tenant']", Limiter(RateLimitSettings(), LocalTable()))
    assert asyncio.run(passes(policy, request("10.0.0.9"))) == 1


def test_expression_sees_request_client():
    policy = endpoint_limit(1, "=request.client + '-x'", Limiter(RateLimitSettings(), LocalTable()))
    assert asyncio.run(passes(policy, request("10.0.0.7"))) == 1
    assert asyncio.run(passes(policy, request("10.0.0.8"))) == 1


# ---- Redis ----------------------------------------------------------------------------------

@needs_redis
def test_redis_counts_are_exact_across_limiters():
    s = RateLimitSettings(store=REDIS, key_prefix=prefix())
    a, b = Limiter(s, LocalTable()), Limiter(s, LocalTable())      # two servers

    async def go():
        counts = await asyncio.gather(*[(a if i % 2 else b).hit("k", 60) for i in range(200)])
        await a.aclose()
        await b.aclose()
        return sorted(c for c, _ in counts)
    assert asyncio.run(go()) == list(range(1, 201))
    assert a.health() == {"redis": "ok"}


@needs_redis
def test_redis_endpoint_limit_shared_by_two_servers():
    s = RateLimitSettings(store=REDIS, key_prefix=prefix())
    one = endpoint_limit(3, "client", Limiter(s, LocalTable()))
    two = compile_endpoint_limit(EndpointRateLimit(3, 60, "client"), route_id=one.name[3:-1],
                                 limiter=Limiter(s, LocalTable()), uses_auth=False, compile_expr=compile_expr)

    async def go():
        return await passes(one, request()) + await passes(two, request())
    assert asyncio.run(go()) == 3


def test_redis_down_counts_locally_logs_once_never_raises(caplog):
    s = RateLimitSettings(store=f"redis://127.0.0.1:{closed_port()}/0", key_prefix=prefix())
    limiter = Limiter(s, LocalTable())

    async def go():
        return [(await limiter.hit("k", 60))[0] for _ in range(20)]
    with caplog.at_level(logging.WARNING, logger="flowlet.ratelimit"):
        counts = asyncio.run(go())
    assert counts == list(range(1, 21))
    assert limiter.health() == {"redis": "down"}
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


class CuttableProxy:
    """A TCP relay to Redis on its own port, which the test can cut and restore."""

    def __init__(self):
        self.port = closed_port()
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", 6379))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self.server is not None:
            try:
                self.server.shutdown(socket.SHUT_RDWR)     # wakes the blocked accept()
            except OSError:
                pass
            self.server.close()
            self.server = None
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.conns.clear()


@needs_redis
def test_redis_outage_and_recovery(caplog):
    proxy = CuttableProxy()
    proxy.start()
    s = RateLimitSettings(store=f"redis://127.0.0.1:{proxy.port}/0", key_prefix=prefix())
    limiter = Limiter(s, LocalTable())

    async def go():
        assert (await limiter.hit("k", 60))[0] == 1
        proxy.cut()
        down = [(await limiter.hit("k", 60))[0] for _ in range(5)]     # local counting, no error
        health_down = limiter.health()
        proxy.start()
        for _ in range(100):                                             # back-off starts at 0.5 s
            await asyncio.sleep(0.05)
            count, _ = await limiter.hit("k", 60)
            if limiter.health() == {"redis": "ok"}:
                break
        await limiter.aclose()
        return down, health_down, count
    with caplog.at_level(logging.WARNING, logger="flowlet.ratelimit"):
        down, health_down, count = asyncio.run(go())
    proxy.cut()
    assert down == [1, 2, 3, 4, 5] and health_down == {"redis": "down"}
    assert limiter.health() == {"redis": "ok"} and count == 2          # Redis had kept its 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1 and any("reachable again" in m for m in messages)


# ---- the authentication throttle ------------------------------------------------------------

def throttles(store: str | None = None, per_client="3/60s", per_user="2/60s", servers: int = 1):
    s = settings(f"rate_limits:\n  auth_failures: {{per_client: '{per_client}', per_user: '{per_user}'}}\n")
    s = RateLimitSettings(store, prefix(), s.per_client, s.per_user)
    return [AuthThrottle(Limiter(s, LocalTable())) for _ in range(servers)]


async def attempt(t: AuthThrottle, client: str, user: str | None, ok: bool) -> int:
    try:
        ticket = await t.admit(client, user)
    except HTTPError as exc:
        return exc.status
    if ok:
        await t.succeeded(ticket)
    else:
        t.failed(ticket)
    return 200 if ok else 401


STORES = [None, pytest.param(REDIS, marks=needs_redis)]


@pytest.mark.parametrize("store", STORES)
def test_client_past_per_client_gets_429_before_any_check(store):
    t, = throttles(store, per_user="100/60s")

    async def go():
        return [await attempt(t, "10.0.0.1", f"user{i}", False) for i in range(5)] + \
               [await attempt(t, "10.0.0.2", "user0", False)]
    assert asyncio.run(go()) == [401, 401, 401, 429, 429, 401]


@pytest.mark.parametrize("store", STORES)
def test_successes_do_not_use_up_the_budget(store):
    t, = throttles(store)

    async def go():
        return [await attempt(t, "10.0.0.1", "ann", True) for _ in range(10)]
    assert asyncio.run(go()) == [200] * 10


@pytest.mark.parametrize("store", STORES)
def test_user_under_attack_throttles_strangers_not_recent_clients(store):
    t, = throttles(store, per_client="100/60s")

    async def go():
        first = await attempt(t, "10.0.0.1", "ann", True)              # ann logs in from home
        attack = [await attempt(t, f"10.6.6.{i}", "ann", False) for i in range(4)]
        stranger = await attempt(t, "10.0.0.9", "ann", True)            # even the right password waits
        home = await attempt(t, "10.0.0.1", "ann", True)
        return first, attack, stranger, home
    assert asyncio.run(go()) == (200, [401, 401, 429, 429], 429, 200)


@pytest.mark.parametrize("store", STORES)
def test_parallel_guesses_are_counted_exactly(store):
    t, = throttles(store, per_client="30/60s", per_user="1000/60s")

    async def go():
        results = await asyncio.gather(*[attempt(t, "10.0.0.1", "bob", False) for _ in range(50)])
        return sorted(results)
    assert asyncio.run(go()) == [401] * 30 + [429] * 20


@needs_redis
def test_two_servers_share_the_throttle():
    a, b = throttles(REDIS, per_client="4/60s", per_user="100/60s", servers=2)

    async def go():
        return [await attempt(a if i % 2 else b, "10.0.0.1", "x", False) for i in range(6)]
    assert asyncio.run(go()) == [401, 401, 401, 401, 429, 429]


def test_cached_answers_from_a_marked_client_are_rechecked():
    t, = throttles(None, per_client="2/60s", per_user="100/60s")

    async def go():
        assert t.suspect("10.0.0.1", "ann") is False
        for _ in range(2):
            await attempt(t, "10.0.0.1", "x", False)
        assert t.suspect("10.0.0.1", "ann") is True
        assert t.suspect("10.0.0.2", "ann") is False          # another client is not affected
        with pytest.raises(HTTPError) as info:
            await t.confirm("10.0.0.1", "ann")
        return info.value.status
    assert asyncio.run(go()) == 429


def test_throttle_keeps_working_when_redis_is_down():
    t, = throttles(f"redis://127.0.0.1:{closed_port()}/0", per_client="2/60s")

    async def go():
        return [await attempt(t, "10.0.0.1", "x", False) for _ in range(3)]
    assert asyncio.run(go()) == [401, 401, 429]


def test_redis_password_never_reaches_the_log_or_a_repr(caplog):
    s = RateLimitSettings(store=f"redis://:hunter2secret@127.0.0.1:{closed_port()}/0", key_prefix=prefix())
    limiter = Limiter(s, LocalTable())
    with caplog.at_level(logging.WARNING, logger="flowlet.ratelimit"):
        asyncio.run(limiter.hit("k", 60))
    assert caplog.records and "hunter2secret" not in caplog.text and "hunter2secret" not in repr(s)


class SilentRedis:
    """Answers the script upload, then never again: a Redis that hangs mid-connection."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                conn.recv(65536)
                conn.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n")
            except OSError:
                pass

    def close(self) -> None:
        for c in [self.server, *self.conns]:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


def test_redis_that_stops_answering_is_left_for_local_counting(caplog):
    fake = SilentRedis()
    limiter = Limiter(RateLimitSettings(store=f"redis://127.0.0.1:{fake.port}/0", key_prefix=prefix()), LocalTable())

    async def go():
        async with asyncio.timeout(5):        # the watchdog must answer well before this
            return await asyncio.gather(*[limiter.hit("k", 60) for _ in range(3)])
    try:
        with caplog.at_level(logging.WARNING, logger="flowlet.ratelimit"):
            counts = sorted(c for c, _ in asyncio.run(go()))
    finally:
        fake.close()
    assert counts == [1, 2, 3] and limiter.health() == {"redis": "down"}
    assert "did not answer" in caplog.text


def test_closing_lets_go_of_the_table_and_twice_is_fine():
    import os
    before = len(os.listdir("/proc/self/fd"))
    limiters = [Limiter(RateLimitSettings(), LocalTable()) for _ in range(5)]
    for limiter in limiters:
        limiter.close()
        limiter.close()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_probe_for_an_outside_health_check():
    assert asyncio.run(probe(RateLimitSettings())) == {"counters": "local"}
    down = RateLimitSettings(store=f"redis://127.0.0.1:{closed_port()}/0")
    assert asyncio.run(probe(down)) == {"redis": "down"}


@needs_redis
def test_probe_sees_a_live_redis():
    assert asyncio.run(probe(RateLimitSettings(store=REDIS))) == {"redis": "ok"}
