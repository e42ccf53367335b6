"""In-process link cache: bounded, TTL'd, with negative entries for unknown codes."""

from __future__ import annotations

from cachetools import TTLCache

from linkpulse.links import LinkRecord

__all__ = ["MISS", "LinkCache"]

MISS = object()
"""Returned by `LinkCache.get` when the cache knows nothing about a code."""


class LinkCache:
    """Positive and negative entries in two TTL caches: unknown codes live shorter and are capped apart."""

    def __init__(self, max_entries: int, ttl: float, negative_max_entries: int, negative_ttl: float) -> None:
        self._links: TTLCache[str, LinkRecord] = TTLCache(max_entries, ttl)
        self._unknown: TTLCache[str, bool] = TTLCache(negative_max_entries, negative_ttl)
        # Lowest version a code may be served at, from LinkChanged events: a stale Redis copy
        # (a write-through that failed) must not come back after the event evicted it.
        self._floors: TTLCache[str, int] = TTLCache(negative_max_entries, ttl)
        self.generation = 0
        """Bumped by every eviction: a load that began before one must not cache what it read."""

    def get(self, code: str) -> LinkRecord | object | None:
        """The cached record, None for a known-unknown code, or MISS."""
        record = self._links.get(code)
        if record is not None:
            return record
        if code in self._unknown:
            return None
        return MISS

    def put(self, code: str, record: LinkRecord | None) -> None:
        if record is None:
            self._unknown[code] = True
        else:
            self._unknown.pop(code, None)
            self._links[code] = record

    def evict(self, code: str, version: int | None = None) -> None:
        self.generation += 1
        self._links.pop(code, None)
        self._unknown.pop(code, None)
        if version is not None and version > self._floors.get(code, 0):
            self._floors[code] = version

    def floor(self, code: str) -> int:
        """The lowest version of `code` an event has announced (0 when none)."""
        return self._floors.get(code, 0)

    def clear(self) -> None:
        self.generation += 1
        self._links.clear()
        self._unknown.clear()

    def __len__(self) -> int:
        return len(self._links)
