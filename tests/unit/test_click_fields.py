"""One contract for what a click keeps: the redirect cuts a hostile visitor's headers, ingest cuts
whatever reaches it, and both use the limits and the country rule of `linkpulse.events`."""

from __future__ import annotations

import pytest

from linkpulse.events import MAX_COUNTRY, MAX_LANG, MAX_REFERRER, MAX_UA, ClickEvent, country_code
from linkpulse.ingest.batch import click_row
from linkpulse.redirect.clicks import ClickMaker
from linkpulse.web.proxies import TrustedProxies

HOSTILE = {
    "user-agent": "Mozilla/5.0 " + "U" * 10_000,
    "referer": "https://a.example/" + "p" * 10_000 + "?secret=1",
    "accept-language": "de-" + "x" * 500 + ",en;q=0.5",
    "cf-ipcountry": "deu",
}


def test_redirect_and_ingest_keep_the_same_bounded_fields() -> None:
    maker = ClickMaker(TrustedProxies("203.0.113.0/24"), "cf-ipcountry", anonymize=True, tracing=None)
    made = maker.make("abc", 1, 1_700_000_000_000, "203.0.113.9", lambda name, default: HOSTILE.get(name, default))
    assert (len(made.ua), len(made.referrer), len(made.lang)) == (MAX_UA, MAX_REFERRER, MAX_LANG)
    assert made.country == ""  # three letters are not a country, not "DE"

    # A click that skipped the redirect's cuts (an old publisher, a hand-made message) is cut the same way.
    raw = ClickEvent(id="0190e0a0-0000-7000-8000-000000000001", code="abc", link_id=1, ts=made.ts,
                     ua=HOSTILE["user-agent"], referrer=HOSTILE["referer"], lang=HOSTILE["accept-language"],
                     country=HOSTILE["cf-ipcountry"])  # fmt: skip
    stored = click_row(raw)
    assert (len(stored.ua), len(stored.referrer), len(stored.lang)) == (MAX_UA, MAX_REFERRER, MAX_LANG)
    assert stored.country == ""
    assert click_row(made).ua == made.ua and click_row(made).lang == made.lang  # already cut: kept as made


@pytest.mark.parametrize(
    ("country", "expected"),
    [("de", "DE"), (" US ", "US"), ("", ""), ("XX", ""), ("T1", ""), ("DEU", ""), ("ÄÖ", ""), ("1a", "")],
)
def test_country_is_two_upper_case_letters_or_empty(country: str, expected: str) -> None:
    assert country_code(country) == expected
    assert len(country_code(country)) in (0, MAX_COUNTRY)
