"""A flow: its steps in order, then the response. Compiled at load; ``run`` is the request path."""

from __future__ import annotations

import json
from typing import Any

from flowlet.errors import ConfigError
from flowlet.expr import BASE_VARIABLES, compile_value
from flowlet.flows.steps import RunContext, StepFailed, compile_step
from flowlet.headers import is_token
from flowlet.source import YMap, check_keys, expect_map

JSON_CT = (b"content-type", b"application/json")


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


class Flow:
    """Steps then respond. ``variables`` is every base variable the flow's expressions read,
    so the server builds only those (the ``request`` map is not built when nobody reads it)."""

    def __init__(self, steps: list, status: Any, headers: Any, body: Any, has_body: bool):
        self.steps = steps
        self.status = status
        self.headers = headers
        self.body = body
        self.has_body = has_body
        used = frozenset().union(status.variables, headers.variables, body.variables,
                                 *(s.variables for s in steps))
        self.variables = used & frozenset(BASE_VARIABLES)
        # The whole answer is fixed when nothing in it is an expression: encode it now.
        self.fixed: Response | None = None
        if not steps and status.is_const and headers.is_const and body.is_const:
            self.fixed = self._build(status.value, headers.value, body.value)

    async def run(self, env: dict, ctx: RunContext) -> Response:
        if self.fixed is not None:
            return self.fixed
        for step in self.steps:
            result = await step.run(env, ctx)
            if step.id is not None:
                env[step.id] = result
        return self._build(self.status.evaluate(env), self.headers.evaluate(env), self.body.evaluate(env))

    def _build(self, status: Any, headers: Any, body: Any) -> Response:
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise StepFailed(f"respond.status must be an integer from 200 to 599, got {status!r}")
        out: list[tuple[bytes, bytes]] = []
        content_type = None
        for k, v in (headers or {}).items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise StepFailed(f"respond header {k!r} must be a string")
            value = str(v)
            if "\r" in value or "\n" in value or "\0" in value:
                raise StepFailed(f"respond header {k!r} holds a line break")
            if k.lower() == "content-type":
                content_type = value
            out.append((k.lower().encode("latin-1"), value.encode("latin-1", "replace")))
        if not self.has_body or status in (204, 304):
            return Response(status, out, b"")
        if content_type is not None and isinstance(body, str) and "json" not in content_type:
            return Response(status, out, body.encode())
        try:
            encoded = dump_json(body)
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"respond.body is not JSON: {exc}") from None
        if content_type is None:
            out.append(JSON_CT)
        return Response(status, out, encoded)


def compile_flow(doc: YMap, *, root, secrets: Any) -> Flow:
    """The ``steps`` and ``respond`` parts of a flow file."""
    allowed = set(BASE_VARIABLES)
    steps = []
    raw_steps = doc.get("steps", [])
    if raw_steps is None:
        raw_steps = []
    if not isinstance(raw_steps, list):
        raise doc.error("'steps' must be a list", "steps")
    for i, raw in enumerate(raw_steps):
        step = compile_step(raw, raw_steps, i, root=root, allowed=frozenset(allowed), secrets=secrets)
        if step.id is not None:
            if step.id in allowed:
                where = raw_steps.where(i)
                raise ConfigError(f"step id {step.id!r} is already taken (by a variable or an earlier step)",
                                  *where)
            allowed.add(step.id)
        steps.append(step)
    final = frozenset(allowed)
    respond = doc.get("respond")
    if respond is None:
        respond = YMap()
        respond.file, respond.line, respond.key_lines = doc.file, doc.line, {}
    respond = expect_map(respond, doc, "respond", "'respond'")
    check_keys(respond, ("status", "headers", "body"), "respond")
    status_raw = respond.get("status", 200)
    if isinstance(status_raw, bool) or not (isinstance(status_raw, int) or
                                            (isinstance(status_raw, str) and status_raw.startswith("="))):
        raise respond.error("'status' must be an integer or an expression", "status")
    if isinstance(status_raw, int) and not 200 <= status_raw <= 599:
        raise respond.error("'status' must be from 200 to 599", "status")
    status = compile_value(status_raw, respond.where("status"), allowed=final, secrets=secrets)
    headers_raw = respond.get("headers", {}) or {}
    if not isinstance(headers_raw, dict):
        raise respond.error("'headers' must be a mapping", "headers")
    for name in headers_raw:
        if not isinstance(name, str) or not is_token(name):
            raise headers_raw.error(f"bad header name {name!r}", name)
    headers = compile_value(headers_raw, respond.where("headers"), allowed=final, secrets=secrets)
    has_body = "body" in respond
    body = compile_value(respond.get("body"), respond.where("body"), allowed=final, secrets=secrets)
    return Flow(steps, status, headers, body, has_body)

