"""A flow: its steps in order, then the response. Compiled at load; ``run`` is the request path."""

from __future__ import annotations

import json
from typing import Any

from flowlet.errors import ConfigError, HTTPError
from flowlet.expr import BASE_VARIABLES, Expr, compile_expr, compile_value, encoded_only
from flowlet.flows.bulkhead import DEFAULT_SIZE, Bulkhead
from flowlet.flows.steps import RunContext, StepFailed, compile_step
from flowlet.headers import is_token
from flowlet.source import YList, YMap, check_keys, expect_map

JSON_CT = (b"content-type", b"application/json")


# One encoder for every answer: json.dumps with options builds a new one per call (twice the cost).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# JSONEncoder.encode still makes a C encoder per call (its cycle check needs a fresh dict):
# the C encoder made once, without the cycle check, halves that again. A cycle (only a function
# step's result could hold one) ends in RecursionError, told as the ValueError it would have been.
_C_ENCODE = json.encoder.c_make_encoder(   # type: ignore[attr-defined]
    None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False) \
    if json.encoder.c_make_encoder is not None else None   # type: ignore[attr-defined]


def dump_json(value: Any) -> bytes:
    if _C_ENCODE is None or isinstance(value, str):
        return _ENCODER.encode(value).encode()
    try:
        return "".join(_C_ENCODE(value, 0)).encode()
    except RecursionError:
        raise ValueError("value nested too deeply, or circular") from None


class Response:
    """An answer. ``wire`` is the RSGI entry point's str form of ``headers``, made on first use:
    a fixed answer (a literal flow, a 404) converts its headers once, not per request."""

    __slots__ = ("status", "headers", "body", "wire")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        self.wire: list[tuple[str, str]] | None = None


class Case:
    """One answer of ``respond``: used when ``when`` holds (or when it has none)."""

    __slots__ = ("when", "status", "headers", "body", "has_body", "where")

    def __init__(self, when: Expr | None, status: Any, headers: Any, body: Any, has_body: bool,
                 where: tuple[str | None, int]):
        self.when = when
        self.status = status
        self.headers = headers
        self.body = body
        self.has_body = has_body
        self.where = where

    @property
    def variables(self) -> frozenset[str]:
        used = self.status.variables | self.headers.variables | self.body.variables
        return used | self.when.variables if self.when is not None else used


class Flow:
    """Steps then the first respond case that holds. ``variables`` is every base variable the
    flow's expressions read, so the server builds only those (the ``request`` map is not built
    when nobody reads it)."""

    def __init__(self, steps: list, cases: list[Case]):
        self.steps = steps
        self.cases = cases
        used = frozenset().union(*(c.variables for c in cases), *(s.variables for s in steps))
        self.variables = used & frozenset(BASE_VARIABLES)
        # The whole answer is fixed when nothing in it is an expression: encode it now.
        self.fixed: Response | None = None
        one = cases[0]
        if not steps and len(cases) == 1 and one.when is None and one.status.is_const \
                and one.headers.is_const and one.body.is_const:
            self.fixed = self._build(one, one.status.value, one.headers.value, one.body.value)

    async def run(self, env: dict, ctx: RunContext) -> Response:
        if self.fixed is not None:
            return self.fixed
        for step in self.steps:
            result = await step.run(env, ctx)
            if step.id is not None:
                env[step.id] = result
        for case in self.cases:
            if case.when is not None:
                holds = case.when.evaluate(env)
                if not isinstance(holds, bool):
                    raise StepFailed(f"respond case at line {case.where[1]}: 'when' gave "
                                     f"{type(holds).__name__}, not true or false")
                if not holds:
                    continue
            return self._build(case, case.status.evaluate(env), case.headers.evaluate(env), case.body.evaluate(env))
        raise StepFailed("no respond case matched (end the list with a case without 'when')")

    def _build(self, case: Case, status: Any, headers: Any, body: Any) -> Response:
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise StepFailed(f"respond.status must be an integer from 200 to 599, got {status!r}")
        out: list[tuple[bytes, bytes]] = []
        content_type = None
        for k, v in (headers or {}).items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise StepFailed(f"respond header {k!r} must be a string")
            value = str(v)
            if "\r" in value or "\n" in value or "\0" in value:
                # Nearly always a request value passed on (a header injection attempt): the
                # request is refused, the answer is not built.
                raise HTTPError(400, f"the answer's {k} header cannot hold a line break")
            if k.lower() == "content-type":
                content_type = value
            out.append((k.lower().encode("latin-1"), value.encode("latin-1", "replace")))
        if not case.has_body or status in (204, 304):
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


