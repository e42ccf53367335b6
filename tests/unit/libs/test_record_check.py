"""The check of link records read back from Redis or Postgres: what may become a Location."""

from __future__ import annotations

import pytest

from linkpulse.links import LinkRecord, record_problem
from linkpulse.validation import MAX_URL_BYTES, stored_target_problem, validate_url


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a?b=c#d",
        "http://example.com",
        "HTTPS://example.com/",
        "https://xn--fa-hia.de/straße",
        "https://example.com/" + "a" * (MAX_URL_BYTES - 20),
    ],
)
def test_targets_the_admin_api_accepts_pass(url: str) -> None:
    assert stored_target_problem(url) is None


def test_everything_validate_url_returns_passes() -> None:
    # allow_private: an intranet install's targets are stored too, and must be answered.
    for url in ("https://Example.com/a b".replace(" ", "%20"), "http://faß.de/x?y=1#z", "https://[::1]:8443/p"):
        assert stored_target_problem(validate_url(url, allow_private=True)) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("javascript:alert(1)", "not an http or https URL"),
        ("data:text/html,hi", "not an http or https URL"),
        ("https:example.com", "not an http or https URL"),
        ("//example.com/a", "not an http or https URL"),
        ("https://example.com/\r\nSet-Cookie: a=b", "control characters or spaces"),
        ("https://example.com/a\x00", "control characters or spaces"),
        ("https://example.com/a\x7f", "control characters or spaces"),
        ("https://example.com/a\x85", "control characters or spaces"),
        ("https://example.com/a b", "control characters or spaces"),
        ("https://example.com/" + "a" * MAX_URL_BYTES, "longer than"),
        ("https://example.com/" + "é" * (MAX_URL_BYTES // 2), "longer than"),
    ],
)
def test_targets_that_must_never_become_a_location_are_named(url: str, problem: str) -> None:
    assert problem in (stored_target_problem(url) or "")


def test_a_record_of_another_code_or_with_a_status_that_is_no_redirect_is_refused() -> None:
    good = LinkRecord(id=1, code="abc", url="https://example.com/")
    assert record_problem(good, "abc") is None
    assert record_problem(good, "abd") == "record is of another code"
    bad_status = LinkRecord(id=1, code="abc", url="https://example.com/", redirect_type=200)
    assert "not a redirect" in (record_problem(bad_status, "abc") or "")
    bad_url = LinkRecord(id=1, code="abc", url="https://example.com/\n")
    assert "control characters" in (record_problem(bad_url, "abc") or "")
