"""The bounded, expiring cache behind the Basic and JWT verification caches.

Bounded twice: by its number of entries and by their estimated size in bytes, so that a
flood of large tokens cannot grow a worker's memory where a flood of small ones could not.
Reads are a dict lookup and a comparison; only inserts can sweep.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# What an entry costs besides its content: the key, the tuple, the dict slot, the result dict.
ENTRY_OVERHEAD = 512
# Each JSON value a comma or an opening bracket starts becomes a Python object (an int, a
# str, a dict...) of about this many bytes; bulky claims are mostly such small objects.
_PER_VALUE = 64


def json_cost(text: bytes) -> int:
    """Estimated bytes the decoded form of the JSON ``text`` takes in memory."""
    values = text.count(b",") + text.count(b"{") + text.count(b"[")
    return len(text) + _PER_VALUE * values


class ExpiringCache(Generic[K, V]):
    """``key -> value`` until a time the caller gives, at most ``max_entries`` entries and
    ``max_bytes`` of estimated size (the caller estimates each entry)."""

    __slots__ = ("entries", "max_entries", "max_bytes", "size", "hits", "misses")

    def __init__(self, max_entries: int, max_bytes: int):
        self.entries: dict[K, tuple[float, V, int]] = {}
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0            # lookups answered / not answered: read by the metrics
        self.misses = 0

    def get(self, key: K, now: float) -> V | None:
        """The value while ``now`` is before its end; an ended entry is dropped."""
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if now < entry[0]:
            self.hits += 1
            return entry[1]
        self._drop(key)
        self.misses += 1
        return None

    def put(self, key: K, until: float, value: V, *, size: int, now: float) -> None:
        """Store ``value`` until ``until``; one entry larger than the whole budget is not kept.

        At a bound, one sweep drops the ended entries and, if that freed too little, the oldest
        ones (dicts keep insertion order) down to seven eighths of the bound. The sweep is O(n)
        but runs at most once per eighth of the bound, so a flood of new entries costs O(1) per
        insert, not a scan each.
        """
        size += ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        self._drop(key)
        if len(self.entries) >= self.max_entries or self.size + size > self.max_bytes:
            try:
                self._sweep(now, size)
            except RuntimeError:    # another thread changed the dict mid-sweep: next insert retries
                pass
        self.entries[key] = (until, value, size)
        self.size += size

    def _sweep(self, now: float, incoming: int) -> None:
        for key in [k for k, (end, _, _) in list(self.entries.items()) if end <= now]:
            self._drop(key)
        entries_goal = self.max_entries - max(1, self.max_entries // 8)
        bytes_goal = self.max_bytes - max(incoming, self.max_bytes // 8)
        for key in list(self.entries):
            if len(self.entries) <= entries_goal and self.size <= bytes_goal:
                break
            self._drop(key)

    def _drop(self, key: K) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= entry[2]

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[K]:
        return iter(self.entries)
