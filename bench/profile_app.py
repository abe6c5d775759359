#!/usr/bin/env python3
"""Flowlet's own cost per request, in process, without a server or a socket: calls the ASGI app
directly with a prepared scope for each case and reports microseconds per request. Less noisy
than wrk on a shared machine, and the place to profile from.

    python bench/profile_app.py [--cases open,preflight,...] [--n 20000] [--profile CASE [--top 25]]

``--profile CASE`` runs that case under cProfile and prints the hottest functions.
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
         "routes-1", "routes-1000", "ratelimit-local", "post", "validated")
PATHS = {"open": "/api/hello", "preflight": "/api/cors", "cors": "/api/cors", "basic": "/api/basic",
         "jwt-hs256": "/api/jwt/hs", "jwt-rs256": "/api/jwt/rs", "jwt-es256": "/api/jwt/es",
         "jwt-eddsa": "/api/jwt/ed", "csrf": "/api/notes", "routes-1": "/api/items0/42",
         "routes-1000": "/api/items999/42", "ratelimit-local": "/api/limited", "post": "/api/signup-raw",
         "validated": "/api/signup"}
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
            self.body += message.get("body", b"")


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
    if case in ("post", "validated"):
        body = json.dumps(m.signup_body).encode()
        return scope("POST", path, {"Content-Type": "application/json", "Content-Length": str(len(body))}), body
    return scope("GET", path, {}), body


def _receive(body: bytes):
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive():
        return message
    return receive


def load_app(ws: Path, metrics_dir: Path | None = None):
    from flowlet.server.app import FlowletApp
    from flowlet.server.metrics import WorkerMetrics
    from flowlet.workspace.loader import load_workspace
    loaded = load_workspace(ws, serving=True)
    metrics = WorkerMetrics(loaded, metrics_dir) if metrics_dir is not None else None
    return FlowletApp(loaded, access_log=False, metrics=metrics)


def metrics_ab(m: Material, loop, n: int, rounds: int) -> dict:
    """The open GET with metrics off and on, rounds interleaved (a busy moment hits both)."""
    apps = {"off": load_app(m.ws), "on": load_app(m.ws, m.root)}
    sc, body = request_for("open", m, apps["off"], loop)
    receive = _receive(body)

    async def many(app, count):
        for _ in range(count):
            await app(sc, receive, _noop_send)

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
            metrics_ab(m, loop, args.n, max(args.rounds, 10))
            return 0
        apps = {}

        def app_for(case):
            ws = m.ws_routes[int(case.split("-")[1])] if case.startswith("routes-") else m.ws
            if ws not in apps:
                apps[ws] = load_app(ws)
            return apps[ws]

        results = {}
        for case in cases:
            app = app_for(case)
            sc, body = request_for(case, m, app, loop)
            cap = Capture()
            loop.run_until_complete(app(sc, _receive(body), cap))
            if not 200 <= cap.status < 300:
                print(f"{case}: answered {cap.status} {cap.body[:200]!r}", file=sys.stderr)
                return 1
            receive = _receive(body)

            async def many(n, app=app, sc=sc, receive=receive):
                for _ in range(n):
                    await app(sc, receive, _noop_send)

            loop.run_until_complete(many(1000))
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
                loop.run_until_complete(many(args.n))
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
                print(out.getvalue())
                continue
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                loop.run_until_complete(many(args.n))
                times.append((time.perf_counter() - t0) / args.n * 1e6)
            results[case] = round(statistics.median(times), 2)
            print(f"{case:14} {results[case]:8.2f} us/request (status {cap.status})", flush=True)
        if results:
            print(json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
