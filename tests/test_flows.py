"""Flows: compiling steps and respond at load (FILE:LINE errors), running them per request."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from flowlet.errors import ConfigError, HTTPError
from flowlet.flows.flow import Flow, compile_flow
from flowlet.flows.steps import FunctionStep, HttpStep, RunContext, StepFailed
from flowlet.source import load_yaml

FILE = "flows/a.yaml"

FUNCTIONS = '''
import asyncio

def add(a, b):
    return {"sum": a + b}

async def shout(text):
    await asyncio.sleep(0)
    return text.upper()

NOT_CALLABLE = 3
'''


@pytest.fixture
def root(tmp_path) -> Path:
    """A workspace folder with a module of step functions (a fresh name: modules are cached)."""
    (tmp_path / "stepfns").mkdir()
    (tmp_path / "stepfns" / "__init__.py").write_text("")
    (tmp_path / "stepfns" / "calc.py").write_text(FUNCTIONS)
    return tmp_path


def flow(text: str, root: Path) -> Flow:
    return compile_flow(load_yaml(textwrap.dedent(text), FILE), root=root, secrets=None)


def flow_error(text: str, root: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        flow(text, root)
    return err.value


def run(f: Flow, env: dict | None = None):
    return asyncio.run(f.run(dict(env or {}), RunContext()))


# ---- step compile errors -------------------------------------------------------------------

# Each case: (flow file, line of the error, the whole message or, ending in "...", its start).
STEP_ERRORS = [
    pytest.param("steps:\n  - id: total\n    fn: stepfns.calc:add\n",
                 3, "unknown key 'fn' in a step (did you mean 'function'?)",
                 id="a_misspelt_step_key_is_named_at_its_own_line_with_a_suggestion"),
    pytest.param("steps:\n  - htp: {url: 'https://example.com'}\n",
                 2, "unknown key 'htp' in a step (did you mean 'http'?)",
                 id="a_misspelt_http_key_is_named_with_a_suggestion"),
    pytest.param("steps:\n  - id: x\n",
                 2, "a step needs exactly one of 'function' or 'http'",
                 id="a_step_with_no_kind_needs_function_or_http"),
    pytest.param("steps:\n  - function: stepfns.calc:add\n    http: {url: 'https://e.com'}\n",
                 2, "a step needs exactly one of 'function' or 'http'",
                 id="a_step_with_both_kinds_is_refused"),
    pytest.param("steps:\n  - http: {url: 'https://e.com'}\n    input: {}\n",
                 3, "unknown key 'input' in an http step (allowed: id, http)",
                 id="an_input_key_in_an_http_step_is_refused_at_its_line"),
    pytest.param("steps:\n  - id: my-step\n    function: stepfns.calc:add\n",
                 2, "step id 'my-step' must be an identifier (letters, digits, _)",
                 id="a_step_id_must_be_an_identifier"),
    pytest.param("steps:\n  - id: body\n    function: stepfns.calc:add\n",
                 2, "step id 'body' is already taken...",
                 id="a_step_id_may_not_shadow_a_variable"),
    pytest.param("steps:\n  - function: stepfns.calc.add\n",
                 2, "function must be written module:callable...",
                 id="a_function_must_be_written_module_colon_callable"),
    pytest.param("steps:\n  - function: stepfns.nope:add\n",
                 2, "cannot import 'stepfns.nope'...",
                 id="a_function_module_that_does_not_exist_is_a_load_error"),
    pytest.param("steps:\n  - function: stepfns.calc:sub\n",
                 2, "'stepfns.calc' has no attribute 'sub'",
                 id="a_function_attribute_that_does_not_exist_is_a_load_error"),
    pytest.param("steps:\n  - function: stepfns.calc:NOT_CALLABLE\n",
                 2, "'stepfns.calc:NOT_CALLABLE' is not callable",
                 id="a_function_target_must_be_callable"),
    pytest.param("steps:\n  - function: stepfns.calc:add\n    input: [1, 2]\n",
                 3, "'input' must be a mapping of keyword arguments",
                 id="function_input_must_be_a_mapping"),
    pytest.param("steps:\n  - function: stepfns.calc:add\n    input: {a: =later.sum, b: 1}\n"
                 "  - id: later\n    function: stepfns.calc:add\n",
                 3, "expression 'later.sum' names unknown variable(s) later...",
                 id="a_step_expression_may_only_name_earlier_steps"),
    pytest.param("steps:\n  - http:\n      method: FETCH\n      url: https://e.com\n",
                 3, "unknown HTTP method 'FETCH'",
                 id="an_unknown_http_method_is_refused"),
    pytest.param("steps:\n  - http:\n      url: ftp://e.com/x\n",
                 3, "'url' must start with http:// or https://",
                 id="a_literal_http_url_must_be_http_or_https"),
]


@pytest.mark.parametrize("text, line, message", STEP_ERRORS)
def test_step_compile_error(root, text, line, message):
    err = flow_error(text, root)
    assert (err.file, err.line) == (FILE, line)
    if message.endswith("..."):
        assert err.message.startswith(message[:-3])
    else:
        assert err.message == message


def test_an_http_step_compiles_with_its_defaults(root):
    step = flow("steps:\n  - http: {url: 'https://e.com'}\n", root).steps[0]
    assert isinstance(step, HttpStep)
    assert (step.method, step.timeout_s, step.body) == ("GET", 10.0, None)


# ---- respond -------------------------------------------------------------------------------

def test_a_respond_without_expressions_is_encoded_at_load(root):
    f = flow("respond:\n  status: 201\n  body: {ok: true}\n", root)
    assert f.fixed is not None
    assert (f.fixed.status, f.fixed.body) == (201, b'{"ok":true}')
    assert run(f) is f.fixed


def test_a_json_body_gets_a_json_content_type(root):
    answer = run(flow("respond:\n  body: [1, \"é\"]\n", root))
    assert answer.headers == [(b"content-type", b"application/json")]
    assert answer.body == '[1,"é"]'.encode()


def test_a_string_body_with_a_text_content_type_is_sent_as_text(root):
    answer = run(flow("respond:\n  headers: {Content-Type: text/plain}\n  body: hello\n", root))
    assert (answer.headers, answer.body) == ([(b"content-type", b"text/plain")], b"hello")


def test_a_respond_without_body_sends_none(root):
    assert run(flow("respond:\n  status: 200\n", root)).body == b""


def test_a_204_sends_no_body_even_when_one_is_written(root):
    answer = run(flow("respond:\n  status: 204\n  body: {x: 1}\n", root))
    assert (answer.status, answer.body) == (204, b"")


def test_respond_evaluates_expressions_against_the_variables(root):
    f = flow("respond:\n  status: =params.code\n  headers: {X-Id: =params.id}\n  body: {id: =params.id}\n", root)
    assert f.fixed is None
    answer = run(f, {"params": {"id": 7, "code": 202}})
    assert (answer.status, answer.headers[0], answer.body) == (202, (b"x-id", b"7"), b'{"id":7}')


def test_a_literal_status_out_of_range_is_a_load_error(root):
    err = flow_error("respond:\n  body: 1\n  status: 600\n", root)
    assert (err.line, err.message) == (3, "'status' must be from 200 to 599")


def test_a_status_that_is_a_string_is_a_load_error(root):
    assert flow_error("respond:\n  status: '200'\n", root).message == "'status' must be an integer or an expression"


def test_a_computed_status_out_of_range_fails_the_request(root):
    with pytest.raises(StepFailed, match="respond.status must be an integer from 200 to 599"):
        run(flow("respond:\n  status: =params.code\n", root), {"params": {"code": 99}})


def test_a_computed_header_with_a_line_break_refuses_the_request(root):
    with pytest.raises(HTTPError, match="cannot hold a line break") as err:
        run(flow("respond:\n  headers: {X-A: =body.v}\n", root), {"body": {"v": "a\r\nSet-Cookie: x=1"}})
    assert err.value.status == 400


def test_a_bad_header_name_is_a_load_error_at_its_line(root):
    err = flow_error("respond:\n  headers:\n    X-Ok: a\n    'Bad Name': b\n", root)
    assert (err.line, err.message) == (4, "bad header name 'Bad Name'")


def test_an_unknown_respond_key_is_refused_with_a_suggestion(root):
    err = flow_error("respond:\n  stauts: 200\n", root)
    assert (err.line, err.message) == (2, "unknown key 'stauts' in respond (did you mean 'status'?)")


# ---- running steps -------------------------------------------------------------------------

def one_step(root: Path, function: str, input: str, body: str) -> Flow:
    """A flow with one function step named ``out``, whose respond body is ``body``."""
    return flow(f"steps:\n  - id: out\n    function: {function}\n    input: {input}\n"
                f"respond:\n  body: {body}\n", root)


def test_a_sync_function_step_result_is_seen_by_respond(root):
    f = one_step(root, "stepfns.calc:add", "{a: =body.a, b: 2}", "=out.sum")
    assert isinstance(f.steps[0], FunctionStep) and not f.steps[0].is_async
    assert run(f, {"body": {"a": 40}}).body == b"42"


def test_an_async_function_step_is_awaited(root):
    f = one_step(root, "stepfns.calc:shout", "{text: =params.name}", "=out")
    assert f.steps[0].is_async
    assert run(f, {"params": {"name": "ada"}}).body == b'"ADA"'


def test_a_flow_asks_only_for_the_base_variables_it_reads(root):
    assert one_step(root, "stepfns.calc:add", "{a: =params.a, b: 1}", "=out").variables == frozenset({"params"})
