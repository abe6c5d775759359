"""OpenTelemetry spans, one per request, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from conftest import make_workspace  # noqa: E402
from flowlet.server.app import FlowletApp  # noqa: E402
from flowlet.server.tracing import Tracing, from_env  # noqa: E402
from flowlet.workspace.loader import load_workspace  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def traced(tmp_path):
    ws = load_workspace(make_workspace(tmp_path, {
        "flows/open.yaml": "endpoint: {method: GET, path: /open}\nrespond: {body: {ok: true}}\n",
        "flows/things.yaml": """
            endpoint:
              method: POST
              path: /things
              csrf: true
              cors: {allow: selected, domains: app.example.test, credentials: true}
            respond: {body: {ok: true}}
        """,
    }), serving=True)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FlowletApp(ws, access_log=False, tracing=Tracing(provider.get_tracer("test"), ws))
    yield app, exporter
    ws.close()


def call(app, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    sent = []
    scope = {"type": "http", "method": method, "path": path, "scheme": "http", "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in {"host": "127.0.0.1", **(headers or {})}.items()]}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


def test_a_span_per_request_with_route_status_and_parent(traced):
    app, exporter = traced
    parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    assert call(app, "GET", "/api/open", {"traceparent": parent, "x-request-id": "r-1"}) == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /api/open"
    assert span.attributes["http.route"] == "/api/open" and span.attributes["http.response.status_code"] == 200
    assert span.attributes["flowlet.request_id"] == "r-1"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.end_time >= span.start_time


def test_security_stages_are_events_up_to_the_refusal(traced):
    app, exporter = traced
    assert call(app, "POST", "/api/things", {"origin": "https://app.example.test"}) == 400
    (span,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert events == [("flowlet.cors", {"outcome": "passed"}),
                      ("flowlet.csrf", {"outcome": "refused", "reason": "missing"})]


def test_a_refused_preflight_is_a_cors_event(traced):
    app, exporter = traced
    assert call(app, "OPTIONS", "/api/things", {"origin": "https://evil.example",
                                                "access-control-request-method": "POST"}) == 403
    (span,) = exporter.get_finished_spans()
    assert [(e.name, dict(e.attributes)) for e in span.events] == \
        [("flowlet.cors", {"outcome": "refused", "reason": "origin"})]


def test_tracing_is_off_unless_switched_on(traced, monkeypatch):
    app, _ = traced
    monkeypatch.delenv("FLOWLET_TRACING", raising=False)
    assert from_env(app.ws) is None
    monkeypatch.setenv("FLOWLET_TRACING", "1")
    assert isinstance(from_env(app.ws), Tracing)


def test_without_the_extra_tracing_stays_off(traced, monkeypatch):
    import sys
    app, _ = traced
    monkeypatch.setenv("FLOWLET_TRACING", "1")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)      # as if not installed: import fails
    assert from_env(app.ws) is None
