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
        ("https://example.com/\ud800", "surrogates"),
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


# Hosts as browsers read them (issue 19): UTS 46, numeric IPv4, IPv6, and non-public targets.


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        # IDNA 2008, non-transitional: ß stays (IDNA 2003 gave fass.de, another domain).
        ("https://faß.de/x", "https://xn--fa-hia.de/x"),
        ("https://straße.example/", "https://xn--strae-oqa.example/"),
        # Public numeric forms become the dotted quad the browser connects to.
        ("https://134744072/", "https://8.8.8.8/"),
        ("https://0x8080808/p", "https://8.8.8.8/p"),
        ("https://0x8.0x8.0x8.0x8/", "https://8.8.8.8/"),
        ("https://010.010.010.010/", "https://8.8.8.8/"),
        ("https://8.526344/", "https://8.8.8.8/"),
        ("https://8.8.2056/", "https://8.8.8.8/"),
        ("https://[2606:4700:0:0::1111]:8443/", "https://[2606:4700::1111]:8443/"),
        ("https://[::ffff:8.8.8.8]/", "https://[::ffff:808:808]/"),
    ],
)
def test_hosts_are_stored_as_a_browser_reads_them(url: str, normalised: str) -> None:
    assert validate_url(url) == normalised


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://FASS.de/", "https://fass.de/"),
        # Fullwidth letters and digits and the IDNA full stops map to ASCII; ignored code points vanish.
        ("https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/", "https://example.com/"),
        ("https://example\u3002com/a", "https://example.com/a"),
        ("https://example\uff0ecom/a", "https://example.com/a"),
        ("https://ex\u00adample.com/", "https://example.com/"),
        ("https://\uff18.\uff18.\uff18.\uff18/", "https://8.8.8.8/"),
        ("https://example.com./", "https://example.com/"),
        ("https://8.8.8.8./", "https://8.8.8.8/"),
        ("https://my_host.example.com/", "https://my_host.example.com/"),
        ("https://[2606:4700::ABCD]/", "https://[2606:4700::abcd]/"),
        ("https://example.com:0080/", "https://example.com:80/"),
    ],
)
def test_what_browsers_open_stays_accepted(url: str, normalised: str) -> None:
    # Accepted before the UTS 46 and address rules too: these guard the new rules against refusing too much.
    assert validate_url(url) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # A character UTS 46 maps to a delimiter: the browser would read another host or path.
        ("https://example.com\uff3cevil.com/", r"U\+FF3C \(FULLWIDTH REVERSE SOLIDUS\), which reads as '\\\\'"),
        ("https://example.com\ufe68evil.com/", r"U\+FE68 .*'\\\\'"),
        ("https://exa\u00a0mple.com/", r"U\+00A0 \(NO-BREAK SPACE\), which reads as ' '"),
        ("https://exa\u3000mple.com/", r"U\+3000 \(IDEOGRAPHIC SPACE\), which reads as ' '"),
        ("https://exa\u2000mple.com/", r"U\+2000 .* ' '"),
        ("https://evil.com\uff3f.x/", r"U\+FF3F .*'_'"),
        ("https://evil.com\u2474.x/", r"U\+2474 .*'\(1\)'"),
        # Look-alike slashes are no IDNA 2008 code points.
        ("https://evil.com\u2215x/", "internationalised"),
        ("https://evil.com\u2044x/", "internationalised"),
        ("https://exa%6dple.com/", "invalid characters: '%' .*percent-encoded"),
        ("https://example.com\\evil.com/", "invalid characters"),
        ("https://-evil.com/", "label"),
        ("https://evil-.com/", "label"),
        ("https://" + "a" * 60 + "ü.example/", "Label too long"),
        ("https://example.com../", "label"),
        ("https://\u00ad/", "host is empty"),
        # Hosts that end in a number are IPv4 addresses or nothing.
        ("https://1.2.3.4.5/", "not a valid IPv4"),
        ("https://256.1.1.1/", "not a valid IPv4"),
        ("https://1.16777216/", "not a valid IPv4"),
        ("https://0x100000000/", "not a valid IPv4"),
        ("https://09.1.1.1/", "not a valid IPv4"),
        ("https://example.123/", "not a valid IPv4"),
        ("https://[fe80::1%25eth0]/", "zone id"),
        ("https://example.com:0/", "port 0"),
    ],
)
def test_hosts_a_browser_would_read_otherwise_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        validate_url(url, allow_private=True)


