"""Optional OpenTelemetry spans: one per request, the security stages as its events.

Installed with the ``flowlet[otel]`` extra and switched on with ``flowlet serve --tracing``
(``FLOWLET_TRACING=1``); the exporter is whatever TracerProvider the process configured (the
OpenTelemetry SDK reads its ``OTEL_*`` settings). Without the extra, or without the switch,
nothing here is imported and a request pays one attribute test.

The span is written after the answer, from what the pipeline left on the request: the route
it matched and the refusal, if any. The pipeline's order is fixed (CORS, authentication,
scope, CSRF, body, flow), so every stage the route has before the one that refused passed.
An incoming W3C ``traceparent`` makes the span its child.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from flowlet.http import Request
from flowlet.server.metrics import entries
from flowlet.workspace.loader import Workspace

ENV = "FLOWLET_TRACING"

# (route attribute, stage name) in the pipeline's order; "body" and "flow" always exist.
_STAGES = (("cors", "cors"), ("auth", "auth"), ("scope_policy", "scope"), ("csrf", "csrf"))


class Tracer(Protocol):
    def start_span(self, name: str, context: object = None, kind: object = None, attributes: dict | None = None,
                   links: object = None, start_time: int | None = None) -> object: ...


class Tracing:
    """Writes one span per answered request to ``tracer``."""

    def __init__(self, tracer: Tracer, ws: Workspace):
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.tracer = tracer
        self.templates: dict[int, str] = {}       # id(route or path entry) -> the path template
        for entry in entries(ws):
            self.templates[id(entry)] = entry.full_path
            self.templates.update((id(route), entry.full_path) for route in entry.routes.values())
        self._extract = extract
        self._server = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)

    def record(self, req: Request, status: int, seconds: float, request_id: str) -> None:
        end = time.time_ns()
        template = self.templates.get(id(req.route))
        parent = self._extract({"traceparent": req.headers["traceparent"]}) if "traceparent" in req.headers else None
        attributes = {"http.request.method": req.method, "url.path": req.path,
                      "http.response.status_code": status, "flowlet.request_id": request_id}
        if template is not None:
            attributes["http.route"] = template
        span = self.tracer.start_span(f"{req.method} {template or ''}".strip(), context=parent, kind=self._server,
                                      attributes=attributes, start_time=end - int(seconds * 1e9))
        for name, event in self.stages(req):
            span.add_event(name, event, timestamp=end)
        if status >= 500:
            span.set_status(self._error)
        span.end(end_time=end)

    @staticmethod
    def stages(req: Request) -> list[tuple[str, dict]]:
        """("flowlet.<stage>", {"outcome": "passed" | "refused", "reason"?}) for each stage that ran."""
        refusal = req.refusal
        events = []
        stages = [(stage, getattr(req.route, attr, None) is not None) for attr, stage in _STAGES]
        for stage, present in [*stages, ("input", True), ("limits", True)]:
            if refusal is not None and refusal.stage == stage:
                events.append((f"flowlet.{stage}", {"outcome": "refused", "reason": refusal.reason or ""}))
                return events
            if present and stage in ("cors", "auth", "scope", "csrf"):
                events.append((f"flowlet.{stage}", {"outcome": "passed"}))
        return events


def from_env(ws: Workspace) -> Tracing | None:
    """Tracing when switched on and the OpenTelemetry API is installed; else None."""
    if os.environ.get(ENV) != "1":
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return Tracing(trace.get_tracer("flowlet"), ws)
