"""The ASGI application: one request, one visible path through the compiled workspace."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import time
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qsl

from granian.rsgi import HTTPProtocol, ProtocolClosed, ProtocolError
from granian.rsgi import Scope as RSGIScope

from flowlet.contracts.contract import Inputs
from flowlet.edge.proxy import compile_proxies, from_environment
from flowlet.errors import HTTPError
from flowlet.expr import ExprError
from flowlet.flows.flow import JSON_CT, Response, dump_json
from flowlet.flows.steps import OUTBOUND, RunContext, StepFailed, outbound_headers
from flowlet.http import Request
from flowlet.jsonutil import StrictJSON
from flowlet.security.auth import OPEN_AUTH
from flowlet.security.hsts import hsts_header
from flowlet.server.deadlines import BodyDeadlines
from flowlet.server.log import AccessLog
from flowlet.server.metrics import WorkerMetrics, refusal
from flowlet.server.tracing import Tracing
from flowlet.server.wire import check_wire
from flowlet.workspace.loader import PathEntry, Route, Workspace

log = logging.getLogger("flowlet.server")

JSON = Any                                    # a decoded request body: arbitrary JSON, a form map or text
Headers = list[tuple[bytes, bytes]]
Scope = dict[str, Any]                        # ASGI scope and messages: their values depend on their type
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def error_body(message: str) -> bytes:
    return dump_json({"error": message})


def error_response(status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = (),
                   body: bytes | None = None) -> Response:
    """``{"error": message}``, or ``body`` when the error brought its own (problems, details)."""
    return Response(status, [JSON_CT, *headers], body or error_body(message))


_NOT_FOUND = error_response(404, "not found")
_INTERNAL = error_response(500, "internal error")
_NO_CORS = error_response(403, "CORS preflight refused: this path does not allow cross-origin requests")
_PREFLIGHT_REFUSED = error_body("CORS preflight refused")
_NOT_ALLOWED = error_body("method not allowed")


class FlowletApp:
    def __init__(self, ws: Workspace, *, access_log: bool = True, dev: bool = False,
                 metrics: WorkerMetrics | None = None, tracing: Tracing | None = None):
        self.ws = ws
        if dev:                                # answers checked against `output:`; off: no cost at all
            self.pipeline = self.checked_pipeline  # type: ignore[method-assign]
        self.table = ws.table
        self.exact = ws.table.exact
        self.limit = ws.settings.body_bytes
        self.too_large = f"request body larger than {self.limit} bytes"
        self.timeout = ws.settings.timeout_s
        self.deadlines = BodyDeadlines(self.timeout)
        hsts = hsts_header(ws.settings.hsts)
        self.hsts: tuple[tuple[bytes, bytes], ...] = (hsts,) if hsts else ()
        self.hsts_str = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in self.hsts)
        self.ctx = RunContext()
        stale = getattr(ws.secrets, "stale", None)
        self.secrets_stale: Callable[[], bool] = stale if stale is not None else _never
        self.proxy = compile_proxies(ws.settings.proxy.trusted, from_environment())
        self.access = AccessLog(access_log)
        self.metrics = metrics
        self.tracing = tracing
        self.timed = access_log or metrics is not None or tracing is not None
        self._pid = f"{os.getpid():x}"
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None     # set by start(); the log flushes on it
        self.closing = False      # set when the worker is about to be retired (HTTP/1: Connection: close)

    # ---- entry points: RSGI (granian, what `flowlet serve` runs) and ASGI (any ASGI server) -----

    async def __rsgi__(self, scope: RSGIScope, proto: HTTPProtocol) -> None:
        if scope.proto != "http":
            return                                      # websockets are off
        started = time.perf_counter() if self.timed else 0.0
        req = Request.from_rsgi(scope)
        rid = self.request_id(req)
        resp = await self.pipeline(req, proto, rid)
        wire = resp.wire
        if wire is None:
            wire = resp.wire = [_WIRE.get(h) or _to_wire(h) for h in resp.headers]
        headers = [*wire, ("x-request-id", rid), *_ALWAYS]
        if self.hsts_str and req.secure:
            headers.extend(self.hsts_str)
        if self.closing and req.http_version != "2":     # retiring: clients should reconnect elsewhere
            headers.append(("connection", "close"))
        if resp.status == 204:
            proto.response_empty(204, headers)
        elif req.method == "HEAD":                      # HTTP/2 refuses a HEAD answer with a body
            headers.append(("content-length", str(len(resp.body))))
            proto.response_empty(resp.status, headers)
        else:                                           # granian sets Content-Length
            proto.response_bytes(resp.status, headers, resp.body)
        if started:
            self.finished(req, resp.status, started, rid)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.start(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.stop())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter() if self.timed else 0.0
        req = Request(scope)
        rid = self.request_id(req)
        resp = await self.pipeline(req, receive, rid)
        headers = [*resp.headers, (b"x-request-id", rid.encode())]   # a copy: answers may be shared
        headers += (b"x-content-type-options", b"nosniff"), (b"server", b"flowlet")   # else granian names itself
        if self.hsts and req.secure:
            headers.extend(self.hsts)
        if resp.status != 204:                       # a 204 has no body and needs no length
            headers.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if req.method == "HEAD" else resp.body})
        if started:
            self.finished(req, resp.status, started, rid)

    def finished(self, req: Request, status: int, started: float, rid: str) -> None:
        """After the answer went out: the metrics, the trace span and the access line."""
        if self.metrics is not None:
            self.metrics.observe(req, status, time.perf_counter() - started)
        if self.tracing is not None:
            self.tracing.record(req, status, time.perf_counter() - started, rid)
        if self.access.enabled:
            self.access.record(req.method, req.path, status, started, rid, self.loop, req.client, req.refusal)

    # ---- one request -------------------------------------------------------------------

    def request_id(self, req: Request) -> str:
        """The client's X-Request-Id when it is a sane token, else a new one."""
        rid = req.headers.get("x-request-id")
        if rid is None or not _REQUEST_ID.match(rid):
            self._seq += 1
            rid = f"{self._pid}-{self._seq:x}"
        return rid

    async def pipeline(self, req: Request, receive: Receive | HTTPProtocol, rid: str = "") -> Response:
        """Wire (400/501) -> trusted proxy headers (400) -> route (404/405) -> CORS -> authentication
        (401, 429) -> rate limit (429) -> scope (403) -> CSRF (400) -> body (413/400) -> input contract
        (400) -> flow (504/500). A stage refuses by raising HTTPError."""
        cors: Headers | tuple[()] = ()
        try:
            check_wire(req)                   # 400/501: framing the server let through
            if self.proxy is not None:
                self.proxy.apply(req)         # the effective client, scheme and host
            route, params, answer = self.route(req)
            if answer is not None:
                return answer                 # 404, 405, preflight, OPTIONS
            req.route = route
            if route.cors is not None:
                cors = route.cors.actual_headers(req.headers.get("origin"))
            if (route.auth is not None or route.csrf is not None) and self.secrets_stale():
                await self.ws.secrets.recheck()   # a `flowlet secrets` command just wrote: see it now
            auth = await route.auth.authenticate(req) if route.auth is not None else OPEN_AUTH
            if route.rate_limit is not None:
                await route.rate_limit.check(req, auth, params)
            if route.scope_policy is not None:
                route.scope_policy.check(auth, req, params)
            if route.csrf is not None:
                route.csrf.check(req)
            body = await self.read_body(req, receive) if route.reads_body else None
            inputs = route.contract.check(req, params, body) if route.contract is not None else None
            resp = route.handler.fixed
            if resp is None:                  # else a literal answer: nothing to evaluate or wait for
                resp = await self.run_flow(route, req, params, auth, body, rid, inputs)
        except HTTPError as exc:
            req.refusal = exc
            resp = error_response(exc.status, exc.message, exc.headers, exc.body)
        except Exception:   # the one catch-all: a bug, not the client's fault; log it, keep CORS on the 500
            log.exception("unhandled error serving %s %s", req.method, req.path, extra={"request_id": rid})
            resp = _INTERNAL
        if not cors:
            return resp
        return Response(resp.status, _merge_vary(resp.headers, cors) if resp.headers else cors, resp.body)

    async def checked_pipeline(self, req: Request, receive: Receive, rid: str = "") -> Response:
        """``serve --dev``: the pipeline, then the answer checked against the route's ``output``."""
        from flowlet.contracts.devcheck import check_answer
        resp = await FlowletApp.pipeline(self, req, receive, rid)
        route = self.route(req)[0]
        if route is not None and route.output is not None:
            cfg = route.config
            check_answer(f"{cfg.method} {req.path} ({cfg.file})", route.output, resp.status, resp.headers,
                         resp.body, rid)
        return resp

    def route(self, req: Request) -> tuple[Route, dict[str, int | str], None] | tuple[None, None, Response]:
        """The route and its params, or the whole answer when no handler runs."""
        method = "GET" if req.method == "HEAD" else req.method
        entry = self.exact(req.path)                # the common case: one dict lookup
        if entry is not None:
            route = entry.routes.get(method)
            if route is not None:
                return route, {}, None
            if method == "OPTIONS":                  # a static path is the first match anyway
                return None, None, self.options(entry, req)
        first = None
        for entry, params in self.table.match(req.path):
            if first is None:
                first = entry
            route = entry.routes.get(method)
            if route is not None:
                return route, params, None
        if first is None:
            return None, None, _NOT_FOUND
        if req.method == "OPTIONS":
            return None, None, self.options(first, req)
        return None, None, Response(405, [JSON_CT, (b"allow", first.allow)], _NOT_ALLOWED)

    def options(self, entry: PathEntry, req: Request) -> Response:
        req.route = entry                     # counted as the path's OPTIONS
        if "access-control-request-method" not in req.headers or "origin" not in req.headers:
            return Response(204, [(b"allow", entry.allow)], b"")
        if entry.cors is None:
            self.preflight_refused(req, entry, "method")
            return _NO_CORS
        status, headers = entry.cors.preflight(req)
        if status == 204:
            if self.metrics is not None:
                self.metrics.preflight(entry, True)
            return Response(204, headers, b"")        # a fresh list already
        self.preflight_refused(req, entry, entry.cors.refusal_reason(req))
        return Response(status, [JSON_CT, *headers], _PREFLIGHT_REFUSED)

    def preflight_refused(self, req: Request, entry: PathEntry, reason: str) -> None:
        req.refusal = refusal("cors", reason)
        if self.metrics is not None:
            self.metrics.preflight(entry, False)

    def check_size(self, size: int) -> None:
        if size > self.limit:
            raise HTTPError(413, self.too_large, stage="limits", reason="body_too_large")

    async def read_body(self, req: Request, source: Receive | HTTPProtocol) -> JSON:
        declared = req.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HTTPError(400, "invalid Content-Length")
            self.check_size(int(declared))
            if declared == "0":
                return None
        elif "transfer-encoding" not in req.headers and req.http_version != "2":
            return None                       # HTTP/1.x without either header: no body (RFC 9112 6.3)
        size = None if declared is None else int(declared)
        raw = await (read_rsgi(self, source, size) if req.rsgi else read_asgi(self, source, size))
        if not raw:
            return None
        return parse_body(raw, req.headers.get("content-type", ""))

    async def run_flow(self, route: Route, req: Request, params: dict[str, int | str], auth: dict[str, JSON],
                       body: JSON, rid: str = "", inputs: Inputs | None = None) -> Response:
        flow = route.handler              # never a literal answer: pipeline() answered those
        if inputs is not None:                # validated: typed, defaults filled in
            params, body = inputs.params, inputs.body
        env: dict[str, JSON] = {"params": params, "body": body, "auth": auth}
        if "query" in flow.variables:
            env["query"] = req.query if inputs is None or inputs.query is None else inputs.query
        if "request" in flow.variables:
            env["request"] = req.expr_view() if inputs is None else {**req.expr_view(), **inputs.request_parts()}
        try:
            if not flow.steps:                # expressions only: nothing to wait for
                return await flow.run(env, self.ctx)
            OUTBOUND.set(outbound_headers(rid, req.headers.get("traceparent")))
            async with asyncio.timeout(self.timeout):
                return await flow.run(env, self.ctx)
        except TimeoutError:
            cfg = route.config
            log.warning("flow %s %s timed out after %ss", cfg.method, cfg.pattern.text, self.timeout,
                        extra={"request_id": rid})
            raise HTTPError(504, "flow timed out", stage="limits", reason="timeout") from None
        except ExprError as exc:
            cfg = route.config
            if not exc.from_request:
                log.error("flow %s %s failed: %s", cfg.method, cfg.pattern.text, exc, extra={"request_id": rid})
                raise HTTPError(500, "internal error") from None
            log.info("flow %s %s: the request lacks what it reads: %s", cfg.method, cfg.pattern.text, exc,
                     extra={"request_id": rid})
            raise HTTPError(400, "invalid request: it lacks a value this endpoint reads, or one has the wrong "
                                 "type (an input schema would say which)", stage="input", reason="malformed") from None
        except StepFailed as exc:
            cfg = route.config
            log.error("flow %s %s failed: %s", cfg.method, cfg.pattern.text, exc, extra={"request_id": rid})
            raise HTTPError(500, "internal error") from None

    def health(self) -> dict[str, str]:
        """Checks for the admin listener: where the rate-limit counters live and whether Redis answers."""
        return self.ws.limiter.health() if self.ws.limiter is not None else {}

    # ---- lifespan ----------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Background work for the worker's life (the loop need not run yet)."""
        self.loop = loop
        if self.ws.secrets is not None:
            self._tasks.append(loop.create_task(self.ws.secrets.run()))
        if self.metrics is not None:
            self._tasks.append(loop.create_task(self.metrics.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.ctx.aclose()
        if self.ws.limiter is not None:
            await self.ws.limiter.aclose()
        if self.metrics is not None:
            self.metrics.publish("stopped")
        self.access.flush()

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def read_asgi(app: FlowletApp, receive: Receive, declared: int | None) -> bytes:
    """The request body from ASGI ``receive`` messages."""
    message = await receive()             # usually the whole body; time out only when it is not
    if message["type"] == "http.disconnect":
        raise HTTPError(400, "client disconnected")
    raw = message.get("body", b"")
    app.check_size(len(raw))
    # granian sends a small body with more_body=True, then an empty last message: when the
    # declared length is all here, do not wait for that (a timeout and an event-loop turn).
    if message.get("more_body", False) and (declared is None or len(raw) < declared):
        raw = await _read_rest(app, receive, [raw], len(raw))
    return raw


async def _read_rest(app: FlowletApp, receive: Receive, chunks: list[bytes], size: int) -> bytes:
    try:
        async with asyncio.timeout(app.timeout):
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise HTTPError(400, "client disconnected")
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                size += len(chunk)
                app.check_size(size)
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPError(408, "request body not received in time", stage="limits", reason="timeout") from None
    return b"".join(chunks)


async def read_rsgi(app: FlowletApp, proto: HTTPProtocol, declared: int | None) -> bytes:
    """The request body from granian's RSGI protocol object."""
    if declared is None:
        return await _read_chunks(app, proto)
    task = asyncio.current_task()
    assert task is not None
    app.deadlines.start(task)
    try:
        return await proto()              # the declared length was checked against the limit
    except asyncio.CancelledError:
        if app.deadlines.expired(task):
            raise HTTPError(408, "request body not received in time", stage="limits", reason="timeout") from None
        raise
    except (ProtocolClosed, ProtocolError):
        raise HTTPError(400, "client disconnected") from None
    finally:
        app.deadlines.stop(task)


async def _read_chunks(app: FlowletApp, proto: HTTPProtocol) -> bytes:
    """A body of unknown length, counted as it comes."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(app.timeout):
            async for chunk in proto:
                size += len(chunk)
                app.check_size(size)
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPError(408, "request body not received in time", stage="limits", reason="timeout") from None
    except (ProtocolClosed, ProtocolError):
        raise HTTPError(400, "client disconnected") from None
    return b"".join(chunks)


# On every answer (else granian names itself); _ALWAYS is the RSGI form of the ASGI path's pair.
_ALWAYS = (("x-content-type-options", "nosniff"), ("server", "flowlet"))

# granian takes str headers; ours are latin-1 bytes. Most pairs are the same few values
# (content type, CORS, Allow), so their conversion is remembered, within a bound; cookies are
# per client and never kept.
_WIRE: dict[tuple[bytes, bytes], tuple[str, str]] = {}
_WIRE_MAX = 4096


def _to_wire(pair: tuple[bytes, bytes]) -> tuple[str, str]:
    wire = (pair[0].decode("latin-1"), pair[1].decode("latin-1"))
    if pair[0] != b"set-cookie":
        if len(_WIRE) >= _WIRE_MAX:
            _WIRE.clear()         # a flood of one-off values costs only recomputation
        _WIRE[pair] = wire
    return wire


def _never() -> bool:
    return False


def _merge_vary(headers: Headers, cors: Headers) -> Headers:
    """One Vary header when both the flow and CORS set one."""
    for name, _ in headers:
        if name == b"vary":
            break
    else:
        return [*headers, *cors]          # the usual case: only CORS varies
    theirs = [v for k, v in headers if k == b"vary"]
    ours = [v for k, v in cors if k == b"vary"]
    if not theirs or not ours:
        return [*headers, *cors]
    merged = b", ".join(dict.fromkeys(p.strip() for v in theirs + ours for p in v.split(b",") if p.strip()))
    return [*(h for h in headers if h[0] != b"vary"), *(h for h in cors if h[0] != b"vary"), (b"vary", merged)]


# Expressions work on 64-bit integers (CEL): larger ones are refused here, as bad input.
_JSON = StrictJSON(max_int_digits=19, int64=True)


def parse_body(raw: bytes, content_type: str) -> Any:
    """JSON for application/json and application/*+json, a map for forms, else text."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    is_json = ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "request body is not valid UTF-8", stage="input", reason="malformed") from None
    if is_json:
        try:
            return _JSON.decode(text)
        except (ValueError, RecursionError):
            raise HTTPError(400, "request body is not valid JSON", stage="input", reason="malformed") from None
    if ctype == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=1000))
        except ValueError:
            raise HTTPError(400, "request body is not a valid form", stage="input", reason="malformed") from None
    return text


def create_app() -> FlowletApp:
    """Granian's factory: each worker loads the workspace named by FLOWLET_WORKSPACE."""
    from flowlet.server.log import mask_secrets_of, setup_logging
    from flowlet.server.metrics import from_env as metrics_from_env
    from flowlet.server.tracing import from_env as tracing_from_env
    from flowlet.workspace.loader import load_workspace

    setup_logging(os.environ.get("FLOWLET_LOG_LEVEL", "info"))
    ws = load_workspace(os.environ["FLOWLET_WORKSPACE"], serving=True)
    mask_secrets_of(ws.secrets)
    app = FlowletApp(ws, access_log=os.environ.get("FLOWLET_ACCESS_LOG", "1") != "0",
                     dev=os.environ.get("FLOWLET_DEV") == "1", metrics=metrics_from_env(ws),
                     tracing=tracing_from_env(ws))
    if app.metrics is not None:
        app.metrics.publish()       # before the worker reports ready, so /readyz counts it at once
    # What loaded stays for the life of the worker: keep the collector from scanning it again
    # and again (long pauses once many cached auth results exist).
    gc.collect()
    gc.freeze()
    return app
