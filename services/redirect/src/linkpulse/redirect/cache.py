"""In-process link cache: bounded, aged out within a TTL, with negative entries for unknown codes.

A million cached links should fit a redirect process in under 300 MB (issue 4). Measured in process, a
`cachetools` TTLCache of decoded records costs about 580 bytes a link (a linked-list node, an OrderedDict
entry and a size entry beside each record); a plain dict of decoded records about 350. So links are kept
as their msgpack bytes (the Redis value's encoding: about 214 bytes a link with its key) in two plain
dicts, and decoded on each hit: 0.2 µs, next to the 20 µs or more a redirect costs. Under the bench a
worker pays about 280 bytes a link, fragmentation included (docs/performance.md).

Ageing is by generation rather than per entry: every ttl/2 the young dict becomes the old one and the
old one is dropped, so nothing is served more than `ttl` after it was read. When the cache is full,
room is made in the old generation first (then the young one is aged early), so the oldest go first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache
from prometheus_client import Gauge

from linkpulse.links import LinkRecord, decode_record, encode_record

__all__ = ["CACHED_LINKS", "MISS", "LinkCache"]

CACHED_LINKS = Gauge("linkpulse_redirect_cached_links", "Links held in this process's cache (read at scrape time)")
MISS = object()
"""Returned by `LinkCache.get` when the cache knows nothing about a code."""


class LinkCache:
    """Links in two generations of encoded records; unknown codes in a TTL cache that lives shorter."""

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
        self._young: dict[str, bytes] = {}
        self._old: dict[str, bytes] = {}
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
        data = self._young.get(code)
        if data is None:
            data = self._old.get(code)
        if data is not None:
            return decode_record(data)
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
        self._old.pop(code, None)
        if code not in self._young and len(self._young) + len(self._old) >= self._max:
            if not self._old:
                # The young generation alone fills the cache: age it early (the clock's rotation still
                # drops it on time, so it lives less than ttl, never more).
                self._old, self._young = self._young, {}
            self._old.popitem()
        self._young[code] = encode_record(record)

    def evict(self, code: str, version: int | None = None) -> None:
        self.generation += 1
        self._young.pop(code, None)
        self._old.pop(code, None)
        self._unknown.pop(code, None)
        if version is not None and version > self._floors.get(code, 0):
            self._floors[code] = version

    def floor(self, code: str) -> int:
        """The lowest version of `code` an event has announced (0 when none)."""
        return self._floors.get(code, 0)

    def clear(self) -> None:
        self.generation += 1
        self._young.clear()
        self._old.clear()
        self._unknown.clear()

    def __len__(self) -> int:
        if self._clock() >= self._rotate_at:
            self._age()
        return len(self._young) + len(self._old)

    def _age(self) -> None:
        # Rotations stay on a fixed grid (start + k·ttl/2), so an entry read just after one rotation is
        # dropped at the second one: its age never reaches ttl however rarely the cache is touched.
        now = self._clock()
        if now >= self._rotate_at + self._half_ttl:
            # Idle past two rotations: the young entries are as old as the old ones.
            self._young, self._old = {}, {}
        else:
            self._old, self._young = self._young, {}
        self._rotate_at += self._half_ttl * ((now - self._rotate_at) // self._half_ttl + 1)
