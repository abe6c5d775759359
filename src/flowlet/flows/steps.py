"""Flow steps: call a Python function from the workspace, or make an outbound HTTP request."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable

import httpx

from flowlet.errors import ConfigError
from flowlet.expr import Const, compile_value
from flowlet.flows.bulkhead import DEFAULT_SIZE, Bulkhead
from flowlet.flows.isolation import ProcessPool, WorkerFailed
from flowlet.source import check_keys, expect_map, get_int, get_number, get_str

_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_FUNCTION_KEYS = ("id", "function", "input", "isolation", "memory_mb")
ISOLATIONS = ("thread", "process")
DEFAULT_MEMORY_MB = 512
_HTTP_KEYS = ("id", "http")


# What every outbound http step of the current request carries (the request id, an incoming
# W3C traceparent); the server sets it once per request that runs steps.
OUTBOUND: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("flowlet_outbound", default=())
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def outbound_headers(request_id: str, traceparent: str | None) -> tuple[tuple[str, str], ...]:
    """``X-Request-Id``, and ``traceparent`` (with ``tracestate`` dropped) when it is well formed."""
    if traceparent is not None and _TRACEPARENT.match(traceparent) and not traceparent.startswith("ff"):
        return (("x-request-id", request_id), ("traceparent", traceparent))
    return (("x-request-id", request_id),)


class StepFailed(Exception):
    """A step raised or returned something unusable; the server answers 500 and logs the cause."""


class FunctionStep:
    __slots__ = ("id", "target", "func", "is_async", "input", "variables", "bulkhead", "pool")

    def __init__(self, id: str | None, target: str, func: Callable, input: Any, bulkhead: Bulkhead,
                 pool: ProcessPool | None = None):
        self.id = id
        self.target = target
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func)
        self.input = input
        self.variables = input.variables
        self.bulkhead = bulkhead      # the endpoint's share of threads and worker processes
        self.pool = pool              # isolation: process

    async def run(self, env: dict, ctx: "RunContext") -> Any:
        kwargs = self.input.evaluate(env)
        if self.pool is not None:
            try:
                return await self.bulkhead.call(lambda: self.pool.call(kwargs))
            except WorkerFailed as exc:
                raise StepFailed(f"{self.target} failed in its worker process: {exc}") from None
        if self.is_async:
            return await self.func(**kwargs)
        # Sync functions may block: run them off the event loop, on the endpoint's own threads.
        return await self.bulkhead.call_in_thread(self.func, kwargs)


class HttpStep:
    __slots__ = ("id", "method", "url", "headers", "body", "timeout_s", "variables")

    def __init__(self, id: str | None, method: str, url: Any, headers: Any, body: Any, timeout_s: float):
        self.id = id
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout_s = timeout_s
        self.variables = url.variables | headers.variables | (body.variables if body else frozenset())

    async def run(self, env: dict, ctx: "RunContext") -> Any:
        url = self.url.evaluate(env)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise StepFailed(f"http step: url must be an http(s) URL, got {type(url).__name__}")
        headers = {str(k): str(v) for k, v in (self.headers.evaluate(env) or {}).items()}
        content = None
        if self.body is not None:
            value = self.body.evaluate(env)
            content = json.dumps(value, separators=(",", ":")).encode()
            headers.setdefault("content-type", "application/json")
        given = {k.lower() for k in headers}
        headers.update((k, v) for k, v in OUTBOUND.get() if k not in given)   # the flow's own values win
        try:
            resp = await ctx.http.request(self.method, url, headers=headers, content=content,
                                          timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise StepFailed(f"http step: {self.method} {url} timed out after {self.timeout_s}s") from None
        except httpx.HTTPError as exc:
            # The URL and the cause help whoever reads the log; secrets in them are masked there.
            raise StepFailed(f"http step: {self.method} {url} failed: {type(exc).__name__}: {exc}") from None
        ctype = resp.headers.get("content-type", "")
        if "json" in ctype:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
        else:
            body = resp.text
        return {"status": resp.status_code, "headers": dict(resp.headers), "body": body}


class RunContext:
    """What steps share within one worker: the outbound HTTP client."""

    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False,
                                           limits=httpx.Limits(max_connections=100))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def compile_step(raw: Any, parent: Any, index: int, *, root: Path, allowed: frozenset[str], secrets: Any,
                 bulkhead: Bulkhead | None = None):
    m = expect_map(raw, parent, index, "a step")
    # Any step's keys first: a misspelt `function:` is named at its own line, not as a missing kind.
    check_keys(m, _FUNCTION_KEYS + tuple(k for k in _HTTP_KEYS if k not in _FUNCTION_KEYS), "a step")
    kinds = [k for k in ("function", "http") if k in m]
    if len(kinds) != 1:
        raise m.error("a step needs exactly one of 'function' or 'http'")
    sid = get_str(m, "id", None)
    if sid is not None and not sid.isidentifier():
        raise m.error(f"step id {sid!r} must be an identifier (letters, digits, _)", "id")
    if kinds[0] == "function":
        check_keys(m, _FUNCTION_KEYS, "a function step")
        target = get_str(m, "function")
        func = _resolve(target, root, m.where("function"))
        input_raw = m.get("input", {})
        if not isinstance(input_raw, dict):
            raise m.error("'input' must be a mapping of keyword arguments", "input")
        pool = _process_pool(m, root, target)
        return FunctionStep(sid, target, func,
                            compile_value(input_raw, m.where("input"), allowed=allowed, secrets=secrets),
                            bulkhead or Bulkhead(target, DEFAULT_SIZE), pool)
    check_keys(m, _HTTP_KEYS, "an http step")
    h = expect_map(m["http"], m, "http", "'http'")
    check_keys(h, ("method", "url", "headers", "body", "timeout_s"), "an http step")
    method = get_str(h, "method", "GET").upper()
    if method not in _HTTP_METHODS:
        raise h.error(f"unknown HTTP method {method!r}", "method")
    url = compile_value(get_str(h, "url"), h.where("url"), allowed=allowed, secrets=secrets)
    if isinstance(url, Const) and not str(url.value).startswith(("http://", "https://")):
        raise h.error("'url' must start with http:// or https://", "url")
    headers_raw = h.get("headers", {})
    if not isinstance(headers_raw, dict):
        raise h.error("'headers' must be a mapping", "headers")
    headers = compile_value(headers_raw, h.where("headers"), allowed=allowed, secrets=secrets)
    body = compile_value(h["body"], h.where("body"), allowed=allowed, secrets=secrets) if "body" in h else None
    timeout_s = float(get_number(h, "timeout_s", 10.0, minimum=0.001))
    return HttpStep(sid, method, url, headers, body, timeout_s)


def _process_pool(m: Any, root: Path, target: str) -> ProcessPool | None:
    """``isolation`` and ``memory_mb``: a pool of worker processes, or None for threads."""
    isolation = get_str(m, "isolation", "thread")
    if isolation not in ISOLATIONS:
        raise m.error(f"'isolation' must be thread or process, not {isolation!r}", "isolation")
    if isolation == "thread":
        if "memory_mb" in m:
            raise m.error("'memory_mb' needs 'isolation: process' (a thread cannot be capped)", "memory_mb")
        return None
    memory_mb = get_int(m, "memory_mb", DEFAULT_MEMORY_MB, minimum=32)
    return ProcessPool(root.resolve(), target, memory_mb)


def _resolve(target: str, root: Path, where: tuple) -> Callable:
    """``package.module:callable`` imported from the workspace folder (put on sys.path)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"function must be written module:callable (e.g. functions.users:update); "
                          f"got {target!r}", *where)
    root_str = str(root.resolve())
    if root_str not in sys.path:
        sys.path.insert(0, root_str)
    _forget_foreign_modules(module_name, root_str)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}", *where) from None
    except Exception as exc:
        raise ConfigError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}", *where) from None
    func = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}", *where)
    if not callable(func):
        raise ConfigError(f"{target!r} is not callable", *where)
    return func


def _forget_foreign_modules(module_name: str, root: str) -> None:
    """When one process loads several workspaces (tests, `check`), drop modules of another root."""
    parts = module_name.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        mod = sys.modules.get(name)
        origin = getattr(mod, "__file__", None) or ""
        if mod is not None and origin and not origin.startswith(root + "/"):
            if name.split(".")[0] in sys.stdlib_module_names:
                return
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]
    importlib.invalidate_caches()

