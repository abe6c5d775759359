#!/usr/bin/env python3
"""The cost of a first-seen JWT before and after the verification cache reaches its bound
(10,000 entries): eviction must stay O(1) per insert (docs/benchmarks.md, finding 1).

    python bench/experiments/cache_bound.py
"""

import asyncio
import pathlib
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from jwt_first_seen import scope_for, tokens_for  # noqa: E402
from workspaces import Material  # noqa: E402

from flowlet.http import Request  # noqa: E402
from flowlet.secrets import open_store  # noqa: E402
from flowlet.secrets.view import SecretsView  # noqa: E402
import flowlet.security.jwt as J  # noqa: E402
from flowlet.security.runtime import AuthRuntime  # noqa: E402


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    m = Material(tmp / "m", {"jwt-hs256"})
    m.build()
    view = SecretsView(open_store(m.ws))
    loop = asyncio.new_event_loop()
    for label in ("ExpiringCache",):
        policy = J.JwtPolicy("hs", realm="b", secrets=view, runtime=AuthRuntime())
        reqs = [Request(scope_for(t)) for t in tokens_for(m.glue, "hs", "HS256", 14000)]

        async def run(rs):
            for r in rs:
                await policy.authenticate(r)

        print(f"--- {label}")
        for a, b in ((0, 2000), (2000, 9000), (10000, 12000), (12000, 14000)):
            t0 = time.perf_counter()
            loop.run_until_complete(run(reqs[a:b]))
            dt = time.perf_counter() - t0
            print(f"tokens {a}..{b}: {dt / (b - a) * 1e6:.1f} us each (cache size {len(policy._v.cache)})")


if __name__ == "__main__":
    main()
