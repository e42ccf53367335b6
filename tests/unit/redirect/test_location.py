"""The Location every door writes: header-safe bytes only, and query forwarding that keeps the target's own."""

from __future__ import annotations

import pytest

from linkpulse.links import LinkRecord
from linkpulse.redirect.location import location_of, with_query


def link(url: str, *, forward_query: bool = True) -> LinkRecord:
    return LinkRecord(id=1, code="c", url=url, forward_query=forward_query)


def header_safe(value: str) -> bool:
    return all(0x21 <= ord(ch) <= 0x7E for ch in value)


def test_the_fragment_stays_last_when_a_query_is_forwarded() -> None:
    assert location_of(link("https://t.example/a#f"), b"u=1") == "https://t.example/a?u=1#f"
    assert location_of(link("https://t.example/a?x=1#f"), b"u=1") == "https://t.example/a?x=1&u=1#f"


def test_a_key_the_target_has_is_not_forwarded_and_the_targets_value_wins() -> None:
    url = "https://t.example/a?utm_source=owner&x=1"
    assert location_of(link(url), b"utm_source=visitor&y=2") == f"{url}&y=2"
    # Compared decoded: `utm%5Fsource` and `utm_source` are one key; nothing left means the target as is.
    assert location_of(link(url), b"utm%5Fsource=visitor&x") == url


def test_forwarded_pairs_keep_their_order_and_empty_pairs_are_dropped() -> None:
    assert with_query("https://t.example/", "b=2&&a=1&b=3") == "https://t.example/?b=2&a=1&b=3"
    assert with_query("https://t.example/p?", "a=1") == "https://t.example/p?a=1"
    assert with_query("https://t.example/p?x=1&", "a=1") == "https://t.example/p?x=1&a=1"


def test_a_hash_in_the_query_stays_data_not_a_second_fragment() -> None:
    assert with_query("https://t.example/a#f", "q=a#b") == "https://t.example/a?q=a%23b#f"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"a=%0d%0aSet-Cookie:x", "https://t.example/?a=%0d%0aSet-Cookie:x"),  # already escaped: kept as is
        (b"a=\r\nSet-Cookie: x", "https://t.example/?a=%0D%0ASet-Cookie:%20x"),
        (b"a=\x00\x01\x7f", "https://t.example/?a=%00%01%7F"),
        (b"a=b c\td", "https://t.example/?a=b%20c%09d"),
        (b"q=\xc3\xa9", "https://t.example/?q=%C3%A9"),  # UTF-8 as its bytes
        (b"q=\xff\xfe", "https://t.example/?q=%FF%FE"),  # not UTF-8: each byte as itself
    ],
)
def test_control_bytes_spaces_and_non_ascii_in_a_forwarded_query_go_out_percent_encoded(
    query: bytes, expected: str
) -> None:
    location = location_of(link("https://t.example/"), query)
    assert location == expected
    assert header_safe(location)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://t.example/straße", "https://t.example/stra%C3%9Fe"),
        ("https://t.example/日本", "https://t.example/%E6%97%A5%E6%9C%AC"),
        ("https://t.example/a\r\nb", "https://t.example/a%0D%0Ab"),
        ("https://t.example/a\x7fb\x85c", "https://t.example/a%7Fb%C2%85c"),
        ("https://t.example/a\u00a0b", "https://t.example/a%C2%A0b"),
    ],
)
def test_a_target_with_bytes_a_header_cannot_hold_goes_out_percent_encoded(url: str, expected: str) -> None:
    # Records are checked before they are cached; this is the second line, the one every door shares.
    location = location_of(link(url, forward_query=False), b"")
    assert location == expected
    assert header_safe(location)


def test_a_plain_target_goes_out_unchanged_and_without_a_query_unless_forwarded() -> None:
    url = "https://t.example/a?x=%20y#top"
    assert location_of(link(url, forward_query=False), b"u=1") is url
    assert location_of(link(url), b"") is url