NON_PUBLIC = [
    ("https://127.0.0.1/", "127.0.0.1 is a loopback address"),
    ("https://2130706433/", r"2130706433 \(127.0.0.1\) is a loopback address"),
    ("https://0x7f000001/", r"\(127.0.0.1\) is a loopback address"),
    ("https://0177.0.0.1/", r"\(127.0.0.1\) is a loopback address"),
    ("https://127.1/", r"\(127.0.0.1\) is a loopback address"),
    ("https://0x7f.0.0.01/", r"\(127.0.0.1\) is a loopback address"),
    ("https://0x7f.1/", r"\(127.0.0.1\) is a loopback address"),
    ("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", r"\(127.0.0.1\) is a loopback address"),
    ("https://127\u30020\u30020\u30021/", r"\(127.0.0.1\) is a loopback address"),
    ("https://0/", r"0 \(0.0.0.0\) is the unspecified address"),
    ("https://0.0.0.0/", "the unspecified address"),
    ("https://10.1.2.3/", "a private address"),
    ("https://172.16.0.1/", "a private address"),
    ("https://192.168.1.1:8080/", "a private address"),
    ("https://3232235777/", r"\(192.168.1.1\) is a private address"),
    ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("https://100.64.0.1/", "not a public address"),
    ("https://224.0.0.1/", "a multicast address"),
    ("https://240.0.0.1/", "a reserved address"),
    ("https://[::1]/", r"\[::1\] is a loopback address"),
    ("https://[0:0:0:0:0:0:0:1]/", r"\(::1\) is a loopback address"),
    ("https://[::]/", "the unspecified address"),
    ("https://[::ffff:127.0.0.1]/", r"\(::ffff:7f00:1\) is a loopback address"),
    ("https://[::ffff:10.0.0.1]/", "a private address"),
    ("https://[64:ff9b::7f00:1]/", "a loopback address"),
    ("https://[2002:c0a8:101::1]/", "a private address in 6to4 form"),
    ("https://[fe80::1]/", "a link-local address"),
    ("https://[fc00::1]/", "a private address"),
    ("https://[ff02::1]/", "a multicast address"),
    ("https://localhost/", "localhost is a local name"),
    ("https://LOCALHOST./", "a local name"),
    ("https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", r"\(localhost\) is a local name"),
    ("https://app.localhost/", "a local name"),
    ("https://printer.local/", "a local name"),
    ("https://metadata.google.internal/computeMetadata/v1/", "a local name"),
    ("https://nas.home.arpa/", "a local name"),
]


@pytest.mark.parametrize(("url", "reason"), NON_PUBLIC)
def test_non_public_targets_are_refused_by_default(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=f"url host .*{reason}: only public targets are allowed"):
        validate_url(url)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://2130706433/", "https://127.0.0.1/"),
        ("https://127.1:8080/a", "https://127.0.0.1:8080/a"),
        ("https://0/", "https://0.0.0.0/"),
        ("https://[::FFFF:127.0.0.1]/", "https://[::ffff:7f00:1]/"),
        ("https://Wiki.Internal/", "https://wiki.internal/"),
        ("http://localhost:8080/", "http://localhost:8080/"),
    ],
)
def test_an_intranet_install_may_allow_non_public_targets(url: str, normalised: str) -> None:
    assert validate_url(url, allow_private=True) == normalised


def test_port_0_is_refused_even_where_private_targets_are_allowed() -> None:
    with pytest.raises(InvalidInput, match="port 0"):
        validate_url("https://intranet.internal:0/", allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://short.example\u3002/x",
        "https://\uff33\uff28\uff2f\uff32\uff34.example/x",
        "https://short.example./x",
        "https://127.1:8000/x",
        "https://2130706433/x",
        "https://[0::1]/x",
    ],
)
def test_the_loop_check_compares_the_final_host(url: str) -> None:
    with pytest.raises(InvalidInput, match="loop"):
        validate_url(url, own_hosts=["short.example", "127.0.0.1", "::1"], allow_private=True)
