"""The start block of one flow file as a form: read it, apply a submitted form, write it back.

YAML is edited in place with ruamel.yaml's round-trip mode, so comments, key order and the
rest of the file survive an edit. The file's version is a hash of its bytes: a form carries
the version it was read at, and a save against another version is a conflict.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

AUTH_CHOICES = ("open", "basic", "jwt")
SCOPE_CHOICES = ("none", "json", "cel")
CORS_CHOICES = ("none", "all", "selected")
MAX_FIELD = 4000                      # characters of one form field
MAX_SCOPE_DEPTH = 16                  # nesting of a JSON scope rule


class FormError(Exception):
    """Problems with the submitted values themselves: field -> message."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(problems.values()))
        self.problems = problems


def _yaml() -> YAML:
    y = YAML()                        # round trip: comments, order and quoting kept
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class StartBlock:
    """The form's values, as strings and booleans the way the page shows them."""

    auth: str = "open"
    basic_secret: str = ""
    jwt_secret: str = ""
    scope_kind: str = "none"
    scope_json: str = ""
    scope_expr: str = ""
    cors_allow: str = "none"
    cors_domains: str = ""
    cors_headers: str = "Content-Type"
    cors_credentials: bool = False
    cors_max_age: str = "300"
    csrf: bool = False
    extra: dict = field(default_factory=dict)     # method, path, token_cookie: shown, not edited


