"""The admin listener's route table, readiness checks and the summing of worker snapshots."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowlet.server.admin import DEGRADED, DOWN, AdminListener, AdminResponse, AdminRoutes
from flowlet.server.exposition import Collector, render, total


def ok(text: str):
    return lambda req: AdminResponse(200, text.encode(), "text/plain")


def test_exact_routes_win_over_mounts_and_the_longest_mount_wins():
    routes = AdminRoutes()
    routes.add("GET", "/console/health", ok("exact"))
    routes.mount("/console/", ok("console"))
    routes.mount("/console/static/", ok("static"))
    assert routes.find("GET", "/console/health")(None).body == b"exact"
    assert routes.find("POST", "/console/health")(None).body == b"console"
    assert routes.find("GET", "/console/static/a.css")(None).body == b"static"
    assert routes.find("GET", "/other") is None
    assert routes.find("HEAD", "/console/health")(None).body == b"exact"


class Serving:
    def __init__(self, workers):
        self.workers = workers

    def status(self) -> dict:
        return {"phase": "serving", "workers": self.workers}


def snapshot(pid: int, state: str = "serving", n: int = 1, store_up: bool = True) -> dict:
    return {"pid": pid, "state": state, "requests": [["/api/a", "GET", 200, n]],
            "latency": [["/api/a", "GET", [n] + [0] * 14, 0.001 * n]], "refusals": [["auth", "missing", n]],
            "preflights": [], "verify_cache": [["basic", "team", n, 1]], "jwks_fetches": [],
            "argon2_queue": 2, "secrets": {"age_s": 0.5, "store_up": store_up, "store_errors": 0 if store_up else 3}}


def test_counters_sum_every_snapshot_and_gauges_only_live_workers():
    snaps = [snapshot(1, n=2), snapshot(2, n=3), snapshot(3, state="stopped", n=5)]
    t = total(snaps, alive=lambda pid: pid in (1, 2))
    assert t.requests[("/api/a", "GET", "200")] == 10          # a stopped worker's counts stay
    assert t.refusals[("auth", "missing")] == 10
    assert t.latency[("/api/a", "GET")][0][0] == 10
    assert t.verify_cache[("basic", "team", "hit")] == 10 and t.verify_cache[("basic", "team", "miss")] == 3
    assert [s["pid"] for s in t.live] == [1, 2]


def write(run_dir, snap):
    (run_dir / f"worker-{snap['pid']}.json").write_text(json.dumps(snap))


def test_text_format_parses_with_the_prometheus_parser(tmp_path):
    write(tmp_path, snapshot(11, n=4))
    write(tmp_path, snapshot(12, n=1))
    text = render(Collector(tmp_path, "9.9", alive=lambda pid: True)).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("flowlet_requests_total", (("method", "GET"), ("route", "/api/a"), ("status", "200")))] == 5
    assert samples[("flowlet_request_duration_seconds_bucket", (("le", "+Inf"), ("method", "GET"),
                                                                ("route", "/api/a")))] == 5
    assert samples[("flowlet_argon2_queue_depth", ())] == 4
    assert samples[("flowlet_workers", ())] == 2


def test_readyz_degraded_store_is_200_and_a_down_check_is_503(tmp_path):
    admin = AdminListener("127.0.0.1", 0, run_dir=tmp_path)
    write(tmp_path, snapshot(21, store_up=False))
    admin.start(Serving([21]))
    try:
        url = f"http://127.0.0.1:{admin.port}/readyz"
        resp = httpx.get(url)
        assert resp.status_code == 200
        body = resp.json()
        assert body["degraded"] is True and body["checks"]["secrets"]["state"] == DEGRADED
        admin.add_check("redis", lambda: (DOWN, {"error": "unreachable"}))
        resp = httpx.get(url)
        assert resp.status_code == 503 and resp.json()["checks"]["redis"] == {"state": DOWN, "error": "unreachable"}
        admin.server = Serving([])                 # no worker has loaded the workspace
        admin.checks.pop("redis")
        assert httpx.get(url).json()["checks"]["workspace"] == {"state": DOWN, "workers": 0}
        assert httpx.post(f"http://127.0.0.1:{admin.port}/healthz").status_code == 405
    finally:
        admin.stop()
    assert not tmp_path.exists()                   # the run directory goes with the listener


def test_listens_on_ipv6_loopback(tmp_path):
    admin = AdminListener("::1", 0, run_dir=tmp_path)
    try:
        admin.start(Serving([]))
    except OSError:
        admin.stop()
        pytest.skip("no IPv6 loopback on this machine")
    try:
        assert httpx.get(f"http://[::1]:{admin.port}/healthz").json() == {"status": "ok"}
    finally:
        admin.stop()
