"""Flowlet as an ASGI app, for ASGI servers other than the one `flowlet serve` runs:

    FLOWLET_WORKSPACE=/path/to/workspace uvicorn flowlet.asgi:app
    FLOWLET_WORKSPACE=/path/to/workspace hypercorn flowlet.asgi:app

It answers exactly as `flowlet serve` does (the same request pipeline). The workspace loads on
first access to ``app`` (so importing this module costs nothing); ``create_app`` is the same as
a factory (``uvicorn --factory flowlet.asgi:create_app``). FLOWLET_ACCESS_LOG=0 turns the access
log off, FLOWLET_LOG_LEVEL sets the log level. TLS, workers and reloads are the server's.
"""

from __future__ import annotations

from flowlet.server.app import FlowletApp, create_app

__all__ = ["app", "create_app"]

_app: FlowletApp | None = None


def __getattr__(name: str) -> FlowletApp:
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app
