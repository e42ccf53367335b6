"""The local link cache: negative entries, eviction generations and version floors."""

from __future__ import annotations

from tests.clock import Clock

from linkpulse.links import LinkRecord
from linkpulse.redirect.cache import HOT_ENTRIES, MISS, LinkCache


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


def link(code: str, version: int = 1) -> LinkRecord:
    return LinkRecord(id=1, code=code, url=f"https://example.com/{code}", version=version)


def test_a_link_is_served_for_less_than_the_ttl_however_the_reads_fall() -> None:
    clock = Clock(1000.0)
    cache = LinkCache(max_entries=10, ttl=60, negative_max_entries=10, negative_ttl=5, clock=clock)
    cache.put("early", link("early"))  # read at the start of a generation: the longest-lived case
    clock.now += 29.9
    cache.put("late", link("late"))  # read at the end of the same generation
    for step in (0.0, 29.9, 59.8):
        clock.now = 1000.0 + step
        assert cache.get("early") == link("early")
    clock.now = 1060.0  # two rotations after "early" was read: exactly its ttl
    assert cache.get("early") is MISS
    assert cache.get("late") is MISS  # read 30.1 s ago: a generation is ttl/2 wide, so never older than ttl


def test_an_idle_cache_forgets_everything_older_than_the_ttl() -> None:
    clock = Clock(1000.0)
    cache = LinkCache(max_entries=10, ttl=60, negative_max_entries=10, negative_ttl=5, clock=clock)
    cache.put("x", link("x"))
    clock.now += 45  # one rotation due: x is old, still served
    assert cache.get("x") == link("x")
    cache.put("y", link("y"))
    clock.now += 3600  # nothing touched it for an hour
    assert cache.get("y") is MISS and cache.get("x") is MISS
    assert len(cache) == 0
    cache.put("z", link("z"))  # the grid of rotations moved on: a fresh entry lives its full generation
    clock.now += 29
    assert cache.get("z") == link("z")


def test_a_full_cache_drops_the_older_generation_first_and_never_exceeds_its_bound() -> None:
    clock = Clock(1000.0)
    cache = LinkCache(max_entries=4, ttl=60, negative_max_entries=10, negative_ttl=5, clock=clock)
    for code in "abc":
        cache.put(code, link(code))
    clock.now += 30  # a, b, c become the old generation
    for code in "defg":
        cache.put(code, link(code))
        assert len(cache) <= 4
    assert [cache.get(code) is not MISS for code in "defg"] == [True] * 4
    assert all(cache.get(code) is MISS for code in "abc")
    cache.put("h", link("h"))  # only the young generation is left: it is aged early to make room
    assert len(cache) == 4 and cache.get("h") == link("h")


def test_replacing_a_link_keeps_one_entry_with_the_new_record() -> None:
    clock = Clock(1000.0)
    cache = LinkCache(max_entries=2, ttl=60, negative_max_entries=10, negative_ttl=5, clock=clock)
    cache.put("x", link("x", version=1))
    clock.now += 30  # x is in the old generation now
    cache.put("x", link("x", version=2))
    cache.put("y", link("y"))
    assert len(cache) == 2
    assert cache.get("x") == link("x", version=2) and cache.get("y") == link("y")


def test_unknown_codes_age_out_on_their_own_shorter_ttl() -> None:
    clock = Clock(1000.0)
    cache = LinkCache(max_entries=10, ttl=60, negative_max_entries=10, negative_ttl=5, clock=clock)
    cache.put("nope", None)
    assert cache.get("nope") is None
    clock.now += 5
    assert cache.get("nope") is MISS


def test_a_decoded_hot_copy_never_outlives_its_link() -> None:
    clock = Clock(1000.0)
    cache = LinkCache(max_entries=3, ttl=60, negative_max_entries=10, negative_ttl=5, clock=clock)
    for code in "abc":
        cache.put(code, link(code))
        assert cache.get(code) == link(code)  # read once: now also held decoded
    cache.evict("a")
    assert cache.get("a") is MISS
    cache.put("b", link("b", version=2))
    assert cache.get("b") == link("b", version=2)
    clock.now += 30  # b and c become the old generation
    cache.put("d", link("d"))
    cache.put("e", link("e"))  # full: room is made in the old generation
    assert sum(cache.get(code) is MISS for code in "bc") == 1
    assert len(cache) == 3
    clock.now += 30  # the old generation is dropped: its hot copies with it
    assert all(cache.get(code) is MISS for code in "bc")
    assert cache.get("d") == link("d")


def test_the_hot_copies_are_bounded() -> None:
    cache = LinkCache(max_entries=HOT_ENTRIES * 2, ttl=60, negative_max_entries=10, negative_ttl=5)
    codes = [f"h{i}" for i in range(HOT_ENTRIES + 10)]
    for code in codes:
        cache.put(code, link(code))
    assert all(cache.get(code) == link(code) for code in codes)
    assert len(cache._hot) <= HOT_ENTRIES
    assert all(cache.get(code) == link(code) for code in codes)  # all still cached, packed
