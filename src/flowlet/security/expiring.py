"""The bounded, expiring dict behind the Basic and JWT verification caches.

Reads stay a plain ``dict.get`` on the request path (the caller checks the expiry it stored);
only inserts go through :func:`remember`, which keeps the dict under its bound.
"""

from __future__ import annotations


def remember(cache: dict, key: bytes, until: float, value: object, *, limit: int, now: float) -> None:
    """Store ``(until, value)`` under ``key``; at the bound, drop expired entries, then the oldest."""
    if len(cache) >= limit:
        for k, (end, _) in list(cache.items()):     # list(): another thread may insert
            if end <= now:
                cache.pop(k, None)
        while len(cache) >= limit:
            try:
                cache.pop(next(iter(cache)), None)
            except (StopIteration, RuntimeError):
                break
    cache[key] = (until, value)
