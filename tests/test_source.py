"""The YAML source layer: line numbers, refused YAML features, typed field readers, unknown keys."""

from __future__ import annotations

import pytest

from flowlet.errors import ConfigError
from flowlet.source import (YList, YMap, check_keys, expect_map, get_bool, get_int, get_number, get_str,
                            get_str_list, load_yaml)
from conftest import flowlet, make_workspace

FILE = "flows/a.yaml"


def load(text: str):
    return load_yaml(text, FILE)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load(text)
    return err.value


def read_error(reader, text: str, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as err:
        reader(load(text), *args, **kwargs)
    return str(err.value)


# ---- line numbers --------------------------------------------------------------------------

def test_mappings_know_their_file_and_first_line():
    doc = load("# a comment\n\nendpoint:\n  path: /a\n")
    assert isinstance(doc["endpoint"], YMap)
    assert (doc.file, doc.line) == (FILE, 3)
    assert doc["endpoint"].where() == (FILE, 4)


def test_each_key_knows_its_own_line():
    doc = load("a: 1\n\nb:\n  c: 2\n  d: 3\n")
    assert doc.where("b") == (FILE, 3)
    assert doc["b"].where("d") == (FILE, 5)


def test_an_unknown_key_falls_back_to_the_mapping_line():
    doc = load("x: 1\ny:\n  z: 2\n")
    assert doc["y"].where("nope") == (FILE, 3)


def test_each_list_item_knows_its_own_line():
    doc = load("steps:\n  - a\n\n  - b\n  - {c: 1}\n")
    steps = doc["steps"]
    assert isinstance(steps, YList)
    assert [steps.where(i)[1] for i in range(3)] == [2, 4, 5]
    assert steps.where(7) == (FILE, 2)


def test_an_error_built_from_a_key_names_file_and_line():
    doc = load("a: 1\nb: 2\n")
    assert str(doc.error("bad b", "b")) == f"{FILE}:2: error: bad b"


# ---- what the loader refuses ---------------------------------------------------------------

def test_a_syntax_error_names_its_line():
    err = error("a: 1\nb: [1, 2\nc: 3\n")
    assert err.file == FILE and err.line == 3
    assert err.message.startswith("invalid YAML")


def test_a_duplicate_key_is_refused_at_its_second_line():
    err = error("a: 1\nb: 2\na: 3\n")
    assert (err.line, err.message) == (3, "duplicate key 'a'")


def test_a_key_that_is_not_a_scalar_is_refused():
    err = error("? [1, 2]\n: x\n")
    assert err.message == "mapping keys must be strings"


def test_an_alias_is_refused_at_the_line_that_uses_it():
    err = error("base: &b {x: 1}\nother:\n  copy: *b\n")
    assert (err.file, err.line) == (FILE, 3)
    assert "aliases are not allowed (*b)" in err.message


def test_a_merge_key_through_an_alias_is_refused():
    err = error("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert err.line == 3 and "alias" in err.message


def test_an_alias_bomb_is_refused_before_it_expands():
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    err = error("\n".join(lines) + "\n")
    assert err.line == 2 and "alias" in err.message


def test_an_asterisk_inside_a_value_is_just_text():
    assert load('origins: ["https://*.example.com"]\nnote: 2 * 3\n') == {
        "origins": ["https://*.example.com"], "note": "2 * 3"}


def test_check_reports_an_alias_bomb_as_an_error(tmp_path):
    bomb = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    bomb += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    ws = make_workspace(tmp_path, {"flows/a.yaml": "endpoint: {method: GET, path: /a}\n" + "\n".join(bomb) + "\n"})
    r = flowlet("check", str(ws), timeout=30)
    assert r.returncode == 1
    assert "flows/a.yaml:3: error: YAML aliases are not allowed (*a)" in r.stderr


# ---- typed readers -------------------------------------------------------------------------

def test_get_str_returns_the_string():
    assert get_str(load("name: shop\n"), "name") == "shop"


def test_get_str_refuses_another_type_at_the_key_line():
    assert read_error(get_str, "a: 1\nname: 5\n", "name") == f"{FILE}:2: error: 'name' must be a string, not an integer"


def test_get_str_checks_choices():
    message = read_error(get_str, "mode: loud\n", "mode", choices=("quiet", "normal"))
    assert message.endswith("'mode' must be one of quiet, normal; got 'loud'")


def test_a_missing_key_with_a_default_gives_the_default():
    assert get_str(load("a: 1\n"), "name", None) is None
    assert get_int(load("a: 1\n"), "n", 7) == 7


def test_a_missing_required_key_is_an_error_at_the_mapping():
    assert read_error(get_str, "x:\n  a: 1\n", "name") == f"{FILE}:1: error: missing required key 'name'"


def test_get_bool_refuses_a_string_that_looks_like_a_boolean():
    assert read_error(get_bool, "secure: 'yes'\n", "secure").endswith("'secure' must be true or false, not a string")


def test_get_int_refuses_a_boolean():
    assert read_error(get_int, "n: true\n", "n").endswith("'n' must be an integer, not a boolean")


def test_get_int_checks_its_range():
    assert read_error(get_int, "n: 0\n", "n", minimum=1).endswith("'n' must be at least 1")
    assert read_error(get_int, "n: 99\n", "n", maximum=10).endswith("'n' must be at most 10")
    assert get_int(load("n: 10\n"), "n", minimum=1, maximum=10) == 10


def test_get_number_takes_integers_and_floats_but_not_strings():
    assert get_number(load("t: 1.5\n"), "t") == 1.5
    assert get_number(load("t: 2\n"), "t") == 2
    assert read_error(get_number, "t: '2'\n", "t").endswith("'t' must be a number, not a string")


def test_get_str_list_splits_a_comma_string():
    assert get_str_list(load("m: 'GET, POST,,'\n"), "m") == ["GET", "POST"]


def test_get_str_list_takes_a_list_and_drops_blank_items():
    assert get_str_list(load("m: [GET, ' ', POST]\n"), "m") == ["GET", "POST"]


def test_get_str_list_refuses_a_non_string_item_at_its_line():
    assert read_error(get_str_list, "m:\n  - GET\n  - 5\n", "m") == \
        f"{FILE}:3: error: items of 'm' must be strings, not an integer"


def test_expect_map_names_the_parent_key_line():
    doc = load("a: 1\nendpoint: [1]\n")
    with pytest.raises(ConfigError) as err:
        expect_map(doc["endpoint"], doc, "endpoint", "'endpoint'")
    assert str(err.value) == f"{FILE}:2: error: 'endpoint' must be a mapping, not a list"


# ---- unknown keys --------------------------------------------------------------------------

def test_an_unknown_key_is_reported_at_its_own_line():
    doc = load("x:\n  a: 1\n  zzz: 2\n")
    with pytest.raises(ConfigError) as err:
        check_keys(doc["x"], ("a", "b"), "x")
    assert (err.value.line, err.value.message) == (3, "unknown key 'zzz' in x (allowed: a, b)")


def test_an_unknown_key_suggests_the_near_spelling():
    with pytest.raises(ConfigError) as err:
        check_keys(load("metod: GET\n"), ("method", "url"), "an http step")
    assert err.value.message == "unknown key 'metod' in an http step (did you mean 'method'?)"


def test_an_unknown_key_suggests_the_key_it_abbreviates():
    with pytest.raises(ConfigError) as err:
        check_keys(load("fn: m:f\n"), ("id", "function", "input", "http"), "a step")
    assert err.value.message.endswith("(did you mean 'function'?)")


def test_an_abbreviation_of_two_keys_suggests_neither():
    with pytest.raises(ConfigError) as err:
        check_keys(load("hd: 1\n"), ("headers", "hidden"), "x")
    assert err.value.message.endswith("(allowed: headers, hidden)")


def test_known_keys_pass():
    check_keys(load("a: 1\nb: 2\n"), ("a", "b", "c"), "x")
