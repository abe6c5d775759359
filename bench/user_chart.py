"""Draw docs/benchmarks.png, the chart of the user-facing benchmarks page, from a run's JSON.

    python bench/user_chart.py bench/evidence/benchmarks.json docs/benchmarks.png

Requests per second per case for Flowlet, Starlette and FastAPI with the usual middleware
(and the raw ASGI and RSGI apps where they answer the same request): medians of the run, nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from report import aggregate

CASES = ("open", "preflight", "cors", "basic", "jwt-hs256", "jwt-es256", "jwt-es256-fresh", "csrf",
         "routes-1000")
BARS = (("raw-rsgi", "raw RSGI app (no security)", "#616161"), ("raw", "raw ASGI app (no security)", "#9e9e9e"),
        ("flowlet", "Flowlet", "#2e7d32"), ("starlette", "Starlette + middleware", "#1565c0"),
        ("fastapi", "FastAPI + middleware", "#ef6c00"))


def draw(data: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(data["results"])
    cases = [c for c in CASES if ("flowlet", c) in agg]
    fig, ax = plt.subplots(figsize=(10, 0.9 * len(cases) + 1.6))
    bars = [b for b in BARS if any((b[0], c) in agg for c in cases)]
    height = 0.8 / len(bars)
    for k, (contender, label, color) in enumerate(bars):
        ys, values = [], []
        for i, case in enumerate(cases):
            rps = agg.get((contender, case), {}).get("rps")
            if rps is not None:
                ys.append(i + (k - (len(bars) - 1) / 2) * height)
                values.append(rps / 1000)
        ax.barh(ys, values, height=height, color=color, label=label)
        for y, v in zip(ys, values):
            ax.text(v, y, f" {v:.1f}k" if v >= 0.1 else f" {v * 1000:.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels([data["cases"][c] for c in cases], fontsize=8)
    ax.invert_yaxis()
    runs = data["environment"]["settings"]["repeat"]
    ax.set_xlabel(f"thousand requests per second, one worker, median of {runs} runs (more is better)")
    ax.set_title("Security settings per request: Flowlet and the usual Python glue, same server")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/user_chart.py RESULTS.json OUT.png")
    draw(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
