"""What a click keeps of the Referer: origin and path only, bounded; and of the User-Agent: MAX_UA characters."""

from __future__ import annotations

import pytest
import structlog

from linkpulse.events import MAX_LANG, MAX_REFERRER, MAX_UA
from linkpulse.redirect.clicks import ANONYMIZE_SETTING, ClickMaker, HeaderGetter
from linkpulse.redirect.referrer import referrer_origin_path
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.settings import env_names
from linkpulse.web.proxies import TrustedProxies


@pytest.mark.parametrize(
    ("referrer", "kept"),
    [
        ("https://news.example.org/item", "https://news.example.org/item"),
        ("https://t.co/", "https://t.co/"),
        ("https://example.com", "https://example.com/"),
        # The query and fragment go: search terms, tokens, e-mail addresses.
        ("https://www.google.com/search?q=my+diagnosis&sa=X", "https://www.google.com/search"),
        ("https://mail.example.com/inbox#msg=alice@example.com", "https://mail.example.com/inbox"),
        ("https://a.example/p?x=1#frag", "https://a.example/p"),
        ("https://a.example?only=query", "https://a.example/"),
        # Userinfo goes; so do path parameters (session ids).
        ("https://alice:s3cret@intranet.example/wiki", "https://intranet.example/wiki"),
        ("https://@a.example/x", "https://a.example/x"),
        ("https://shop.example/cart;jsessionid=0123ABCD?x=1", "https://shop.example/cart"),
        # Scheme and host are lowered; a default port goes, another one stays.
        ("HTTPS://News.Example.ORG:443/Item", "https://news.example.org/Item"),
        ("http://a.example:80/", "http://a.example/"),
        ("https://a.example:8443/x?y", "https://a.example:8443/x"),
        ("https://[2001:db8::1]:8080/x?y", "https://[2001:db8::1]:8080/x"),
        # Bytes no URL path holds are escaped (headers arrive as Latin-1 text of the bytes sent).
        ("https://a.example/caf\xe9 x\x01", "https://a.example/caf%E9%20x%01"),
        ("https://a.example/x\r\nSet-Cookie: a=b", "https://a.example/x%0D%0ASet-Cookie:%20a=b"),
    ],
)
def test_referrer_keeps_origin_and_path_only(referrer: str, kept: str) -> None:
    assert referrer_origin_path(referrer) == kept


@pytest.mark.parametrize(
    ("referrer", "kept"),
    [
        # Android apps send their package as the host: kept, with nothing after it.
        ("android-app://com.google.android.gm/", "android-app://com.google.android.gm"),
        ("android-app://com.slack/path/secret?x", "android-app://com.slack"),
        ("ftp://user:pw@files.example/pub/report.pdf", "ftp://files.example"),
        # No host, or a scheme that carries data or a local path: nothing at all.
        ("file:///home/alice/taxes.html", ""),
        ("javascript:alert(document.cookie)", ""),
        ("data:text/html,<h1>hi</h1>", ""),
        ("about:blank", ""),
        ("mailto:alice@example.com", ""),
    ],
)
def test_odd_schemes_keep_at_most_scheme_and_host(referrer: str, kept: str) -> None:
    assert referrer_origin_path(referrer) == kept


@pytest.mark.parametrize(
    "referrer",
    [
        "",
        "not a url",
        "//a.example/path",
        "/relative/path?x",
        "https://",
        "https:///path",
        "https:\\\\evil.example\\x",
        "https://evil.example\\@good.example/",  # browsers and urlsplit disagree on the host: neither is kept
        "https://a@b@c.example/",
        "https://exa mple.com/",
        "https://b\xfccher.example/",  # a host browsers would have sent as punycode
        "https://%65xample.com/",
        "https://a.example:99999/",
        "https://a.example:8o/",
        "https://[::1/",
        "https://[fe80::1%25eth0]/",
        "https://[not:an:ip:zz]/",
        "https://" + "a" * 254 + "/",
        "\x00https://a.example/",
    ],
)
def test_garbage_is_dropped(referrer: str) -> None:
    assert referrer_origin_path(referrer) == ""


def test_huge_referrer_is_cut_to_the_limit_without_a_broken_escape() -> None:
    # 1. A long path is kept up to MAX_REFERRER characters; its query never, however long.
    long_path = "https://a.example/" + "p" * 5000 + "?" + "q" * 5000
    kept = referrer_origin_path(long_path)
    assert kept == ("https://a.example/" + "p" * 5000)[:MAX_REFERRER]
    assert "q" not in kept
    # 2. Escaping can lengthen a path threefold; the cut never leaves half an escape behind.
    for pad in range(3):
        kept = referrer_origin_path("https://a.example/" + "x" * pad + "\xe9" * 2000)
        assert len(kept) <= MAX_REFERRER
        assert kept.endswith("%E9")
    # 3. A megabyte of garbage costs nothing kept.
    assert referrer_origin_path("https://" + "@" * 1_000_000) == ""
    assert referrer_origin_path("https://a.example:" + "1" * 1_000_000) == ""


def _headers(**values: str) -> HeaderGetter:
    def header(name: str, default: str) -> str:
        return values.get(name.replace("-", "_"), default)

    return header


def test_click_keeps_the_reduced_referrer_and_a_bounded_user_agent() -> None:
    maker = ClickMaker(TrustedProxies(""), "cf-ipcountry", anonymize=True, tracing=None)
    header = _headers(
        referer="https://alice:pw@search.example/results?q=rare+disease#top",
        user_agent="Mozilla/5.0 " + "X" * 5000,
        accept_language="de-" + "x" * 100,
    )
    click = maker.make("abc", 1, 0, "203.0.113.9", header)
    assert click.referrer == "https://search.example/results"
    assert click.ua == ("Mozilla/5.0 " + "X" * 5000)[:MAX_UA]
    assert len(click.ua) == MAX_UA == 512
    assert click.ip == "203.0.113.0"
    # The first language tag is cut to MAX_LANG (RFC 5646's longest tag to be supported).
    assert click.lang == ("de-" + "x" * 100)[:MAX_LANG]


def test_warning_names_the_setting_when_ip_anonymisation_is_off() -> None:
    with structlog.testing.capture_logs() as logs:
        ClickMaker(TrustedProxies(""), "cf-ipcountry", anonymize=True, tracing=None)
    assert logs == []
    with structlog.testing.capture_logs() as logs:
        maker = ClickMaker(TrustedProxies(""), "cf-ipcountry", anonymize=False, tracing=None)
        maker.make("abc", 1, 0, "203.0.113.9", _headers())
    assert [(entry["log_level"], entry["setting"]) for entry in logs] == [("warning", ANONYMIZE_SETTING)]
    assert ANONYMIZE_SETTING in logs[0]["detail"]
    # The name it gives is the variable that really turns anonymisation on.
    assert ANONYMIZE_SETTING in env_names(RedirectSettings)
    assert RedirectSettings.from_env({ANONYMIZE_SETTING: "true"}).proxy.anonymize_ip
    assert not RedirectSettings.from_env({ANONYMIZE_SETTING: "false"}).proxy.anonymize_ip
