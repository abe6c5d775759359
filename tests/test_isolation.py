"""`isolation: process`: function steps in worker processes, capped in memory, killed on timeout."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from conftest import assert_json_error, flowlet, make_workspace, run_server

FILES = {
    "flowlet.yaml": "name: iso\nlimits: {timeout_s: 2}\n",
    "functions/work.py": """
        import os, resource, time

        def work(action):
            if action == "slow":
                time.sleep(60)
            if action == "hog":
                return len(bytearray(400 * 1024 * 1024))
            if action == "notjson":
                return {1, 2}
            if action == "raise":
                raise KeyError("nope")
            if action == "refuse":
                from flowlet import Reject
                raise Reject(409, "taken on purpose", {"id": 7})
            return {"pid": os.getpid(), "cap": resource.getrlimit(resource.RLIMIT_AS)[0]}

        def echo(value):
            return {"value": value, "pid": os.getpid()}

        async def aecho(value):
            return {"value": value, "pid": os.getpid()}
    """,
    "flows/work.yaml": """
        endpoint: {method: GET, path: "/work/{action}"}
        steps:
          - {id: r, function: "functions.work:work", input: {action: "=params.action"},
             isolation: process, memory_mb: 64}
        respond: {body: "=r"}
    """,
    "flows/echo.yaml": """
        endpoint: {method: POST, path: /echo}
        steps:
          - {id: r, function: "functions.work:echo", input: {value: "=body"}, isolation: process}
        respond: {body: "=r"}
    """,
    "flows/aecho.yaml": """
        endpoint: {method: POST, path: /aecho}
        steps:
          - {id: r, function: "functions.work:aecho", input: {value: "=body"}, isolation: process}
        respond: {body: "=r"}
    """,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("iso"), FILES)
    with run_server(ws, "--no-access-log") as srv:
        yield srv


def gone(pid: int) -> bool:
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.05)
    return False


def worker_pid(server) -> int:
    r = httpx.get(server.url + "/api/work/pid", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["pid"]


VALUE = {"text": "h\u00e9llo \u2603", "n": [1, -2, 3.5, 9007199254740993], "nested": {"a": [None, True, False, {}]}}


@pytest.mark.parametrize("path", ["/api/echo", "/api/aecho"])
def test_arguments_and_result_round_trip_as_json(server, path):
    r = httpx.post(server.url + path, json=VALUE, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["value"] == VALUE
    assert r.json()["pid"] != server.proc.pid


def test_the_worker_runs_under_its_memory_cap_and_is_reused(server):
    r = httpx.get(server.url + "/api/work/pid", timeout=30)
    assert r.json()["cap"] == 64 * 1024 * 1024
    assert worker_pid(server) == worker_pid(server)


def test_a_call_past_the_timeout_is_504_and_its_worker_is_replaced(server):
    before = worker_pid(server)
    assert_json_error(httpx.get(server.url + "/api/work/slow", timeout=30), 504)
    assert gone(before)
    after = worker_pid(server)
    assert after != before


def test_a_call_past_the_memory_cap_is_500_and_its_worker_is_replaced(server):
    before = worker_pid(server)
    assert_json_error(httpx.get(server.url + "/api/work/hog", timeout=30), 500, "internal error")
    assert gone(before)
    assert worker_pid(server) != before
    assert "memory_mb" in server.stderr


def test_a_reject_the_function_raises_crosses_as_its_answer(server):
    before = worker_pid(server)
    r = httpx.get(server.url + "/api/work/refuse", timeout=30)
    assert r.status_code == 409 and r.json() == {"error": "taken on purpose", "details": {"id": 7}}
    assert worker_pid(server) == before


@pytest.mark.parametrize("action", ["raise", "notjson"])
def test_a_failing_call_is_500_and_the_worker_stays(server, action):
    before = worker_pid(server)
    assert_json_error(httpx.get(server.url + f"/api/work/{action}", timeout=30), 500, "internal error")
    assert worker_pid(server) == before


@pytest.mark.parametrize("step, message", [
    ('{function: "functions.work:echo", memory_mb: 128}', "'memory_mb' needs 'isolation: process'"),
    ('{function: "functions.work:echo", isolation: fork}', "'isolation' must be thread or process"),
    ('{function: "functions.work:echo", isolation: process, memory_mb: 8}', "memory_mb"),
])
def test_isolation_settings_are_checked_at_load(tmp_path, step, message):
    ws = make_workspace(tmp_path, {"functions/work.py": "def echo(value=None):\n    return value\n",
                                   "flows/a.yaml": f"endpoint: {{method: GET, path: /a}}\nsteps: [{step}]\n"})
    result = flowlet("check", str(ws))
    assert result.returncode == 1
    assert "flows/a.yaml:2:" in result.stderr and message in result.stderr


def test_worker_processes_die_with_the_server_even_on_sigkill(tmp_path):
    ws = make_workspace(tmp_path, FILES)
    with run_server(ws, "--no-access-log") as srv:
        pid = worker_pid(srv)
        srv.proc.kill()                  # the `flowlet serve` process, as the OOM killer would
        srv.proc.wait(10)
        assert gone(pid)


def test_a_worker_killed_from_outside_is_replaced_without_a_failed_call(server):
    import signal
    before = worker_pid(server)
    os.kill(before, signal.SIGKILL)
    for _ in range(100):                 # dead (a zombie until the server looks at it)
        if open(f"/proc/{before}/stat").read().split(") ", 1)[1].startswith("Z"):
            break
        time.sleep(0.05)
    assert worker_pid(server) != before
    assert gone(before)                  # and reaped, not left a zombie
