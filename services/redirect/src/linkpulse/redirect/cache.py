"""In-process link cache: bounded, aged out within a TTL, with negative entries for unknown codes.

A million cached links must fit a redirect process in under 300 MB (issue 4). They are kept packed, as
encoded records in `LinkTable`s (about 100 bytes a link; a dict of msgpack bytes cost about 280 under
load, a cachetools TTLCache of records about 580), and the few thousand links being read right now are
also kept decoded in a small dict in front, so a hot redirect costs one dict lookup.

Ageing is by generation rather than per entry: every ttl/2 the young table becomes the old one and the
old one is dropped, so nothing is served more than `ttl` after it was read. When the cache is full,
room is made in the old generation first (then the young one is aged early), so the oldest go first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache
from prometheus_client import Gauge

from linkpulse.links import LinkRecord
from linkpulse.redirect.link_table import LinkTable

__all__ = ["CACHED_LINKS", "CACHE_BYTES", "HOT_ENTRIES", "MISS", "LinkCache"]

CACHED_LINKS = Gauge("linkpulse_redirect_cached_links", "Links held in this process's cache (read at scrape time)")
CACHE_BYTES = Gauge(
    "linkpulse_redirect_cache_bytes", "Bytes of the packed link tables of this process's cache (read at scrape time)"
)
MISS = object()
"""Returned by `LinkCache.get` when the cache knows nothing about a code."""
HOT_ENTRIES = 8192
"""Decoded records kept in front of the tables: about 2 MB, and under a Zipf-like load most requests."""


class LinkCache:
    """Links in two generations of packed records, the hottest also decoded; unknown codes apart, shorter-lived."""

    def __init__(
        self,
        max_entries: int,
        ttl: float,
        negative_max_entries: int,
        negative_ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("the link cache needs max_entries >= 1 and ttl > 0")
        self._max = max_entries
        self._half_ttl = ttl / 2
        self._clock = clock
        self._young = LinkTable()
        self._old = LinkTable()
        # Decoded copies of records the tables hold: whatever leaves a table leaves this too.
        self._hot: dict[str, LinkRecord] = {}
        self._rotate_at = clock() + self._half_ttl
        self._unknown: TTLCache[str, bool] = TTLCache(negative_max_entries, negative_ttl, timer=clock)
        # Lowest version a code may be served at, from LinkChanged events: a stale Redis copy
        # (a write-through that failed) must not come back after the event evicted it.
        self._floors: TTLCache[str, int] = TTLCache(negative_max_entries, ttl, timer=clock)
        self.generation = 0
        """Bumped by every eviction: a load that began before one must not cache what it read."""

    def get(self, code: str) -> LinkRecord | object | None:
        """The cached record, None for a known-unknown code, or MISS."""
        if self._clock() >= self._rotate_at:
            self._age()
        record = self._hot.get(code)
        if record is not None:
            return record
        record = self._young.get(code) or self._old.get(code)
        if record is not None:
            if len(self._hot) >= HOT_ENTRIES:
                # Cleared rather than aged entry by entry: it refills with what is being read.
                self._hot.clear()
            self._hot[code] = record
            return record
        if code in self._unknown:
            return None
        return MISS

    def put(self, code: str, record: LinkRecord | None) -> None:
        if record is None:
            self._unknown[code] = True
            return
        self._unknown.pop(code, None)
        if self._clock() >= self._rotate_at:
            self._age()
        self._hot.pop(code, None)
        self._old.remove(code)
        if len(self._young) + len(self._old) >= self._max and self._young.get(code) is None:
            if not self._old:
                # The young generation alone fills the cache: age it early (the clock's rotation still
                # drops it on time, so it lives less than ttl, never more).
                self._old, self._young = self._young, LinkTable()
            self._hot.pop(self._old.pop_any() or "", None)
        self._young.put(code, record)

    def evict(self, code: str, version: int | None = None) -> None:
        self.generation += 1
        self._hot.pop(code, None)
        self._young.remove(code)
        self._old.remove(code)
        self._unknown.pop(code, None)
        if version is not None and version > self._floors.get(code, 0):
            self._floors[code] = version

    def floor(self, code: str) -> int:
        """The lowest version of `code` an event has announced (0 when none)."""
        return self._floors.get(code, 0)

    def clear(self) -> None:
        self.generation += 1
        self._young, self._old = LinkTable(), LinkTable()
        self._hot.clear()
        self._unknown.clear()

    def __len__(self) -> int:
        if self._clock() >= self._rotate_at:
            self._age()
        return len(self._young) + len(self._old)

    @property
    def nbytes(self) -> int:
        """Bytes of both generations' tables."""
        return self._young.nbytes + self._old.nbytes

    def _age(self) -> None:
        # Rotations stay on a fixed grid (start + k·ttl/2), so an entry read just after one rotation is
        # dropped at the second one: its age never reaches ttl however rarely the cache is touched.
        now = self._clock()
        if now >= self._rotate_at + self._half_ttl:
            # Idle past two rotations: the young entries are as old as the old ones.
            self._young, self._old = LinkTable(), LinkTable()
        else:
            self._old, self._young = self._young, LinkTable()
        # The hot copies may be of old-generation links, dropped just now.
        self._hot.clear()
        self._rotate_at += self._half_ttl * ((now - self._rotate_at) // self._half_ttl + 1)
