"""Hosts as browsers read them: UTS 46 mapping that would put a delimiter in a host, and non-public names."""

from __future__ import annotations

import re

import pytest

from linkpulse.hosts import InvalidHost, canonical_host, non_public_reason


# Every code point UTS 46 maps to a URL delimiter or a space is refused here, whatever Python's
# urlsplit (whose NFKC check covers '/', '?', '#', '@' and ':' only) let through before.
@pytest.mark.parametrize(
    ("char", "reads_as"),
    [
        ("\uff3c", "\\"),
        ("\ufe68", "\\"),
        ("\uff0f", "/"),
        ("\u2100", "a/c"),
        ("\ufe16", "?"),
        ("\uff1f", "?"),
        ("\ufe5f", "#"),
        ("\uff03", "#"),
        ("\ufe6b", "@"),
        ("\uff20", "@"),
        ("\ufe55", ":"),
        ("\uff1a", ":"),
        ("\uff05", "%"),
        ("\u00a0", " "),
        ("\u3000", " "),
        ("\u2007", " "),
        ("\u00a8", " ̈"),
    ],
)
def test_a_character_that_maps_to_a_delimiter_is_refused(char: str, reads_as: str) -> None:
    expected = re.escape(f"U+{ord(char):04X} (") + ".*" + re.escape(f"reads as {reads_as!r}")
    with pytest.raises(InvalidHost, match=expected):
        canonical_host(f"good.example{char}evil.example")


@pytest.mark.parametrize(
    ("host", "canonical"),
    [
        ("faß.de", "xn--fa-hia.de"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("example\uff61com", "example.com"),
        ("[2606:4700::1111]", "2606:4700::1111"),
        ("2606:4700:0::1111", "2606:4700::1111"),
        ("0x7f.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
    ],
)
def test_canonical_hosts(host: str, canonical: str) -> None:
    assert canonical_host(host) == canonical


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::ffff:7f00:1", "a loopback address"),
        ("2002:a00:1::", "a private address in 6to4 form"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "a private address in Teredo form"),  # client 10.0.0.1
        ("255.255.255.255", "a reserved address"),
        ("localhost", "a local name"),
        ("a.b.internal", "a local name"),
        ("example.com", None),
        ("internal.example.com", None),
        ("localhost.example", None),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("::ffff:808:808", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_non_public_reason(host: str, reason: str | None) -> None:
    assert non_public_reason(host) == reason
