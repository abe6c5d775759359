"""The benchmark harness runs end to end (bench/run.py --quick) and writes its table.

No timing is asserted: this checks the machinery (workspace set-up through the real CLI,
starting contenders on granian, wrk, parsing, the report), not the numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    assert "<!-- bench:begin -->" in text and "<!-- bench:end -->" in text
    assert "| case | contender | req/s |" in text
    assert "| open GET | raw ASGI app |" in text
    assert "| open GET | Flowlet (no access log) |" in text
    assert "| CORS simple GET, allowed origin | Flowlet (no access log) |" in text
    assert "open GET: Flowlet / raw ASGI" in text          # a target row, met or not

    data = json.loads(out.with_suffix(".json").read_text())
    cells = {(r["contender"], r["case"]) for r in data["results"]}
    assert cells == {("raw", "open"), ("flowlet", "open"), ("flowlet", "cors")}
    for r in data["results"]:
        assert "error" not in r, r
        assert r["requests"] > 0 and r["non_2xx"] == 0
        assert r["memory"]["hwm_max_kb"] > 0

    # A second run keeps hand-written text around the generated block.
    out.write_text("# Notes\n\nkept\n\n" + text[text.index("<!-- bench:begin -->"):] + "\n\nalso kept\n")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--contenders", "flowlet",
                           "--cases", "open", "--out", str(out)], capture_output=True, text=True, timeout=110,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = out.read_text()
    assert again.startswith("# Notes\n\nkept\n") and again.rstrip().endswith("also kept")
    assert again.count("<!-- bench:begin -->") == 1
