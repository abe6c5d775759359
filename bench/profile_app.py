#!/usr/bin/env python3
"""Flowlet's own cost per request, in process, without a server or a socket: calls the app's
RSGI entry point (what `flowlet serve` runs; ``--interface asgi`` for the ASGI one) directly with
a prepared scope for each case and reports microseconds per request. Less noisy than wrk on a
shared machine, and the place to profile from.

    python bench/profile_app.py [--cases open,preflight,...] [--n 20000] [--access-log]
    python bench/profile_app.py --profile CASE [--top 25] [--calls]

``--profile CASE`` runs that case under cProfile and prints the hottest functions; ``--calls``
prints the call counts per request instead (deterministic: the same on a busy machine). Under
``valgrind --tool=callgrind`` use ``--n 2000 --rounds 1`` for instruction counts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workspaces import Material  # noqa: E402

CASES = ("open", "preflight", "cors", "basic", "jwt-hs256", "jwt-rs256", "jwt-es256", "jwt-eddsa", "csrf",
         "routes-1", "routes-1000", "ratelimit-local", "post", "validated", "csrf-off")
PATHS = {"open": "/api/hello", "preflight": "/api/cors", "cors": "/api/cors", "basic": "/api/basic",
         "jwt-hs256": "/api/jwt/hs", "jwt-rs256": "/api/jwt/rs", "jwt-es256": "/api/jwt/es",
         "jwt-eddsa": "/api/jwt/ed", "csrf": "/api/notes", "routes-1": "/api/items0/42",
         "routes-1000": "/api/items999/42", "ratelimit-local": "/api/limited", "post": "/api/signup-raw",
         "validated": "/api/signup", "csrf-off": "/api/notes-open"}
HOST = b"127.0.0.1:8080"


def scope(method: str, path: str, headers: dict[str, str]) -> dict:
    hs = [(b"host", HOST), (b"user-agent", b"wrk"), *((k.lower().encode(), v.encode()) for k, v in headers.items())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": hs, "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000)}


class Capture:
    def __init__(self):
        self.status = None
        self.headers = []
        self.body = b""

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = message["headers"]
        else:
            self.body = message.get("body", b"")     # one body message per answer here


async def _noop_send(message):
    return None


def request_for(case: str, m: Material, app, loop) -> tuple[dict, bytes]:
    path = PATHS[case]
    body = b""
    if case == "preflight":
        return scope("OPTIONS", path, {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "content-type"}), body
    if case == "cors":
        return scope("GET", path, {"Origin": "https://app.example.com"}), body
    if case == "basic":
        return scope("GET", path, {"Authorization": m.basic_header}), body
    if case.startswith("jwt-"):
        return scope("GET", path, {"Authorization": "Bearer " + m.tokens[path.rsplit("/", 1)[1]]}), body
    if case == "csrf":
        cap = Capture()
        loop.run_until_complete(app(scope("GET", "/api/csrf", {}), _receive(b""), cap))
        token = json.loads(cap.body)["token"]
        cookie = dict(cap.headers)[b"set-cookie"].decode().split(";", 1)[0]
        body = b'{"title": "bench", "n": 1}'
        return scope("POST", path, {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                    "Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin",
                                    "X-CSRF-TOKEN": token, "Cookie": cookie}), body
    if case == "csrf-off":
        body = b'{"title": "bench", "n": 1}'
        return scope("POST", path, {"Content-Type": "application/json", "Content-Length": str(len(body))}), body
    if case in ("post", "validated"):
        body = json.dumps(m.signup_body).encode()
        return scope("POST", path, {"Content-Type": "application/json", "Content-Length": str(len(body))}), body
    return scope("GET", path, {}), body


class RsgiHeaders:
    """What granian's RSGI headers object offers, over the same pairs (names in lower case)."""
    __slots__ = ("pairs", "last")

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = pairs
        self.last = dict(pairs)

    def items(self):
        return list(self.pairs)

    def get(self, key, default=None):
        return self.last.get(key, default)

    def get_all(self, key):
        return [v for k, v in self.pairs if k == key]

    def __contains__(self, key):
        return key in self.last


class RsgiScope:
    __slots__ = ("proto", "http_version", "scheme", "method", "path", "query_string", "client", "server",
                 "authority", "headers")

    def __init__(self, asgi: dict):
        self.proto, self.http_version, self.scheme = "http", asgi["http_version"], asgi["scheme"]
        self.method, self.path, self.query_string = asgi["method"], asgi["path"], asgi["query_string"].decode()
        self.client, self.server, self.authority = "127.0.0.1:50000", "127.0.0.1:8080", None
        self.headers = RsgiHeaders([(k.decode("latin-1"), v.decode("latin-1")) for k, v in asgi["headers"]])


class RsgiProto:
    """granian's HTTP protocol object: the body in one piece, the answer captured."""
    __slots__ = ("body", "status", "headers", "answer")

    def __init__(self, body: bytes):
        self.body = body
        self.status = None
        self.headers = []
        self.answer = b""

    async def __call__(self):
        return self.body

    def response_bytes(self, status, headers, body):
        self.status, self.headers, self.answer = status, headers, body

    def response_empty(self, status, headers):
        self.status, self.headers, self.answer = status, headers, b""


