"""One slow endpoint cannot starve the others: each endpoint has its own bounded share of threads."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from conftest import make_workspace, run_server
from flowlet.errors import HTTPError
from flowlet.flows.bulkhead import Bulkhead

FILES = {
    "flowlet.yaml": "name: bulkhead\nlimits: {timeout_s: 2, concurrency: 4}\n",
    "functions/work.py": """
        import time

        def slow():
            time.sleep(4)          # past the flow's timeout: the thread runs on after the 504
            return "late"

        def quick():
            return "done"
    """,
    "flows/slow.yaml": """
        endpoint: {method: GET, path: /slow}
        steps: [{function: "functions.work:slow"}]
    """,
    "flows/quick.yaml": """
        endpoint: {method: GET, path: /quick}
        steps: [{id: r, function: "functions.work:quick"}]
        respond: {body: "=r"}
    """,
}


def test_a_slow_endpoint_does_not_starve_another(tmp_path):
    ws = make_workspace(tmp_path, FILES)
    stop = threading.Event()
    slow_answers: list[httpx.Response] = []

    def hammer() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                slow_answers.append(client.get(srv.url + "/api/slow"))

    with run_server(ws, "--no-access-log") as srv:
        clients = [threading.Thread(target=hammer) for _ in range(12)]
        for c in clients:
            c.start()
        try:
            quick = []
            with httpx.Client(timeout=30) as client:
                for _ in range(20):
                    quick.append(client.get(srv.url + "/api/quick"))
                    time.sleep(0.2)
        finally:
            stop.set()
            for c in clients:
                c.join()
    assert [r.status_code for r in quick] == [200] * 20, [r.text for r in quick if r.status_code != 200]
    statuses = {r.status_code for r in slow_answers}
    assert statuses <= {503, 504} and 503 in statuses, statuses
    busy = next(r for r in slow_answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and set(busy.json()) == {"error"}


def test_a_slot_is_held_until_the_thread_ends_not_until_the_flow_stops_waiting():
    release = threading.Event()
    bulkhead = Bulkhead("t", 1)

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await bulkhead.call_in_thread(release.wait, {})
        with pytest.raises(HTTPError) as err:          # the thread still runs: no room
            await bulkhead.call_in_thread(lambda: 1, {})
        assert err.value.status == 503
        release.set()
        for _ in range(100):
            if bulkhead.busy == 0:
                break
            await asyncio.sleep(0.01)
        assert await bulkhead.call_in_thread(lambda: 1, {}) == 1

    asyncio.run(scenario())
