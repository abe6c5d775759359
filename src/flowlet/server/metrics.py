"""A worker's metrics: plain counters on the request path, a snapshot file for the supervisor.

Per request the worker does a few dict and list increments on objects prepared when the
workspace loaded (one ``RouteStats`` per route), with no lock: each worker has one event
loop, and only that loop's thread touches the counters. Once a second, and when the worker
stops, ``publish`` writes every counter to ``<run dir>/worker-<pid>.json`` (a new file
renamed over the old one, so a reader never sees half of it). The admin listener in the
supervisor sums the files of all workers at scrape time (``flowlet.server.admin``).

Label values come only from the workspace (path templates, methods of routes) and from fixed
words (refusal stages and reasons, a fixed list of methods), never from the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from bisect import bisect_left
from pathlib import Path

from flowlet.errors import HTTPError
from flowlet.http import Request
from flowlet.workspace.loader import PathEntry, Workspace

log = logging.getLogger("flowlet.metrics")

# Upper bounds (seconds) of the latency histogram's buckets; the last bucket is +Inf.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = ""                    # the route (and method) label of a request that matched no route
PUBLISH_INTERVAL_S = 1.0
RUN_DIR_ENV = "FLOWLET_METRICS_DIR"


class RouteStats:
    """Counters of one route and method: answers by status (a list indexed by the status code,
    the cheapest increment there is), latency buckets and their sum."""

    __slots__ = ("route", "method", "statuses", "buckets", "seconds")

    def __init__(self, route: str, method: str):
        self.route = route
        self.method = method
        self.statuses = [0] * 600
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0


class WorkerMetrics:
    """The counters of one worker process for one workspace."""

    def __init__(self, ws: Workspace, run_dir: Path):
        self.ws = ws
        self.path = run_dir / f"worker-{os.getpid()}.json"
        self.started = time.time()
        # id(route) -> stats (routes live as long as the workspace); id(path entry) -> its OPTIONS
        self.routes: dict[int, RouteStats] = {}
        for entry in entries(ws):
            self.routes[id(entry)] = RouteStats(entry.full_path, "OPTIONS")
            for method, route in entry.routes.items():
                self.routes[id(route)] = RouteStats(entry.full_path, method)
        self.routes[id(None)] = RouteStats(UNMATCHED, "")     # matched no route: 404, 405
        self.refusals: dict[tuple[str, str], int] = {}
        self.preflights: dict[tuple[str, str], int] = {}

    # ---- the request path ----------------------------------------------------------------------

    def observe(self, req: Request, status: int, seconds: float) -> None:
        stats = self.routes[id(req.route)]
        stats.statuses[status] += 1
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.seconds += seconds
        if req.refusal is not None:
            self.refused(req.refusal)

    def refused(self, exc: HTTPError) -> None:
        if exc.stage is not None:
            key = (exc.stage, exc.reason or "")
            self.refusals[key] = self.refusals.get(key, 0) + 1

    def preflight(self, entry: PathEntry, allowed: bool) -> None:
        key = (entry.full_path, "allowed" if allowed else "refused")
        self.preflights[key] = self.preflights.get(key, 0) + 1

    # ---- publishing ------------------------------------------------------------------------------

    def snapshot(self, state: str = "serving") -> dict:
        """Every counter as plain JSON data (taken on the event loop's thread)."""
        stats = [s for s in self.routes.values() if any(s.buckets)]
        runtime = self.ws.auth_runtime
        caches, jwks = [], []
        for (kind, name), verifier in runtime.verifiers():
            cache = getattr(verifier, "cache", None)
            if cache is not None:
                caches.append([kind, name, cache.hits, cache.misses])
            fetches = getattr(verifier, "fetches", None)
            if fetches is not None and getattr(verifier, "url", None) is not None:
                jwks.extend([name, outcome, n] for outcome, n in fetches.items())
        return {
            "pid": os.getpid(), "state": state, "started": self.started, "written": time.time(),
            "requests": [[s.route, s.method, code, n] for s in stats for code, n in enumerate(s.statuses) if n],
            "latency": [[s.route, s.method, list(s.buckets), s.seconds] for s in stats],
            "refusals": [[stage, reason, n] for (stage, reason), n in self.refusals.items()],
            "preflights": [[path, result, n] for (path, result), n in self.preflights.items()],
            "verify_cache": caches,
            "jwks_fetches": jwks,
            "argon2_queue": runtime.hashing.queued,
            "secrets": _secrets_state(self.ws),
        }

    def publish(self, state: str = "serving") -> None:
        data = json.dumps(self.snapshot(state), separators=(",", ":")).encode()
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except OSError as exc:          # a full or vanished run directory: metrics lag, serving goes on
            log.warning("cannot publish metrics to %s: %s", self.path, exc)

    async def run(self, interval: float = PUBLISH_INTERVAL_S) -> None:
        """Publish now (the supervisor then knows this worker has loaded) and every interval."""
        while True:
            self.publish()
            await asyncio.sleep(interval)


def entries(ws: Workspace) -> list[PathEntry]:
    """Every path of the workspace, the built-in CSRF token path included."""
    return [*ws.paths, *([ws.csrf_entry] if ws.csrf_entry is not None else [])]


def _secrets_state(ws: Workspace) -> dict:
    view = ws.secrets
    if view is None:
        return {}
    state = view.health()
    return {"age_s": state["age_s"], "store_up": state["store"] != "down", "store_errors": view.store_errors}


def from_env(ws: Workspace) -> WorkerMetrics | None:
    """Metrics for this worker when the server runs an admin listener (it names the run dir)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    return WorkerMetrics(ws, Path(run_dir)) if run_dir else None


def refusal(stage: str, reason: str, status: int = 403) -> HTTPError:
    """A refusal noted on a request that no stage raised (a refused preflight)."""
    return HTTPError(status, "", stage=stage, reason=reason)
