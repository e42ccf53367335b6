"""Visitor details: IP anonymisation and which proxies' headers are believed."""

from __future__ import annotations

import pytest

from linkpulse.redirect.visitor import TrustedProxies, anonymize_ip, first_language


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:1234:5678:9abc:def0:1234:5678", "2001:db8:1234::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("testclient", None),
        ("", None),
    ],
)
def test_anonymize_ip(ip: str, expected: str | None) -> None:
    assert anonymize_ip(ip) == expected


def test_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    proxies = TrustedProxies("10.0.0.0/8")
    assert proxies.client_ip("198.51.100.1", "203.0.113.5") == "198.51.100.1"
    assert not proxies.trusts("198.51.100.1")


def test_rightmost_untrusted_hop_is_the_client() -> None:
    proxies = TrustedProxies("10.0.0.0/8, 192.168.0.0/16")
    # The left-most entry is whatever the client claimed; only hops our proxies added are believed.
    assert proxies.client_ip("10.1.2.3", "1.1.1.1, 203.0.113.5, 192.168.1.1") == "203.0.113.5"
    assert proxies.client_ip("10.1.2.3", "10.9.9.9") == "10.1.2.3"


def test_no_trusted_proxies_means_trust_nobody() -> None:
    proxies = TrustedProxies("")
    assert proxies.client_ip("127.0.0.1", "203.0.113.5") == "127.0.0.1"


@pytest.mark.parametrize(
    ("header", "expected"), [("de-DE,de;q=0.9", "de-DE"), ("*", ""), ("", ""), ("en;q=0.8", "en"), ("x<y", "")]
)
def test_first_language(header: str, expected: str) -> None:
    assert first_language(header) == expected
