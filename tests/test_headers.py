"""The HTTP header grammar shared by CORS, CSRF, auth and flows."""

from __future__ import annotations

import pytest

from flowlet.headers import is_token, quoted_string_content, www_authenticate_basic, www_authenticate_bearer


@pytest.mark.parametrize("name", ["X-CSRF-TOKEN", "content-type", "a", "!#$%&'*+-.^_`|~09azAZ"])
def test_tokens(name):
    assert is_token(name)


@pytest.mark.parametrize("name", ["", "a b", "a:b", "a\n", "x\u00e9", "(x)", 'a"', "a,b", "a;b", "a\x00"])
def test_not_tokens(name):
    assert not is_token(name)


def test_quoted_string_content_escapes_quotes_and_backslashes_and_drops_controls():
    assert quoted_string_content('my "shop"\\x\r\n\x7f\x00') == 'my \\"shop\\"\\\\x'


def test_challenges():
    assert www_authenticate_bearer('a "b"') == b'Bearer realm="a \\"b\\""'
    assert www_authenticate_bearer("r", "invalid_token") == b'Bearer realm="r", error="invalid_token"'
    assert www_authenticate_basic("caf\u00e9") == 'Basic realm="caf\u00e9", charset="UTF-8"'.encode()