def _receive(body: bytes):
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive():
        return message
    return receive


def load_app(ws: Path, access_log: bool = False, metrics_dir: Path | None = None):
    import os

    from flowlet.server.app import FlowletApp
    from flowlet.server.metrics import WorkerMetrics
    from flowlet.workspace.loader import load_workspace
    loaded = load_workspace(ws, serving=True)
    metrics = WorkerMetrics(loaded, metrics_dir) if metrics_dir is not None else None
    app = FlowletApp(loaded, access_log=access_log, metrics=metrics)
    if access_log:
        app.access.fd = os.open(os.devnull, os.O_WRONLY)
    return app


def one_request(app, interface: str, sc: dict, body: bytes):
    """A coroutine function answering the prepared request once, and a probe's (status, body)."""
    if interface == "rsgi":
        rsc = RsgiScope(sc)
        proto = RsgiProto(body)

        async def call():
            await app.__rsgi__(rsc, proto)
        return call, lambda: (proto.status, proto.answer)
    cap = Capture()
    receive = _receive(body)

    async def call_asgi():
        await app(sc, receive, cap)
    return call_asgi, lambda: (cap.status, cap.body)


def print_calls(stats: pstats.Stats, n: int) -> None:
    """Every function called at least once per request, with its calls per request."""
    rows = []
    for (file, line, name), (_, ncalls, *_rest) in stats.stats.items():
        if ncalls >= n:
            where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else "~"
            rows.append((ncalls / n, f"{where}({name})"))
    total = sum(c for c, _ in rows)
    for calls, where in sorted(rows, key=lambda r: (-r[0], r[1])):
        print(f"{calls:6.2f}  {where}")
    print(f"{total:6.2f}  calls per request in all")


def metrics_ab(m: Material, loop, n: int, rounds: int, interface: str = "rsgi") -> dict:
    """The open GET with metrics off and on, rounds interleaved (a busy moment hits both)."""
    apps = {"off": load_app(m.ws), "on": load_app(m.ws, metrics_dir=m.root)}
    sc, body = request_for("open", m, apps["off"], loop)
    calls = {id(app): one_request(app, interface, sc, body)[0] for app in apps.values()}

    async def many(app, count):
        call = calls[id(app)]
        for _ in range(count):
            await call()

    times: dict[str, list[float]] = {"off": [], "on": []}
    for app in apps.values():
        loop.run_until_complete(many(app, 1000))
    for _ in range(rounds):
        for name, app in apps.items():
            t0 = time.perf_counter()
            loop.run_until_complete(many(app, n))
            times[name].append((time.perf_counter() - t0) / n * 1e6)
    best = {name: min(t) for name, t in times.items()}
    out = {"open_metrics_off_us": round(best["off"], 2), "open_metrics_on_us": round(best["on"], 2),
           "on_over_off_throughput": round(best["off"] / best["on"], 3)}
    print(json.dumps(out))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profile", help="run this case under cProfile")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--sort", default="tottime")
    p.add_argument("--calls", action="store_true", help="with --profile: call counts per request")
    p.add_argument("--interface", choices=("rsgi", "asgi"), default="rsgi")
    p.add_argument("--access-log", action="store_true", help="the access log on (written to /dev/null)")
    p.add_argument("--metrics-ab", action="store_true",
                   help="only compare the open GET with metrics off and on (best of interleaved rounds)")
    args = p.parse_args()
    cases = args.cases.split(",") if not args.profile else [args.profile]

    tmp = Path(tempfile.mkdtemp(prefix="flowlet-prof-"))
    try:
        m = Material(tmp, set(cases) | {"open"})
        m.build()
        loop = asyncio.new_event_loop()
        if args.metrics_ab:
            metrics_ab(m, loop, args.n, max(args.rounds, 10), args.interface)
            return 0
        apps = {}

        def app_for(case):
            ws = m.ws_routes[int(case.split("-")[1])] if case.startswith("routes-") else m.ws
            if ws not in apps:
                apps[ws] = load_app(ws, args.access_log)
            return apps[ws]

        results = {}
        for case in cases:
            app = app_for(case)
            sc, body = request_for(case, m, app, loop)
            call, probe = one_request(app, args.interface, sc, body)
            loop.run_until_complete(call())
            status, answer = probe()
            if not 200 <= status < 300:
                print(f"{case}: answered {status} {answer[:200]!r}", file=sys.stderr)
                return 1

            async def many(n, call=call):
                for _ in range(n):
                    await call()

            loop.run_until_complete(many(1000))
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
                loop.run_until_complete(many(args.n))
                prof.disable()
                stats = pstats.Stats(prof)
                if args.calls:
                    print_calls(stats, args.n)
                    continue
                out = io.StringIO()
                stats.stream = out
                stats.sort_stats(args.sort).print_stats(args.top)
                print(out.getvalue())
                continue
            times = []
            for _ in range(args.rounds):
                c0 = time.process_time()
                loop.run_until_complete(many(args.n))
                times.append((time.process_time() - c0) / args.n * 1e6)
            results[case] = round(statistics.median(times), 2)
            print(f"{case:14} {results[case]:8.2f} us CPU/request (status {status})", flush=True)
        if results:
            print(json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
