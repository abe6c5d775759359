"""``python -m flowlet.console.inspect DIR``: load a workspace as `flowlet check` does and print
one JSON document: its errors and warnings (file, line, message) and, when it loads, what
`flowlet routes --json` shows.

The console runs it in a child process, so the process serving the console never imports a
workspace's functions (the same reason `flowlet serve` checks a workspace in a child).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flowlet.errors import ConfigError, ConfigErrors


def _problem(err: ConfigError) -> dict:
    return {"file": err.file, "line": err.line, "message": err.message}


def inspect(root: Path) -> dict:
    from flowlet.workspace.describe import describe_routes
    from flowlet.workspace.loader import load_workspace

    try:
        ws = load_workspace(root)
    except ConfigErrors as exc:
        return {"ok": False, "errors": [_problem(e) for e in exc.errors], "warnings": [], "routes": None}
    try:
        return {"ok": True, "errors": [], "warnings": [_problem(w) for w in ws.warnings],
                "routes": describe_routes(ws)}
    finally:
        ws.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m flowlet.console.inspect DIR", file=sys.stderr)
        return 2
    try:
        result = inspect(Path(argv[0]))
    except Exception as exc:          # a crash is reported as one error, never a traceback
        result = {"ok": False, "warnings": [], "routes": None,
                  "errors": [{"file": None, "line": None, "message": f"the workspace could not be "
                                                                     f"checked ({type(exc).__name__})"}]}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
