"""Flowlet: HTTP endpoint flows with per-endpoint security settings."""

__version__ = "0.1.0"

from flowlet.flows.reject import Reject  # noqa: E402  (the one name function steps import)

__all__ = ["Reject", "__version__"]
