"""The bounded, expiring dict behind the Basic and JWT verification caches.

Reads stay a plain ``dict.get`` on the request path (the caller checks the expiry it stored);
only inserts go through :func:`remember`, which keeps the dict under its bound.
"""

from __future__ import annotations

from itertools import islice


def remember(cache: dict, key: bytes, until: float, value: object, *, limit: int, now: float) -> None:
    """Store ``(until, value)`` under ``key``, keeping at most ``limit`` entries.

    At the bound, one sweep drops the expired entries and, if that freed too little, the
    oldest eighth (dicts keep insertion order). The sweep is O(n) but runs at most once per
    ``limit // 8`` inserts, so a flood of new tokens costs O(1) per insert, not a scan each.
    """
    if len(cache) >= limit:
        try:
            for k in [k for k, (end, _) in list(cache.items()) if end <= now]:
                cache.pop(k, None)
            excess = len(cache) - (limit - max(1, limit // 8))
            if excess > 0:
                for k in list(islice(iter(cache), excess)):
                    cache.pop(k, None)
        except RuntimeError:        # another thread changed the dict mid-sweep: next insert retries
            pass
    cache[key] = (until, value)
