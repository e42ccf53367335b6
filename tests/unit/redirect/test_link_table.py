"""The packed link table behind the cache: open addressing over arrays, records in one arena."""

from __future__ import annotations

import pytest

from linkpulse.links import LinkRecord
from linkpulse.redirect.link_table import MAX_RECORD_BYTES, LinkTable


def link(code: str, version: int = 1, url: str | None = None) -> LinkRecord:
    code = str(code)  # a record holds a plain str, whatever the key looked up with
    return LinkRecord(id=len(code), code=code, url=url or f"https://example.com/{code}", version=version)


class SameHash(str):
    """A code whose hash collides with every other SameHash: the probe must compare codes, not hashes."""

    def __hash__(self) -> int:
        return 42


def test_many_links_are_found_after_every_part_has_grown() -> None:
    table = LinkTable()
    codes = [f"c{i}" for i in range(20_000)]
    for code in codes:
        assert table.put(code, link(code))
    assert len(table) == 20_000
    assert all(table.get(code) == link(code) for code in codes)
    assert table.get("absent") is None


def test_a_million_links_would_cost_about_a_hundred_bytes_each() -> None:
    # The table's own buffers, counted exactly: the figure the 300 MB per process target rests on.
    table = LinkTable()
    count = 50_000
    for i in range(count):
        code = f"b{i:09d}"
        table.put(code, LinkRecord(id=1_000_000 + i, code=code, url=f"https://bench.example/landing/{i}"))
    assert table.nbytes / count < 110


def test_removed_links_are_gone_and_can_come_back() -> None:
    table = LinkTable()
    for code in ("a", "b", "c"):
        table.put(code, link(code))
    assert table.remove("b") and not table.remove("b")
    assert table.get("b") is None and len(table) == 2
    assert table.get("a") == link("a") and table.get("c") == link("c")
    table.put("b", link("b", version=2))
    assert table.get("b") == link("b", version=2) and len(table) == 3


def test_replacing_a_link_keeps_one_entry_with_the_new_record() -> None:
    table = LinkTable()
    table.put("x", link("x", version=1))
    table.put("x", link("x", version=2))
    assert len(table) == 1
    assert table.get("x") == link("x", version=2)
    assert table.pop_any() == "x" and table.pop_any() is None


def test_codes_with_one_hash_are_told_apart_by_their_records() -> None:
    table = LinkTable()
    codes = [SameHash(f"s{i}") for i in range(40)]  # one probe chain, grown past its first size
    for code in codes:
        table.put(code, link(code))
    assert all(table.get(code) == link(code) for code in codes)
    assert table.get(SameHash("s-absent")) is None
    # Removing one in the middle of the chain must not cut off the ones probed after it.
    assert table.remove(codes[3])
    assert table.get(codes[3]) is None
    assert all(table.get(code) == link(code) for code in codes[4:])


def test_pop_any_drains_every_link_once() -> None:
    table = LinkTable()
    codes = {f"p{i}" for i in range(3_000)}
    for code in codes:
        table.put(code, link(code))
    table.remove("p7")
    popped = [table.pop_any() for _ in range(len(codes) - 1)]
    assert sorted(popped) == sorted(codes - {"p7"})  # type: ignore[type-var]
    assert table.pop_any() is None and len(table) == 0
    assert all(table.get(code) is None for code in codes)


def test_a_record_too_long_to_pack_is_refused_and_not_half_kept() -> None:
    table = LinkTable()
    table.put("big", link("big"))
    huge = link("big", version=2, url="https://example.com/" + "x" * MAX_RECORD_BYTES)
    assert not table.put("big", huge)
    assert table.get("big") is None and len(table) == 0


@pytest.mark.parametrize("code", ["", "0"])
def test_codes_whose_hash_is_the_empty_marker_still_work(code: str) -> None:
    table = LinkTable()
    assert hash("") == 0  # the empty slot's marker: such a hash is stored as 1
    table.put(code, link(code))
    assert table.get(code) == link(code)
