"""Values in flows: literal JSON, or CEL expressions when a string starts with ``=``.

Everything is compiled once when the workspace loads. A compiled value is either a
:class:`Const` (its JSON bytes may be pre-encoded) or a tree of :class:`Expr`/:class:`MapValue`/
:class:`ListValue` nodes evaluated per request against a dict of variables.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
import re
from typing import Any

import cel

from flowlet.errors import ConfigError
from flowlet.source import YList, YMap

# The variables an expression may name, besides earlier steps' ids.
BASE_VARIABLES = ("request", "params", "query", "body", "auth")
_FROM_REQUEST = frozenset(BASE_VARIABLES)   # all of them carry what the client sent

_SECRET_CALL = re.compile(r"\bsecret\s*\(")
# `body`, `auth.user`, `params.id`: plain paths are dict lookups, no CEL call needed.
_PLAIN_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_RESERVED = frozenset({"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                       "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
                       "void", "while"})
_SECRET_LITERAL = re.compile(r"""\bsecret\s*\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)""")


class _ToFlowletLog(logging.Handler):
    """The CEL library logs through Python logging under ``cel`` (a Python function that raised,
    such as ``secret()`` for a secret deleted since load). Left alone, that record has no handler
    and Python prints it bare on stderr; passed to ``flowlet.expr`` it is one line of the JSON log."""

    def emit(self, record: logging.LogRecord) -> None:
        record.name = _log.name
        _log.handle(record)


_log = logging.getLogger("flowlet.expr")
_cel_log = logging.getLogger("cel")
_cel_log.addHandler(_ToFlowletLog())
_cel_log.propagate = False


class ExprError(Exception):
    """An expression failed while a request was being served (logged, never shown).

    ``from_request`` is set when the expression reads what the client sent (body, query,
    params, request, auth claims): a missing key or a wrong type there is the request's
    shape, answered 400, not a server error."""

    from_request = False


class RequestShapeError(ExprError):
    from_request = True


class Const:
    __slots__ = ("value",)
    is_const = True
    variables: frozenset[str] = frozenset()

    def __init__(self, value: Any):
        self.value = value

    def evaluate(self, env: dict) -> Any:
        return self.value


class Expr:
    """One compiled CEL program.

    CEL converts every variable it is given on each call, so only the variables the program
    names are passed; a plain path (``body``, ``auth.user``) skips CEL and walks the dicts.
    """

    __slots__ = ("source", "program", "variables", "secret_names", "_secrets", "_names", "_path", "_copy")
    is_const = False

    def __init__(self, source: str, program: Any, variables: frozenset[str], secret_names: tuple[str, ...],
                 secrets: Any = None):
        self.source = source
        self.program = program
        self.variables = variables
        self.secret_names = secret_names
        self._secrets = secrets
        self._names = tuple(sorted(variables))
        parts = tuple(source.split("."))
        self._path = parts if _PLAIN_PATH.match(source) and not _RESERVED & set(parts) else None
        self._copy = True         # see encoded_only()

    def evaluate(self, env: dict) -> Any:
        if self._path is not None:
            return self._lookup(env)
        try:
            if self.secret_names:
                ctx = cel.Context()
                ctx.update(env)
                ctx.add_function("secret", self._read_secret)
                return to_json(self.program.execute(ctx))
            return to_json(self.program.execute({k: env[k] for k in self._names if k in env}))
        except ExprError:
            raise
        except Exception as exc:  # the CEL runtime raises several kinds; none may escape as-is
            raise self._error(f"expression {self.source!r} failed: {exc}") from None

    def _error(self, message: str) -> ExprError:
        return RequestShapeError(message) if self.variables & _FROM_REQUEST else ExprError(message)

    def _lookup(self, env: dict) -> Any:
        value: Any = env
        for part in self._path:
            if not isinstance(value, dict) or part not in value:
                raise self._error(f"expression {self.source!r} failed: no such key {part!r}")
            value = value[part]
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise self._error(f"expression {self.source!r} failed: integer out of range")
        # a fresh copy: callers may change it without touching shared state
        return to_json(value) if self._copy else value

    def _read_secret(self, name: str) -> str:
        secret = self._secrets.get(name) if self._secrets is not None else None
        if secret is None or getattr(secret, "type", None) != "value":
            raise ExprError(f"secret {name!r} is not available")
        return secret.value


class MapValue:
    __slots__ = ("items", "variables")
    is_const = False

    def __init__(self, items: list[tuple[str, Any]]):
        self.items = items
        self.variables = frozenset().union(*(v.variables for _, v in items)) if items else frozenset()

    def evaluate(self, env: dict) -> Any:
        return {k: v.evaluate(env) for k, v in self.items}


class ListValue:
    __slots__ = ("items", "variables")
    is_const = False

    def __init__(self, items: list[Any]):
        self.items = items
        self.variables = frozenset().union(*(v.variables for v in items)) if items else frozenset()

    def evaluate(self, env: dict) -> Any:
        return [v.evaluate(env) for v in self.items]


def encoded_only(value: Any) -> Any:
    """Mark the plain paths in a compiled value whose result is only ever encoded (an answer's
    status, headers and body) and that read what the request brought (JSON data already):
    they skip the copy. Step results still get one, as they may hold what JSON cannot."""
    if isinstance(value, Expr):
        if value._path is not None and value._path[0] in _FROM_REQUEST:
            value._copy = False
    elif isinstance(value, MapValue):
        for _, item in value.items:
            encoded_only(item)
    elif isinstance(value, ListValue):
        for item in value.items:
            encoded_only(item)
    return value


def compile_expr(source: str, where: tuple[str | None, int], *, allowed: frozenset[str] | None = None,
                 secrets: Any = None, allow_secret: bool = True) -> Expr:
    """Compile one CEL expression (without the leading ``=``); errors name FILE:LINE."""
    file, line = where
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise _syntax_error(source, str(exc), file, line) from None
    variables = frozenset(program.variables())
    if allowed is not None:
        unknown = sorted(variables - allowed)
        if unknown:
            raise ConfigError(
                f"expression {source!r} names unknown variable(s) {', '.join(unknown)} "
                f"(available here: {', '.join(sorted(allowed))})", file, line)
    secret_names: tuple[str, ...] = ()
    if "secret" in program.functions() or _SECRET_CALL.search(source):
        if not allow_secret:
            raise ConfigError("secret() is not available in this expression", file, line)
        calls = len(_SECRET_CALL.findall(source))
        literals = [a or b for a, b in _SECRET_LITERAL.findall(source)]
        if calls != len(literals):
            raise ConfigError('secret() takes one literal name, for example secret("API_KEY")', file, line)
        for name in literals:
            if secrets is None:
                raise ConfigError(f"secret {name!r} cannot be checked: no secrets store", file, line)
            secret = secrets.get(name)
            if secret is None:
                raise ConfigError(f"secret {name!r} does not exist (create it with: flowlet secrets set "
                                  f"{name} -w DIR --type value --value-stdin)", file, line)
            if secret.type != "value":
                raise ConfigError(f"secret {name!r} is a {secret.type} secret; secret() needs a value secret",
                                  file, line)
        secret_names = tuple(literals)
    return Expr(source, program, variables, secret_names, secrets)


_PARSE_ERROR = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_QUOTED = re.compile(r"(?:input|at:?) '(.*?)'")


def _syntax_error(source: str, parser_message: str, file: str | None, line: int) -> ConfigError:
    """A CEL parse error told like a compiler would: one sentence, the expression, a caret.

    The parser reports every token it would have accepted; a person needs where and what.
    """
    found = _PARSE_ERROR.findall(parser_message)
    if not found:
        return ConfigError(f"invalid expression {source!r}: {parser_message.splitlines()[0]}", file, line)
    row, col, text = next((f for f in found if f[2].startswith("Syntax error")), found[0])
    lines = source.splitlines() or [""]
    shown = lines[min(int(row), len(lines)) - 1]
    caret = " " * min(max(int(col) - 1, 0), len(shown)) + "^"
    return ConfigError(f"invalid expression: {_one_sentence(text)}\n    {shown}\n    {caret}", file, line)


def _one_sentence(text: str) -> str:
    text = text.removeprefix("Syntax error: ")
    quoted = _QUOTED.search(text)
    token = quoted.group(1) if quoted else None
    if text.startswith("missing ") and token:
        missing = text.split(" at ", 1)[0]
        return f"{missing} at the end of the expression" if token == "<EOF>" else f"{missing} before {token!r}"
    if token == "<EOF>":
        return "the expression ends too early"
    if text.startswith("token recognition error") and token:
        return "unclosed string" if token[0] in "\"'" else f"unexpected character {token[0]!r}"
    if token:
        return f"unexpected {token!r}"
    return text.split(" expecting ", 1)[0].rstrip("!")


def compile_value(value: Any, where: tuple[str | None, int], *, allowed: frozenset[str] | None = None,
                  secrets: Any = None) -> Any:
    """Compile a YAML value: ``=``-strings become CEL, containers recurse, the rest is constant.

    Containers without any expression collapse into one :class:`Const`.
    """
    if isinstance(value, str):
        if value.startswith("=="):
            return Const(value[1:])  # "==x" escapes a literal string starting with "="
        if value.startswith("="):
            return compile_expr(value[1:].strip(), where, allowed=allowed, secrets=secrets)
        return Const(value)
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            w = value.where(k) if isinstance(value, YMap) else where
            items.append((str(k), compile_value(v, w, allowed=allowed, secrets=secrets)))
        if all(v.is_const for _, v in items):
            return Const({k: v.value for k, v in items})
        return MapValue(items)
    if isinstance(value, list):
        items = [compile_value(v, value.where(i) if isinstance(value, YList) else where,
                               allowed=allowed, secrets=secrets) for i, v in enumerate(value)]
        if all(v.is_const for v in items):
            return Const([v.value for v in items])
        return ListValue(items)
    if value is None or isinstance(value, (bool, int, float)):
        return Const(value)
    if isinstance(value, (_dt.date, _dt.datetime)):
        return Const(value.isoformat())
    raise ConfigError(f"unsupported value of type {type(value).__name__}", *where)


def to_json(value: Any) -> Any:
    """CEL results as JSON-able Python values (bytes -> base64, timestamps -> ISO 8601)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return f"{value.total_seconds()}s"
    return str(value)

