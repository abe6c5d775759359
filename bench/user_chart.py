"""Draw docs/benchmarks.png, the chart of the user-facing benchmarks page, from a run's JSON.

    python bench/user_chart.py bench/evidence/benchmarks.json docs/benchmarks.png

Requests per second per case for Flowlet, Starlette and FastAPI with the usual middleware
(and the raw ASGI app where it answers the same request): medians of the run, nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from report import aggregate

CASES = ("open", "preflight", "cors", "basic", "jwt-hs256", "jwt-es256", "jwt-es256-fresh", "csrf",
         "routes-1000")
BARS = (("raw", "raw ASGI app (no security)", "#9e9e9e"), ("flowlet", "Flowlet", "#2e7d32"),
        ("starlette", "Starlette + middleware", "#1565c0"), ("fastapi", "FastAPI + middleware", "#ef6c00"))


def draw(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(data["results"])
    cases = [c for c in CASES if ("flowlet", c) in agg]
    fig, ax = plt.subplots(figsize=(10, 0.9 * len(cases) + 1.6))
    height = 0.2
    for k, (contender, label, color) in enumerate(BARS):
        ys, values = [], []
        for i, case in enumerate(cases):
            rps = agg.get((contender, case), {}).get("rps")
            if rps is not None:
                ys.append(i + (k - 1.5) * height)
                values.append(rps / 1000)
        ax.barh(ys, values, height=height, color=color, label=label)
        for y, v in zip(ys, values):
            ax.text(v, y, f" {v:.1f}k" if v >= 0.1 else f" {v * 1000:.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels([data["cases"][c] for c in cases], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("thousand requests per second, one worker, median of 3 runs (more is better)")
    ax.set_title("Security settings per request: Flowlet and the usual Python glue, same server")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/user_chart.py RESULTS.json OUT.png")
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
