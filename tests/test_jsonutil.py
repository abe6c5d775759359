"""The strict JSON decoder every client-sent document goes through."""

from __future__ import annotations

import httpx
import pytest

from flowlet.jsonutil import StrictJSON

BODY = StrictJSON(max_int_digits=19, int64=True)
TOKEN = StrictJSON(max_int_digits=40, unique_keys=True, max_depth=4)


@pytest.mark.parametrize("text", [
    '"\\ud800"', '"\\udc00"', '"a\\ud83d"', '"\\ude00\\ud83d"', '{"\\ud800": 1}', '["ok", "\\uDBFF x"]',
])
def test_a_lone_surrogate_escape_is_refused(text):
    for decoder in (BODY, TOKEN):
        with pytest.raises(ValueError):
            decoder.decode(text)


@pytest.mark.parametrize("text,value", [
    ('"\\ud83d\\ude00"', "\U0001F600"), ('"\\uD83D\\uDE00"', "\U0001F600"), ('"\\\\ud800"', "\\ud800"),
    ('"\\ud7ff"', "\ud7ff"), ('"\\u00e9"', "\u00e9"),
])
def test_pairs_and_lookalikes_are_accepted(text, value):
    assert BODY.decode(text) == value


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", "-Infinity", "1e999", "[-1e999]"])
def test_non_finite_numbers_are_refused(text):
    with pytest.raises(ValueError):
        BODY.decode(text)


def test_body_integers_are_64_bit():
    assert BODY.decode("[9223372036854775807, -9223372036854775808]") == [2**63 - 1, -(2**63)]
    for text in ("9223372036854775808", "-9223372036854775809", "9" * 5000):
        with pytest.raises(ValueError):
            BODY.decode(text)


def test_token_integers_are_bounded_by_digits_only():
    assert TOKEN.decode("1" + "0" * 39) == 10**39
    with pytest.raises(ValueError):
        TOKEN.decode("1" + "0" * 40)


def test_duplicate_keys_are_refused_only_where_asked():
    assert BODY.decode('{"a": 1, "a": 2}') == {"a": 2}
    with pytest.raises(ValueError, match="duplicate"):
        TOKEN.decode('{"a": 1, "a": 2}')


def test_depth_is_bounded_where_asked_and_brackets_in_strings_do_not_count():
    assert TOKEN.decode('[[[["[[[[[[[["]]]]') == [[[["[[[[[[[["]]]]
    with pytest.raises(ValueError, match="deeply"):
        TOKEN.decode("[[[[[]]]]]")


def test_a_lone_surrogate_in_a_request_body_is_a_400_through_the_server(tmp_path):
    from conftest import assert_json_error, make_workspace, run_server

    ws = make_workspace(tmp_path, {
        "flowlet.yaml": "name: surrogates\n",
        "flows/echo.yaml": """
            endpoint: {method: POST, path: /echo}
            respond: {body: {got: "=body"}}
        """,
    })
    with run_server(ws) as srv:
        url = srv.url + "/api/echo"
        for raw in (b'{"a": "\\ud800"}', b'["\\udfff"]', b'{"\\ud800": 1}'):
            resp = httpx.post(url, content=raw, headers={"content-type": "application/json"})
            assert_json_error(resp, 400, "request body is not valid JSON")
        resp = httpx.post(url, content=b'{"a": "\\ud83d\\ude00"}', headers={"content-type": "application/json"})
        assert resp.status_code == 200 and resp.json() == {"got": {"a": "\U0001F600"}}
    assert "Traceback" not in srv.stderr
