"""Which proxies' forwarded headers are believed: the client IP of both HTTP services."""

from __future__ import annotations

from linkpulse.web.proxies import TrustedProxies


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
