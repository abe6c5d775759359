"""The supervisor's side of the metrics: read every worker's snapshot, sum, write Prometheus text.

Counters add up over every snapshot in the run directory, including those of workers that
have stopped (a reload or a crash must not make a counter go down). Gauges (argon2 queue,
secrets age, store up) come only from workers that are alive and serving.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from flowlet.server.metrics import BUCKETS

NS = "flowlet"


@dataclass
class Totals:
    """The sum of the snapshots: every counter keyed by its label values."""
    requests: dict[tuple, int] = field(default_factory=dict)
    latency: dict[tuple, tuple[list[int], float]] = field(default_factory=dict)
    refusals: dict[tuple, int] = field(default_factory=dict)
    preflights: dict[tuple, int] = field(default_factory=dict)
    verify_cache: dict[tuple, int] = field(default_factory=dict)
    jwks: dict[tuple, int] = field(default_factory=dict)
    store_errors: int = 0
    live: list[dict] = field(default_factory=list)      # snapshots of live, serving workers


def read_snapshots(run_dir: Path) -> list[dict]:
    out = []
    for path in sorted(run_dir.glob("worker-*.json")):
        try:
            out.append(json.loads(path.read_bytes()))
        except (OSError, ValueError):      # removed or replaced while listing: the next scrape has it
            continue
    return out


def _add(table: dict, key: tuple, n: int) -> None:
    table[key] = table.get(key, 0) + n


def total(snapshots: Iterable[dict], alive: Callable[[int], bool]) -> Totals:
    t = Totals()
    for snap in snapshots:
        for route, method, status, n in snap.get("requests", ()):
            _add(t.requests, (route, method, str(status)), n)
        for route, method, buckets, seconds in snap.get("latency", ()):
            have, s = t.latency.get((route, method), ([0] * len(buckets), 0.0))
            t.latency[(route, method)] = ([a + b for a, b in zip(have, buckets)], s + seconds)
        for stage, reason, n in snap.get("refusals", ()):
            _add(t.refusals, (stage, reason), n)
        for path, result, n in snap.get("preflights", ()):
            _add(t.preflights, (path, result), n)
        for kind, name, hits, misses in snap.get("verify_cache", ()):
            _add(t.verify_cache, (kind, name, "hit"), hits)
            _add(t.verify_cache, (kind, name, "miss"), misses)
        for name, outcome, n in snap.get("jwks_fetches", ()):
            _add(t.jwks, (name, outcome), n)
        t.store_errors += snap.get("secrets", {}).get("store_errors", 0)
        if snap.get("state") == "serving" and alive(snap.get("pid", 0)):
            t.live.append(snap)
    return t


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


class Collector:
    """A prometheus_client collector over a run directory (used for the text format only)."""

    def __init__(self, run_dir: Path, version: str, alive: Callable[[int], bool] = pid_alive):
        self.run_dir = run_dir
        self.version = version
        self.alive = alive

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        t = total(read_snapshots(self.run_dir), self.alive)
        info = GaugeMetricFamily(f"{NS}_build_info", "Flowlet version and Python version; always 1",
                                 labels=["version", "python"])
        info.add_metric([self.version, platform.python_version()], 1)
        yield info
        yield _counter(CounterMetricFamily, "requests", "Answered requests by route template, method and status",
                       ["route", "method", "status"], t.requests)
        yield _histogram(t.latency)
        yield _counter(CounterMetricFamily, "refusals", "Requests refused by a check, by stage and reason",
                       ["stage", "reason"], t.refusals)
        yield _counter(CounterMetricFamily, "cors_preflights", "CORS preflights answered, allowed or refused",
                       ["route", "result"], t.preflights)
        yield _counter(CounterMetricFamily, "verify_cache", "Verified-credential cache lookups by result",
                       ["kind", "secret", "result"], t.verify_cache)
        yield _counter(CounterMetricFamily, "jwks_fetches", "JWKS key-set fetches by outcome",
                       ["secret", "outcome"], t.jwks)
        errors = CounterMetricFamily(f"{NS}_secrets_store_errors", "Failed reloads of the secrets from the store")
        errors.add_metric([], t.store_errors)
        yield errors
        yield from _gauges(GaugeMetricFamily, t.live)


def _counter(cls: type, name: str, doc: str, labels: list[str], values: dict[tuple, int]) -> object:
    family = cls(f"{NS}_{name}", doc, labels=labels)
    for key, n in sorted(values.items()):
        family.add_metric(list(key), n)
    return family


def _histogram(latency: dict[tuple, tuple[list[int], float]]) -> object:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(f"{NS}_request_duration_seconds", "Time to answer, by route template and method",
                                   labels=["route", "method"])
    bounds = [str(b) for b in BUCKETS] + ["+Inf"]
    for (route, method), (buckets, seconds) in sorted(latency.items()):
        cumulative, running = [], 0
        for bound, n in zip(bounds, buckets):
            running += n
            cumulative.append((bound, running))
        family.add_metric([route, method], cumulative, seconds)
    return family


def _gauges(cls: type, live: list[dict]) -> Iterator[object]:
    workers = cls(f"{NS}_workers", "Worker processes serving now")
    workers.add_metric([], len(live))
    yield workers
    queue = cls(f"{NS}_argon2_queue_depth", "Password checks waiting or running, all workers")
    queue.add_metric([], sum(s.get("argon2_queue", 0) for s in live))
    yield queue
    states = [s["secrets"] for s in live if s.get("secrets")]
    if states:
        age = cls(f"{NS}_secrets_age_seconds", "Seconds since the oldest worker's secrets were confirmed current")
        age.add_metric([], max(s.get("age_s", 0.0) for s in states))
        yield age
        up = cls(f"{NS}_secrets_store_up", "1 when every worker reaches the secrets store, else 0")
        up.add_metric([], 1 if all(s.get("store_up", True) for s in states) else 0)
        yield up


def render(collector: Collector) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
