"""The expression layer: compiling CEL at load (FILE:LINE errors), evaluating per request."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import textwrap

import pytest

from flowlet.errors import ConfigError
from flowlet.expr import Const, Expr, ExprError, ListValue, MapValue, compile_expr, compile_value, to_json
from flowlet.secrets.model import BasicSecret, ValueSecret
from flowlet.source import load_yaml
from conftest import flowlet, make_workspace
from fakes import View

WHERE = ("flows/a.yaml", 7)


def compile_error(source: str, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        compile_expr(source, WHERE, **kwargs)
    return err.value


# ---- compile errors ------------------------------------------------------------------------

def test_a_syntax_error_names_file_and_line():
    assert str(compile_error("1 +")).startswith("flows/a.yaml:7: error: invalid expression: ")


def test_a_syntax_error_shows_the_expression_and_a_caret_under_the_column():
    assert compile_error("1 ++ 2").message == "invalid expression: unexpected '+'\n    1 ++ 2\n       ^"


def test_a_syntax_error_is_one_sentence_not_the_parser_token_list():
    message = compile_error("body.items[0 +").message
    assert message.splitlines()[0] == "invalid expression: the expression ends too early"
    assert "expecting" not in message and "IDENTIFIER" not in message


def test_a_missing_closing_bracket_is_named():
    assert compile_error("body.items[0").message.splitlines()[0] == \
        "invalid expression: missing ']' at the end of the expression"


def test_an_unclosed_string_is_named():
    assert compile_error('"abc').message.splitlines()[0] == "invalid expression: unclosed string"


def test_a_stray_character_is_named_with_its_column():
    assert compile_error("1 @ 2").message.splitlines()[1:] == ["    1 @ 2", "      ^"]


def test_the_caret_is_under_the_line_of_a_multi_line_expression():
    lines = compile_error("body.x ==\n  1 +* 2").message.splitlines()
    assert lines[1:] == ["      1 +* 2", "         ^"]


def test_check_prints_a_syntax_error_as_file_line_then_expression_and_caret(tmp_path):
    ws = make_workspace(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a}\nrespond:\n"
                                                   "  body: \"=body.items[0] ++ 1\"\n"})
    r = flowlet("check", cwd=ws)
    assert r.returncode == 1
    assert r.stderr.splitlines()[:3] == ["flows/a.yaml:3: error: invalid expression: unexpected '+'",
                                         "    body.items[0] ++ 1",
                                         "                   ^"]


def test_an_unknown_variable_is_an_error_listing_what_is_available():
    err = compile_error("auth.user + nope", allowed=frozenset({"auth", "body"}))
    assert err.line == 7
    assert err.message == "expression 'auth.user + nope' names unknown variable(s) nope (available here: auth, body)"


# ---- variables and evaluation --------------------------------------------------------------

def test_an_expression_knows_the_variables_it_uses():
    expr = compile_expr("params.id + size(body)", WHERE)
    assert expr.variables == frozenset({"params", "body"})


def test_only_the_variables_used_are_given_to_cel():
    expr = compile_expr("a + 1", WHERE)
    assert expr.evaluate({"a": 1, "unused": object()}) == 2


def test_a_plain_path_is_read_from_the_variables():
    assert compile_expr("auth.claims.sub", WHERE).evaluate({"auth": {"claims": {"sub": "alice"}}}) == "alice"


def test_a_plain_path_to_a_missing_key_fails_with_the_expression():
    with pytest.raises(ExprError, match=r"expression 'auth.nope' failed: no such key 'nope'"):
        compile_expr("auth.nope", WHERE).evaluate({"auth": {}})


def test_a_plain_path_result_is_a_copy():
    env = {"body": {"tags": ["a"]}}
    result = compile_expr("body", WHERE).evaluate(env)
    result["tags"].append("b")
    assert env["body"] == {"tags": ["a"]}


def test_a_reserved_word_is_not_taken_for_a_path():
    assert compile_expr("true", WHERE).evaluate({}) is True


def test_a_plain_path_refuses_an_integer_cel_could_not_hold():
    with pytest.raises(ExprError, match="integer out of range"):
        compile_expr("body.n", WHERE).evaluate({"body": {"n": 2**64}})


def test_a_runtime_error_becomes_an_expr_error_naming_the_expression():
    with pytest.raises(ExprError, match=r"expression '1 / params.n' failed"):
        compile_expr("1 / params.n", WHERE).evaluate({"params": {"n": 0}})


# ---- secret() ------------------------------------------------------------------------------

def test_secret_reads_a_value_secret():
    view = View(ValueSecret("API_KEY", "k1"))
    assert compile_expr('"Bearer " + secret("API_KEY")', WHERE, secrets=view).evaluate({}) == "Bearer k1"


def test_secret_follows_a_changed_value_without_recompiling():
    view = View(ValueSecret("API_KEY", "k1"))
    expr = compile_expr('secret("API_KEY")', WHERE, secrets=view)
    view.put(ValueSecret("API_KEY", "k2"))
    assert expr.evaluate({}) == "k2"


def test_secret_deleted_after_load_fails_the_request_not_the_server():
    view = View(ValueSecret("API_KEY", "k1"))
    expr = compile_expr('secret("API_KEY") + ""', WHERE, secrets=view)
    view.secrets.clear()
    with pytest.raises(ExprError, match="secret 'API_KEY' is not available"):
        expr.evaluate({})


def test_secret_of_a_missing_name_is_a_load_error_with_the_command_to_create_it():
    err = compile_error('secret("NOPE")', secrets=View())
    assert err.line == 7 and "secret 'NOPE' does not exist (create it with: flowlet secrets set NOPE" in err.message


def test_secret_needs_a_value_secret():
    err = compile_error('secret("team")', secrets=View(BasicSecret("team", {})))
    assert err.message == "secret 'team' is a basic secret; secret() needs a value secret"


def test_secret_takes_one_literal_name():
    err = compile_error('secret(body.name)', secrets=View())
    assert err.message == 'secret() takes one literal name, for example secret("API_KEY")'


def test_secret_without_a_store_cannot_be_checked():
    assert "no secrets store" in compile_error('secret("A")').message


def test_secret_is_refused_where_it_is_not_available():
    assert compile_error('secret("A") == "x"', allow_secret=False).message == \
        "secret() is not available in this expression"


# ---- compiling values ----------------------------------------------------------------------

def test_a_string_with_a_leading_equals_sign_is_an_expression():
    assert isinstance(compile_value("=1 + 1", WHERE), Expr)


def test_a_double_equals_sign_escapes_a_literal_string():
    value = compile_value("==x", WHERE)
    assert isinstance(value, Const) and value.value == "=x"


def test_a_container_without_expressions_folds_into_one_constant():
    doc = load_yaml("body:\n  a: [1, {b: two}]\n  c: null\n", "flows/a.yaml")
    value = compile_value(doc["body"], doc.where("body"))
    assert isinstance(value, Const) and value.value == {"a": [1, {"b": "two"}], "c": None}


def test_a_container_with_an_expression_stays_a_tree_and_collects_its_variables():
    doc = load_yaml("body:\n  id: =params.id\n  tags: [x, =body.tag]\n", "flows/a.yaml")
    value = compile_value(doc["body"], doc.where("body"))
    assert isinstance(value, MapValue) and isinstance(value.items[1][1], ListValue)
    assert value.variables == frozenset({"params", "body"})
    assert value.evaluate({"params": {"id": 3}, "body": {"tag": "t"}}) == {"id": 3, "tags": ["x", "t"]}


def test_a_compile_error_inside_a_container_names_the_line_of_its_key():
    doc = load_yaml("body:\n  a: 1\n  b: =1 +\n", "flows/a.yaml")
    with pytest.raises(ConfigError) as err:
        compile_value(doc["body"], doc.where("body"))
    assert err.value.line == 3


def test_a_yaml_date_becomes_an_iso_string():
    assert compile_value(datetime.date(2024, 2, 29), WHERE).value == "2024-02-29"


def test_to_json_turns_cel_values_into_json_values():
    assert to_json({1: b"\x00\x01", "t": datetime.timedelta(seconds=90), "l": (1, None)}) == {
        "1": "AAE=", "t": "90.0s", "l": [1, None]}


# ---- the CEL library's own log line --------------------------------------------------------

CEL_LOG_SCRIPT = textwrap.dedent("""
    from flowlet.expr import ExprError, compile_expr
    from flowlet.secrets.model import ValueSecret
    from flowlet.server.log import setup_logging

    class View:
        secrets = {"K": ValueSecret("K", "v")}
        def get(self, name):
            return self.secrets.get(name)

    setup_logging("info")
    view = View()
    expr = compile_expr('secret("K") + "x"', ("f.yaml", 1), secrets=view)
    view.secrets = {}
    try:
        expr.evaluate({})
    except ExprError:
        pass
""")


def test_the_cel_library_log_line_goes_through_the_json_log():
    proc = subprocess.run([sys.executable, "-c", CEL_LOG_SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines, "the failed secret() call should be logged"
    records = [json.loads(line) for line in lines]   # a raw line would not parse
    assert records[0]["logger"] == "flowlet.expr"
    assert "secret 'K' is not available" in records[0]["msg"]