def compile_flow(doc: YMap, *, root, secrets: Any, output: Any = None, concurrency: int = DEFAULT_SIZE) -> Flow:
    """The ``steps`` and ``respond`` parts of a flow file. ``output`` (an OutputContract) checks
    the bodies ``respond`` states literally."""
    allowed = set(BASE_VARIABLES)
    bulkhead = Bulkhead(str(doc.file), concurrency)     # shared by the flow's function steps
    steps = []
    raw_steps = doc.get("steps", [])
    if raw_steps is None:
        raw_steps = []
    if not isinstance(raw_steps, list):
        raise doc.error("'steps' must be a list", "steps")
    for i, raw in enumerate(raw_steps):
        step = compile_step(raw, raw_steps, i, root=root, allowed=frozenset(allowed), secrets=secrets,
                            bulkhead=bulkhead)
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
    if isinstance(respond, YList):
        if not respond:
            raise respond.error("'respond' lists at least one case")
        cases = [_compile_case(expect_map(raw, respond, i, "a respond case"), final, secrets, listed=True)
                 for i, raw in enumerate(respond)]
        for earlier, later in zip(cases, cases[1:]):
            if earlier.when is None:
                raise ConfigError(f"this respond case is never used: the case at line {earlier.where[1]} "
                                  f"has no 'when' and always answers", *later.where)
    else:
        cases = [_compile_case(expect_map(respond, doc, "respond", "'respond'"), final, secrets, listed=False)]
    if output is not None:
        for case in cases:
            _check_literal_body(case, output)
    return Flow(steps, cases)


def _compile_case(respond: YMap, allowed: frozenset[str], secrets: Any, *, listed: bool) -> Case:
    if not listed and "when" in respond:
        raise respond.error("'when' belongs to a case: write respond as a list of cases (- when: ...)", "when")
    check_keys(respond, ("when", "status", "headers", "body") if listed else ("status", "headers", "body"),
               "a respond case" if listed else "respond")
    when = None
    if "when" in respond:
        source = respond["when"]
        if not isinstance(source, str) or not source.strip():
            raise respond.error("'when' is a CEL condition, for example: body.amount > 100", "when")
        if source.lstrip().startswith("="):
            raise respond.error("'when' is always an expression: write it without '='", "when")
        when = compile_expr(source.strip(), respond.where("when"), allowed=allowed, secrets=secrets)
    status_raw = respond.get("status", 200)
    if isinstance(status_raw, bool) or not (isinstance(status_raw, int) or
                                            (isinstance(status_raw, str) and status_raw.startswith("="))):
        raise respond.error("'status' must be an integer or an expression", "status")
    if isinstance(status_raw, int) and not 200 <= status_raw <= 599:
        raise respond.error("'status' must be from 200 to 599", "status")
    status = compile_value(status_raw, respond.where("status"), allowed=allowed, secrets=secrets)
    headers_raw = respond.get("headers", {}) or {}
    if not isinstance(headers_raw, dict):
        raise respond.error("'headers' must be a mapping", "headers")
    for name in headers_raw:
        if not isinstance(name, str) or not is_token(name):
            raise headers_raw.error(f"bad header name {name!r}", name)
    headers = compile_value(headers_raw, respond.where("headers"), allowed=allowed, secrets=secrets)
    has_body = "body" in respond
    body = compile_value(respond.get("body"), respond.where("body"), allowed=allowed, secrets=secrets)
    return Case(when, encoded_only(status), encoded_only(headers), encoded_only(body), has_body, respond.where())


def _check_literal_body(case: Case, output: Any) -> None:
    """A body written literally must match the schema ``output`` declares for its status."""
    if not (case.status.is_const and case.body.is_const and case.has_body):
        return
    status, body = case.status.value, case.body.value
    problems = output.problems(status, body)
    if problems:
        first = problems[0]
        at = f" at {first['at']}" if first["at"] else ""
        raise ConfigError(f"respond body does not match output.{status}{at}: {first['problem']}",
                          *case.where)
