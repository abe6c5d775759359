"""YAML that remembers where each value came from, and small typed field readers.

Every mapping loads as a :class:`YMap` and every list as a :class:`YList`; both know their
file and line, and the line of each key or item, so any config model can raise a
:class:`ConfigError` that names ``FILE:LINE`` without knowing about files.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

import yaml

from flowlet.errors import ConfigError


class YMap(dict):
    """A dict loaded from YAML: ``.file``, ``.line`` and ``.key_lines[key]``."""

    file: str | None = None
    line: int = 1
    key_lines: dict

    def where(self, key: str | None = None) -> tuple[str | None, int]:
        if key is not None and key in getattr(self, "key_lines", {}):
            return self.file, self.key_lines[key]
        return self.file, self.line

    def error(self, message: str, key: str | None = None) -> ConfigError:
        file, line = self.where(key)
        return ConfigError(message, file, line)


class YList(list):
    """A list loaded from YAML: ``.file``, ``.line`` and ``.item_lines[i]``."""

    file: str | None = None
    line: int = 1
    item_lines: list

    def where(self, index: int | None = None) -> tuple[str | None, int]:
        if index is not None and index < len(getattr(self, "item_lines", [])):
            return self.file, self.item_lines[index]
        return self.file, self.line

    def error(self, message: str, index: int | None = None) -> ConfigError:
        file, line = self.where(index)
        return ConfigError(message, file, line)


# libyaml's parser when PyYAML was built with it: most of the load time of a big workspace.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """SafeLoader that builds YMap/YList with line numbers and refuses duplicate keys."""

    file: str | None = None


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)
    result = YMap()
    result.file = loader.file
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise ConfigError("mapping keys must be strings", loader.file, line)
        if key in result:
            raise ConfigError(f"duplicate key {key!r}", loader.file, line)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _construct_list(loader: _Loader, node: yaml.SequenceNode) -> YList:
    result = YList(loader.construct_object(child, deep=True) for child in node.value)
    result.file = loader.file
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_list)


def load_yaml(text: str, file: str) -> Any:
    """Parse one YAML document; syntax errors become ConfigError with the file and line."""
    if "*" in text:   # no alias can be written without one: most files skip the scan
        _refuse_aliases(text, file)
    loader = _Loader(text)
    loader.file = file
    try:
        return loader.get_single_data()
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", file, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file, 1) from None
    finally:
        loader.dispose()


def _refuse_aliases(text: str, file: str) -> None:
    """Aliases (``*name``) are refused: a few lines of them expand to gigabytes (an "alias bomb"),
    and a flow file never needs to repeat a value that way."""
    try:
        for event in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"YAML aliases are not allowed (*{event.anchor}): write the value out",
                                  file, event.start_mark.line + 1)
    except yaml.YAMLError:
        return   # a syntax error: the real load below reports it with its line


# ---- typed field readers: every config model reads through these ------------------------

_MISSING = object()


def expect_map(value: Any, parent: YMap | YList | None, key: Any, what: str) -> YMap:
    """``value`` must be a mapping (``parent``/``key`` locate it for the error)."""
    if isinstance(value, YMap):
        return value
    raise _error_at(parent, key, f"{what} must be a mapping, not {_type_name(value)}")


def check_keys(m: YMap, allowed: Iterable[str], what: str) -> None:
    """Unknown keys are errors: a typo must never silently turn a check off."""
    allowed = tuple(allowed)
    for key in m:
        if key not in allowed:
            hint = _close_match(str(key), allowed)
            extra = f" (did you mean {hint!r}?)" if hint else f" (allowed: {', '.join(allowed)})"
            raise m.error(f"unknown key {key!r} in {what}{extra}", key)


def get_str(m: YMap, key: str, default: Any = _MISSING, *, choices: Iterable[str] | None = None) -> Any:
    value = _get(m, key, default)
    if value is default and default is not _MISSING:
        return value
    if not isinstance(value, str):
        raise m.error(f"{key!r} must be a string, not {_type_name(value)}", key)
    if choices is not None:
        choices = tuple(choices)
        if value not in choices:
            raise m.error(f"{key!r} must be one of {', '.join(choices)}; got {value!r}", key)
    return value


def get_bool(m: YMap, key: str, default: Any = _MISSING) -> Any:
    value = _get(m, key, default)
    if value is default and default is not _MISSING:
        return value
    if not isinstance(value, bool):
        raise m.error(f"{key!r} must be true or false, not {_type_name(value)}", key)
    return value


def get_int(m: YMap, key: str, default: Any = _MISSING, *, minimum: int | None = None,
            maximum: int | None = None) -> Any:
    value = _get(m, key, default)
    if value is default and default is not _MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise m.error(f"{key!r} must be an integer, not {_type_name(value)}", key)
    return _in_range(m, key, value, minimum, maximum)


def get_number(m: YMap, key: str, default: Any = _MISSING, *, minimum: float | None = None) -> Any:
    value = _get(m, key, default)
    if value is default and default is not _MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise m.error(f"{key!r} must be a number, not {_type_name(value)}", key)
    return _in_range(m, key, value, minimum, None)


def get_str_list(m: YMap, key: str, default: Any = _MISSING) -> Any:
    """A list of strings, written as a YAML list or as one string with commas ("a, b")."""
    value = _get(m, key, default)
    if value is default and default is not _MISSING:
        return value
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _error_at(value, i, f"items of {key!r} must be strings, not {_type_name(item)}")
            if item.strip():
                out.append(item.strip())
        return out
    raise m.error(f"{key!r} must be a string with commas or a list of strings", key)


def _in_range(m: YMap, key: str, value: Any, minimum: Any, maximum: Any) -> Any:
    if minimum is not None and value < minimum:
        raise m.error(f"{key!r} must be at least {minimum}", key)
    if maximum is not None and value > maximum:
        raise m.error(f"{key!r} must be at most {maximum}", key)
    return value


def _get(m: YMap, key: str, default: Any) -> Any:
    if key in m:
        return m[key]
    if default is _MISSING:
        raise m.error(f"missing required key {key!r}")
    return default


def _error_at(parent: Any, key: Any, message: str) -> ConfigError:
    if isinstance(parent, (YMap, YList)):
        return parent.error(message, key)
    return ConfigError(message)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            YMap: "a mapping", YList: "a list", dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def _close_match(word: str, options: tuple[str, ...]) -> str | None:
    """The option a typo most likely meant: a near spelling, else the one option it abbreviates
    (``fn`` for ``function``)."""
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if found:
        return found[0]
    abbreviated = [o for o in options if len(word) >= 2 and _is_abbreviation(word.lower(), o.lower())]
    return abbreviated[0] if len(abbreviated) == 1 else None


def _is_abbreviation(word: str, option: str) -> bool:
    """``word`` starts like ``option`` and the rest of its letters follow in order in it."""
    if not option.startswith(word[0]) or len(word) >= len(option):
        return False
    rest = iter(option[1:])
    return all(ch in rest for ch in word[1:])
