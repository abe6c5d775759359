#!/usr/bin/env python3
"""Cost per call of a function step by isolation: async (on the event loop), thread (the
default: the endpoint's own thread pool) and process (a worker process under RLIMIT_AS).

    python bench/isolation.py [--n 2000] [--rounds 3]

Builds a one-flow workspace in a temporary folder and calls each step's ``run`` directly (no
HTTP, no server), so the number is the step's own overhead: argument evaluation, the hand-off
and, for processes, JSON both ways over a pipe. Prints JSON: microseconds per call (median of
the rounds) and the ratios to the thread default. Also the one-off cost of starting a worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

FILES = {
    "flowlet.yaml": "name: bench\n",
    "functions/f.py": """
        def add(a, b):
            return {"sum": a + b}

        async def aadd(a, b):
            return {"sum": a + b}
    """,
    "flows/f.yaml": """
        endpoint: {method: POST, path: /f}
        steps:
          - {function: "functions.f:aadd", input: {a: 1, b: "=body.b"}}
          - {function: "functions.f:add", input: {a: 1, b: "=body.b"}}
          - {function: "functions.f:add", input: {a: 1, b: "=body.b"}, isolation: process}
    """,
}


async def per_call_us(step, n: int) -> float:
    env = {"body": {"b": 2}}
    start = time.perf_counter()
    for _ in range(n):
        await step.run(env, None)
    return (time.perf_counter() - start) / n * 1e6


async def main(n: int, rounds: int) -> dict:
    from flowlet.workspace.loader import load_workspace

    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in FILES.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        ws = load_workspace(tmp, open_secrets=False)
        flow = ws.table.exact("/api/f").routes["POST"].handler
        steps = dict(zip(("async", "thread", "process"), flow.steps))
        started = time.perf_counter()
        await steps["process"].run({"body": {"b": 2}}, None)           # the worker starts here
        startup_ms = (time.perf_counter() - started) * 1000
        results = {name: [] for name in steps}
        for _ in range(rounds):
            for name, step in steps.items():
                await per_call_us(step, n // 10)                       # warm-up
                results[name].append(await per_call_us(step, n))
        steps["process"].pool.close()
    us = {name: round(statistics.median(v), 1) for name, v in results.items()}
    return {"us_per_call": us, "process_over_thread": round(us["process"] / us["thread"], 2),
            "thread_over_async": round(us["thread"] / us["async"], 2),
            "worker_startup_ms": round(startup_ms, 1), "n": n, "rounds": rounds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.n, args.rounds)), indent=2))
