"""Flowlet: HTTP endpoint flows with per-endpoint security settings."""

__version__ = "0.1.0"
