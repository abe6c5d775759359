"""The workspace's OpenAPI document: compiled routes described as operations, served when
``openapi: {path: ...}`` is set and printed by ``flowlet openapi``."""

from __future__ import annotations

import json

from flowlet.contracts.openapi import Operation, build_document
from flowlet.routing import PathPattern
from flowlet.workspace.loader import PathEntry, Route, Workspace


def operation(route: Route, ws: Workspace) -> Operation:
    s = ws.settings
    auth = route.auth_config if route.auth_config is not None and route.auth_config.uses_auth else None
    full = s.api_prefix + (route.pattern.text if route.pattern.text != "/" else "/")
    statuses = tuple(sorted({c.status.value for c in route.flow.cases if c.status.is_const}))
    return Operation(
        method=route.method, path=full, file=f"{route.file}:{route.line}",
        params=tuple((v, kind) for kind, v in route.pattern.segments if kind != "static"),
        description=route.description,
        auth_type=auth.type if auth else None, auth_secret=auth.secret if auth else None,
        scope=auth.scope if auth else None, scope_expr=auth.scope_expr if auth else None,
        csrf_header=s.csrf.header if route.csrf_required else None,
        csrf_cookie=s.csrf.cookie if route.csrf_required else None,
        cors=route.cors_config.describe() if route.cors_config is not None and route.cors_config.allow != "none"
        else None,
        input=route.contract, output=route.output, statuses=statuses)


def openapi_document(ws: Workspace) -> dict:
    csrf = any(r.csrf_required for r in ws.routes)
    return build_document(ws.settings.name, [operation(r, ws) for r in ws.routes], ws.schema_files,
                          csrf_path=f"{ws.settings.api_prefix}/csrf" if csrf else None)


def openapi_entry(ws: Workspace) -> PathEntry:
    """The built-in ``GET <api_prefix><openapi.path>``: the document, encoded once."""
    path = ws.settings.openapi_path
    entry = PathEntry(PathPattern(path, path, (("static", path.strip("/")),)), ws.settings.api_prefix + path)
    entry.builtin = json.dumps(openapi_document(ws), separators=(",", ":"), ensure_ascii=False).encode()
    entry.allow = b"GET, HEAD, OPTIONS"
    return entry