def _text_list(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _plain(value: object) -> object:
    """ruamel's commented containers -> plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load(path: Path) -> tuple[bytes, CommentedMap]:
    data = path.read_bytes()
    doc = _yaml().load(data.decode("utf-8"))
    if not isinstance(doc, CommentedMap) or not isinstance(doc.get("endpoint"), CommentedMap):
        raise ValueError("this flow file has no 'endpoint' mapping")
    return data, doc


def read_form(doc: CommentedMap) -> StartBlock:
    ep = doc["endpoint"]
    form = StartBlock(extra={"method": str(ep.get("method", "")).upper(), "path": str(ep.get("path", ""))})
    auth = ep.get("auth")
    if isinstance(auth, dict) and auth.get("type", "none") != "none":
        form.auth = str(auth.get("type"))
        if form.auth == "basic":
            form.basic_secret = str(auth.get("secret", ""))
        else:
            form.jwt_secret = str(auth.get("secret", ""))
        if "scope_expr" in auth:
            form.scope_kind, form.scope_expr = "cel", str(auth["scope_expr"])
        elif "scope" in auth:
            form.scope_kind, form.scope_json = "json", json.dumps(_plain(auth["scope"]))
        if "token_cookie" in auth:
            form.extra["token_cookie"] = str(auth["token_cookie"])
    cors = ep.get("cors")
    if isinstance(cors, dict):
        form.cors_allow = str(cors.get("allow", "selected" if "domains" in cors else "none"))
        form.cors_domains = _text_list(cors.get("domains"))
        if "headers" in cors:
            form.cors_headers = _text_list(cors.get("headers"))
        form.cors_credentials = cors.get("credentials") is True
        if "max_age" in cors:
            form.cors_max_age = str(cors["max_age"])
    form.csrf = ep.get("csrf") is True
    return form


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def parse_form(fields: dict[str, str]) -> StartBlock:
    """Submitted fields -> StartBlock; FormError for values that are wrong on their own."""
    problems: dict[str, str] = {}

    def text(name: str) -> str:
        value = fields.get(name, "").strip()
        if len(value) > MAX_FIELD:
            problems[name] = f"at most {MAX_FIELD} characters"
        return value

    def choice(name: str, choices: tuple[str, ...], default: str) -> str:
        value = fields.get(name, default)
        if value not in choices:
            problems[name] = f"choose one of {', '.join(choices)}"
            return default
        return value

    form = StartBlock(
        auth=choice("auth", AUTH_CHOICES, "open"), basic_secret=text("basic_secret"),
        jwt_secret=text("jwt_secret"), scope_kind=choice("scope_kind", SCOPE_CHOICES, "none"),
        scope_json=text("scope_json"), scope_expr=text("scope_expr"),
        cors_allow=choice("cors_allow", CORS_CHOICES, "none"), cors_domains=text("cors_domains"),
        cors_headers=text("cors_headers"), cors_credentials=fields.get("cors_credentials") == "on",
        cors_max_age=text("cors_max_age"), csrf=fields.get("csrf") == "on")
    if form.auth == "basic" and not form.basic_secret:
        problems["basic_secret"] = "pick the Basic secret whose users may call this endpoint"
    if form.auth == "jwt" and not form.jwt_secret:
        problems["jwt_secret"] = "pick the JWT secret that verifies the tokens"
    if form.auth != "open" and form.scope_kind == "json":
        if not form.scope_json:
            problems["scope"] = 'write a scope rule, e.g. "users:write" or {"any": ["a", "b"]}'
        else:
            try:
                if _depth(json.loads(form.scope_json)) > MAX_SCOPE_DEPTH:
                    problems["scope"] = f"scope rules nest at most {MAX_SCOPE_DEPTH} levels deep"
            except RecursionError:
                problems["scope"] = f"scope rules nest at most {MAX_SCOPE_DEPTH} levels deep"
            except ValueError as exc:
                hint = (' (a single scope is a JSON string: write it in double quotes, '
                        'e.g. "users:write")' if form.scope_json[:1] not in '"[{' else "")
                problems["scope"] = f"not valid JSON: {exc}{hint}"
    if form.auth != "open" and form.scope_kind == "cel" and not form.scope_expr:
        problems["scope"] = "write a CEL expression, e.g. 'admin' in scopes"
    if form.cors_allow != "none" and form.cors_max_age and not form.cors_max_age.isdigit():
        problems["cors_max_age"] = "a whole number of seconds, e.g. 300"
    if problems:
        raise FormError(problems)
    return form


def _put(m: CommentedMap, key: str, value: object, after: tuple[str, ...] = ()) -> None:
    """Set ``key``, keeping its place when it exists, else right after the last of ``after``."""
    if key in m:
        m[key] = value
        return
    keys = list(m.keys())
    pos = len(keys)
    for name in after:
        if name in keys:
            pos = keys.index(name) + 1
    m.insert(pos, key, value)


def _drop(m: CommentedMap, *keys: str) -> None:
    for key in keys:
        if key in m:
            del m[key]


def _as_list_or_text(old: object, text: str) -> object:
    """Comma text, or a YAML list when the file wrote a list."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(old, list):
        seq = CommentedSeq(items)
        return seq
    return ", ".join(items)


def apply_form(doc: CommentedMap, form: StartBlock) -> None:
    """Write the form's values into the endpoint block, in place."""
    ep = doc["endpoint"]
    if form.auth == "open":
        _drop(ep, "auth")
    else:
        auth = ep.get("auth")
        if not isinstance(auth, CommentedMap):
            auth = CommentedMap()
        _put(auth, "type", form.auth)
        _put(auth, "secret", form.basic_secret if form.auth == "basic" else form.jwt_secret, ("type",))
        if form.auth != "jwt":
            _drop(auth, "token_cookie")
        if form.scope_kind == "json":
            _drop(auth, "scope_expr")
            _put(auth, "scope", _flow_style(json.loads(form.scope_json)), ("secret",))
        elif form.scope_kind == "cel":
            _drop(auth, "scope")
            _put(auth, "scope_expr", form.scope_expr, ("secret",))
        else:
            _drop(auth, "scope", "scope_expr")
        _put(ep, "auth", auth, ("method", "path"))
    if form.cors_allow == "none":
        _drop(ep, "cors")
    else:
        cors = ep.get("cors")
        if not isinstance(cors, CommentedMap):
            cors = CommentedMap()
        _put(cors, "allow", form.cors_allow)
        if form.cors_allow == "selected":
            _put(cors, "domains", _as_list_or_text(cors.get("domains"), form.cors_domains), ("allow",))
        else:
            _drop(cors, "domains")
        _put(cors, "headers", _as_list_or_text(cors.get("headers"), form.cors_headers), ("allow", "domains"))
        if form.cors_credentials:
            _put(cors, "credentials", True, ("allow", "domains", "headers"))
        else:
            _drop(cors, "credentials")
        if form.cors_max_age:
            _put(cors, "max_age", int(form.cors_max_age), ("allow", "domains", "headers", "credentials"))
        else:
            _drop(cors, "max_age")
        _put(ep, "cors", cors, ("method", "path", "auth"))
    if form.csrf:
        _put(ep, "csrf", True, ("method", "path", "auth", "cors"))
    elif "csrf" in ep:
        ep["csrf"] = False


def _flow_style(value: object) -> object:
    """A JSON scope rule as YAML in flow style: ``scope: {any: [a, b]}`` reads like the JSON."""
    if isinstance(value, dict):
        m = CommentedMap((k, _flow_style(v)) for k, v in value.items())
        m.fa.set_flow_style()
        return m
    if isinstance(value, list):
        seq = CommentedSeq(_flow_style(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    return value


def dump(doc: CommentedMap) -> str:
    out = StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()


def field_lines(text: str) -> tuple[list[tuple[int, str]], tuple[int, int]]:
    """(line -> form field) pairs of the endpoint block, and the block's first and last line."""
    doc = _yaml().load(text)
    ep = doc["endpoint"]
    top = list(doc.keys())
    start = doc.lc.key("endpoint")[0] + 1
    i = top.index("endpoint")
    end = doc.lc.key(top[i + 1])[0] if i + 1 < len(top) else len(text.splitlines())
    out: list[tuple[int, str]] = []
    for key in ep:
        line = ep.lc.key(key)[0] + 1
        if key in ("auth", "cors"):
            out.append((line, "auth" if key == "auth" else "cors_allow"))
            sub = ep[key]
            if isinstance(sub, CommentedMap):
                for k in sub:
                    out.append((sub.lc.key(k)[0] + 1, _field(key, k, ep)))
        elif key == "csrf":
            out.append((line, "csrf"))
        else:
            out.append((line, ""))
    return sorted(out), (start, end)


def _field(block: str, key: str, ep: CommentedMap) -> str:
    if block == "auth":
        if key == "secret":
            return "jwt_secret" if ep["auth"].get("type") == "jwt" else "basic_secret"
        return {"scope": "scope", "scope_expr": "scope"}.get(key, "auth")
    return {"allow": "cors_allow", "domains": "cors_domains", "headers": "cors_headers",
            "credentials": "cors_credentials", "max_age": "cors_max_age"}.get(key, "cors_allow")


def field_at(text: str, line: int | None) -> str:
    """The form field an error at ``line`` of this flow file belongs to; "" when none."""
    if line is None:
        return ""
    try:
        pairs, (start, end) = field_lines(text)
    except Exception:              # a file ruamel cannot read back: show the error at the top
        return ""
    if not start <= line <= end:
        return ""
    before = [at for at, _ in pairs if at <= line]
    if not before:
        return ""
    names = {name for at, name in pairs if at == before[-1]}
    # keys written on one line (flow style) cannot tell which field an error belongs to
    return names.pop() if len(names) == 1 else ""


def flatten(doc: CommentedMap) -> dict[str, object]:
    """The endpoint block as ``{"cors.domains": ...}`` for the audit log's what-changed."""
    out: dict[str, object] = {}

    for key, value in (doc.get("endpoint") or {}).items():
        if isinstance(value, dict) and key in ("auth", "cors"):
            for k, v in value.items():
                out[f"{key}.{k}"] = _plain(v)
        else:
            out[str(key)] = _plain(value)
    return out


def changes(before: CommentedMap, after: CommentedMap) -> list[dict]:
    a, b = flatten(before), flatten(after)
    keys = list(dict.fromkeys([*b, *a]))
    return [{"field": k, "from": a.get(k), "to": b.get(k)} for k in keys if a.get(k) != b.get(k)]


def write_atomic(path: Path, text: str) -> None:
    """Replace the file in one rename: a reader sees the old or the new file, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
