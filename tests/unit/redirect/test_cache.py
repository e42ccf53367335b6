"""The local link cache: negative entries, eviction generations and version floors."""

from __future__ import annotations

from linkpulse.links import LinkRecord
from linkpulse.redirect.cache import MISS, LinkCache


def make_cache() -> LinkCache:
    return LinkCache(max_entries=10, ttl=60, negative_max_entries=10, negative_ttl=60)


def test_unknown_codes_are_remembered_apart_from_links() -> None:
    cache = make_cache()
    assert cache.get("x") is MISS
    cache.put("x", None)
    assert cache.get("x") is None
    record = LinkRecord(id=1, code="x", url="https://example.com")
    cache.put("x", record)
    assert cache.get("x") == record


def test_eviction_bumps_the_generation_and_raises_the_version_floor() -> None:
    cache = make_cache()
    cache.put("x", LinkRecord(id=1, code="x", url="https://example.com"))
    before = cache.generation
    cache.evict("x", 3)
    assert cache.get("x") is MISS
    assert cache.generation > before
    assert cache.floor("x") == 3
    cache.evict("x", 2)  # an older event arriving late never lowers the floor
    assert cache.floor("x") == 3
    assert cache.floor("other") == 0
