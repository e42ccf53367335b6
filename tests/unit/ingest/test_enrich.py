"""Enrichment rules on real user agents, referrers, countries and IPs; no servers."""

from __future__ import annotations

import pytest

from linkpulse.ingest.enrich import (
    Enrichment,
    clean_text,
    enrich_user_agent,
    normalize_ip,
    referrer_host,
)

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
IPAD_SAFARI = (
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (CHROME_WINDOWS, Enrichment(browser="Chrome", os="Windows", device="desktop", is_bot=False)),
        (FIREFOX_MAC, Enrichment(browser="Firefox", os="Mac OS X", device="desktop", is_bot=False)),
        (IPHONE_SAFARI, Enrichment(browser="Mobile Safari", os="iOS", device="mobile", is_bot=False)),
        (IPAD_SAFARI, Enrichment(browser="Mobile Safari", os="iOS", device="tablet", is_bot=False)),
        (ANDROID_PHONE, Enrichment(browser="Chrome Mobile", os="Android", device="mobile", is_bot=False)),
        (ANDROID_TABLET, Enrichment(browser="Chrome", os="Android", device="tablet", is_bot=False)),
        (GOOGLEBOT, Enrichment(browser="Googlebot", os="", device="bot", is_bot=True)),
        ("curl/8.4.0", Enrichment(browser="curl", os="", device="bot", is_bot=True)),
    ],
)
def test_user_agent_gives_browser_os_and_device(ua: str, expected: Enrichment) -> None:
    assert enrich_user_agent(ua) == expected


@pytest.mark.parametrize(
    "ua",
    [
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "python-requests/2.31.0",
        "Wget/1.21.4",
        HEADLESS,
        "",
        "   ",
    ],
)
def test_tools_previews_and_empty_agents_are_bots(ua: str) -> None:
    # An empty UA counts as a bot: every browser sends one.
    result = enrich_user_agent(ua)
    assert result.is_bot
    assert result.device == "bot"


def test_phone_brand_cubot_is_not_a_bot() -> None:
    ua = (
        "Mozilla/5.0 (Linux; Android 10; CUBOT KING KONG 5 Pro) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36"
    )
    assert enrich_user_agent(ua) == Enrichment(browser="Chrome Mobile", os="Android", device="mobile", is_bot=False)


def test_unknown_agent_is_other_not_bot() -> None:
    assert enrich_user_agent("SomethingNobodyKnows") == Enrichment(browser="", os="", device="other", is_bot=False)


@pytest.mark.parametrize(
    ("referrer", "host"),
    [
        ("https://www.Google.com/search?q=x", "google.com"),
        ("http://news.ycombinator.com/item?id=1", "news.ycombinator.com"),
        ("https://t.co./abc", "t.co"),
        ("https://user:pw@example.org:8443/p", "example.org"),
        ("android-app://com.google.android.gm/", "com.google.android.gm"),
        ("http://[::1]:80/", "::1"),
        ("", ""),
        ("not a url", ""),
        ("http://[broken/", ""),
    ],
)
def test_referrer_host(referrer: str, host: str) -> None:
    assert referrer_host(referrer) == host


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.0", "203.0.113.0"),
        ("2001:DB8:0:0::", "2001:db8::"),
        ("fe80::1%eth0", "fe80::1"),
        ("", None),
        (None, None),
        ("999.1.1.1", None),
        ("example.com", None),
    ],
)
def test_ip_is_canonical_or_none(ip: str | None, expected: str | None) -> None:
    assert normalize_ip(ip) == expected


def test_clean_text_drops_nul_and_caps_length() -> None:
    # Postgres text cannot hold NUL; one such byte must not fail a whole batch.
    assert clean_text("a\x00b" + "c" * 10, 5) == "abccc"
