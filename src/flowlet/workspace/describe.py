"""`flowlet routes`: every endpoint with its security settings, and the merged CORS answer per path."""

from __future__ import annotations

from flowlet.workspace.loader import Workspace


def describe_routes(ws: Workspace) -> dict:
    paths = []
    for entry in sorted(ws.paths, key=lambda e: e.full_path):
        endpoints = []
        for method, r in entry.routes.items():
            endpoints.append({
                "method": method,
                "path": entry.full_path,
                "file": f"{r.config.file}:{r.config.line}",
                "auth": r.config.auth.describe() if r.config.auth is not None else None,
                "csrf": r.config.csrf,
                "cors": r.cors is not None,
                "rate_limit": r.rate_limit.describe() if r.rate_limit is not None else None,
                "description": r.config.description,
                "input": sorted(r.config.input.schemas) if r.config.input is not None else [],
                "output": sorted(r.config.output.schemas) if r.config.output is not None else [],
            })
        paths.append({"path": entry.full_path, "allow": entry.allow.decode(), "endpoints": endpoints,
                      "cors": entry.cors.describe() if entry.cors is not None else None})
    builtin = []
    if ws.csrf_entry is not None:
        e = ws.csrf_entry
        builtin.append({"path": e.full_path, "method": "GET", "what": e.routes["GET"].config.description,
                        "cors": e.cors.describe() if e.cors is not None else None})
    if ws.openapi_entry is not None:
        builtin.append({"path": ws.openapi_entry.full_path, "method": "GET", "what": "OpenAPI document",
                        "cors": None})
    return {"workspace": ws.settings.name, "api_prefix": ws.settings.api_prefix, "paths": paths,
            "builtin": builtin}


def _fmt_auth(a: dict | None) -> str:
    if a is None:
        return "open"
    text = f"{a['type']}:{a['secret']}"
    if "scope" in a:
        import json
        scope = a["scope"] if isinstance(a["scope"], str) else json.dumps(a["scope"], separators=(",", ":"))
        text += f" scope={scope}"
    if "scope_expr" in a:
        text += f" scope_expr={a['scope_expr']}"
    if "token_cookie" in a:
        text += f" cookie={a['token_cookie']}"
    return text


def _fmt_cors(c: dict | None) -> str:
    if c is None:
        return "none"
    parts = []
    if c.get("allow") == "all":
        parts.append("origins=*")
    else:
        parts.append("origins=" + ",".join(c.get("domains", [])))
    parts.append("methods=" + ",".join(c.get("methods", [])))
    if c.get("headers"):
        parts.append("headers=" + ",".join(c["headers"]))
    if c.get("credentials"):
        parts.append("credentials")
    if c.get("max_age") is not None:
        parts.append(f"max-age={c['max_age']}")
    return " ".join(parts)


def format_routes(data: dict) -> str:
    rows = [("METHOD", "PATH", "AUTH", "CSRF", "CORS", "FILE")]
    for p in data["paths"]:
        for e in p["endpoints"]:
            rows.append((e["method"], e["path"], _fmt_auth(e["auth"]), "yes" if e["csrf"] else "-",
                         "yes" if e["cors"] else "-", e["file"]))
    for b in data["builtin"]:
        rows.append((b["method"], b["path"], "built-in", "-", "yes" if b["cors"] else "-", b["what"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    lines.append("CORS answer per path (all methods on a path share it):")
    any_cors = False
    for p in data["paths"] + [dict(path=b["path"], cors=b["cors"]) for b in data["builtin"]]:
        if p["cors"] is not None:
            any_cors = True
            lines.append(f"  {p['path']}: {_fmt_cors(p['cors'])}")
    if not any_cors:
        lines.append("  (no path answers CORS)")
    return "\n".join(lines)
