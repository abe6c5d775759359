"""flowlet.yaml ``console:``: who may sign in to the console (a Basic secret), and for how long."""

from __future__ import annotations

from dataclasses import dataclass

from flowlet.errors import ConfigError
from flowlet.secrets.model import valid_name
from flowlet.source import YMap, check_keys, get_int, get_str

DEFAULT_IDLE_S = 1800            # a session unused this long ends
DEFAULT_ABSOLUTE_S = 28800       # and every session ends after a working day


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    users: str                   # the Basic secret whose users may sign in
    idle_s: int = DEFAULT_IDLE_S
    absolute_s: int = DEFAULT_ABSOLUTE_S


def parse_console_settings(raw: object) -> ConsoleSettings | None:
    """``console: {users: NAME, idle_s: S, absolute_s: S}``; absent or null: no console."""
    if raw is None:
        return None
    if not isinstance(raw, YMap):
        raise ConfigError("'console' must be a mapping such as {users: console-users}")
    check_keys(raw, ("users", "idle_s", "absolute_s"), "console")
    if "users" not in raw:
        raise raw.error("console needs 'users': the name of a Basic secret whose users may sign in")
    users = get_str(raw, "users")
    if not valid_name(users):
        raise raw.error(f"'users' must be a secret name (letters, digits, '.', '_', '-'); got {users!r}",
                        "users")
    idle = get_int(raw, "idle_s", DEFAULT_IDLE_S, minimum=60, maximum=86400)
    absolute = get_int(raw, "absolute_s", DEFAULT_ABSOLUTE_S, minimum=60, maximum=7 * 86400)
    if idle > absolute:
        raise raw.error("'idle_s' cannot be longer than 'absolute_s'", "idle_s")
    return ConsoleSettings(users, idle, absolute)
