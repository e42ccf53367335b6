"""Visitor details: IP anonymisation and the first language."""

from __future__ import annotations

import pytest

from linkpulse.redirect.visitor import anonymize_ip, first_language


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


@pytest.mark.parametrize(
    ("header", "expected"), [("de-DE,de;q=0.9", "de-DE"), ("*", ""), ("", ""), ("en;q=0.8", "en"), ("x<y", "")]
)
def test_first_language(header: str, expected: str) -> None:
    assert first_language(header) == expected
