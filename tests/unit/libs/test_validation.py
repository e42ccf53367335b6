"""URL and code validation: what is refused, and how accepted URLs are normalised."""

from __future__ import annotations

import pytest

from linkpulse.validation import InvalidInput, could_be_code, validate_code, validate_expiry, validate_url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "scheme"),
        ("data:text/html,<b>x</b>", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https://example.com/a\r\nSet-Cookie: x=1", "control"),
        ("https://example.com/\x00", "control"),
        ("https:///path-only", "host"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/" + "a" * 2100, "2048"),
        ("https://[::1/", "malformed"),
        ("https://short.example/loop", "loop"),
        ("https://xn--.com/", "internationalised"),
        ("https://xn--zz-.example/", "internationalised"),
        ("https://a..example/", "label"),
        ("https://" + "a" * 64 + ".example/", "label"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        validate_url(url, own_hosts=["short.example"])


def test_idn_host_is_stored_as_punycode() -> None:
    assert validate_url("https://bücher.example/straße?q=1") == "https://xn--bcher-kva.example/straße?q=1"


def test_scheme_and_host_are_lowercased_and_port_kept() -> None:
    assert validate_url("HTTPS://Example.COM:8443/Path") == "https://example.com:8443/Path"


def test_own_host_match_ignores_case_and_idn_form() -> None:
    with pytest.raises(InvalidInput, match="loop"):
        validate_url("https://SHORT.example/x", own_hosts=["short.example"])


@pytest.mark.parametrize("code", ["abc", "A_b-9", "x" * 64])
def test_valid_codes(code: str) -> None:
    assert validate_code(code) == code


@pytest.mark.parametrize(
    "code", ["", "x" * 65, "../etc", "a b", "a\r\nb", "ünï", "a/b", "a;drop", "api", "HEALTHZ", "metrics", "schema"]
)
def test_invalid_or_reserved_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidInput):
        validate_code(code)


def test_only_code_shaped_strings_could_name_a_link() -> None:
    assert could_be_code("abc") and could_be_code("x" * 64)
    assert not any(map(could_be_code, ["", "a\x00", "x" * 65, "../a", "ü"]))


def test_punycode_hosts_that_decode_are_kept() -> None:
    assert validate_url("https://xn--l-7sba6dbr.com/login") == "https://xn--l-7sba6dbr.com/login"


def test_expiry_past_the_representable_range_is_refused() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    with pytest.raises(InvalidInput, match="out of range"):
        validate_expiry(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2))))
    with pytest.raises(InvalidInput, match="future"):
        validate_expiry(datetime.now(UTC) - timedelta(seconds=1))
    past = datetime.now(UTC) - timedelta(days=1)
    assert validate_expiry(past, must_be_future=False) == past
