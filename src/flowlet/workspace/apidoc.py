"""The workspace's OpenAPI document: compiled routes described as operations, served when
``openapi: {path: ...}`` is set and printed by ``flowlet openapi``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowlet.contracts.openapi import Operation, build_document
from flowlet.contracts.schemas import SchemaFiles
from flowlet.workspace.routes import Route
from flowlet.workspace.settings import Settings

if TYPE_CHECKING:
    from flowlet.workspace.loader import Workspace


def operation(route: Route, settings: Settings) -> Operation:
    cfg = route.config
    auth = cfg.auth if cfg.auth is not None and cfg.auth.uses_auth else None
    cases = getattr(route.handler, "cases", ())
    statuses = tuple(sorted({c.status.value for c in cases if c.status.is_const}))
    return Operation(
        method=cfg.method, path=settings.api_prefix + cfg.pattern.text, file=f"{cfg.file}:{cfg.line}",
        params=tuple((name, kind) for kind, name in cfg.pattern.segments if kind != "static"),
        description=cfg.description,
        auth_type=auth.type if auth else None, auth_secret=auth.secret if auth else None,
        scope=auth.scope if auth else None, scope_expr=auth.scope_expr if auth else None,
        csrf_header=settings.csrf.header if cfg.csrf else None,
        csrf_cookie=settings.csrf.cookie if cfg.csrf else None,
        cors=cfg.cors.describe() if cfg.cors is not None and cfg.cors.allow != "none" else None,
        input=route.contract, output=route.output, statuses=statuses)


def build_openapi(settings: Settings, routes: list[Route], schema_files: SchemaFiles) -> dict:
    csrf = any(r.config.csrf for r in routes)
    return build_document(settings.name, [operation(r, settings) for r in routes], schema_files,
                          csrf_path=f"{settings.api_prefix}/csrf" if csrf else None)


def openapi_document(ws: Workspace) -> dict:
    return build_openapi(ws.settings, ws.routes, ws.schema_files or SchemaFiles(ws.root))
