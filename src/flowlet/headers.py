"""HTTP header grammar (RFC 9110): tokens, quoted strings, and the authentication challenges
built from them.

A token is what header names, cookie names (RFC 6265) and authentication schemes are made of.
"""

from __future__ import annotations

import re

# RFC 9110 section 5.6.2: token = 1*tchar
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TOKEN_CHARS = "letters, digits and !#$%&'*+-.^_`|~"


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


def quoted_string_content(text: str) -> str:
    """The inside of an RFC 9110 quoted-string: escape ``\\`` and ``"``, drop control characters."""
    cleaned = "".join(ch for ch in text if ch >= " " and ch != "\x7f")
    return cleaned.replace("\\", "\\\\").replace('"', '\\"')


def www_authenticate_bearer(realm: str, error: str | None = None) -> bytes:
    """``Bearer realm="..."[, error="..."]`` (RFC 6750 section 3), for 401 and 403."""
    value = f'Bearer realm="{quoted_string_content(realm)}"'
    if error:
        value += f', error="{error}"'
    return value.encode("utf-8")


def www_authenticate_basic(realm: str) -> bytes:
    """``Basic realm="...", charset="UTF-8"`` (RFC 7617 section 2)."""
    return f'Basic realm="{quoted_string_content(realm)}", charset="UTF-8"'.encode("utf-8")
