"""The in-process fallback of the auth throttle and the request slots, without servers."""

from __future__ import annotations

import pytest
from litestar.exceptions import ServiceUnavailableException
from tests.clock import Clock

from linkpulse.admin.limits import RETRY_AFTER, Slots
from linkpulse.admin.throttle import LocalCounts


def test_an_ip_waits_out_its_window_after_the_limit_of_failures() -> None:
    clock = Clock(1000.0)
    counts = LocalCounts(limit=3, window=60, max_entries=100, clock=clock)
    for _ in range(2):
        counts.failed("203.0.113.5")
    assert counts.retry_after("203.0.113.5") == 0
    clock.now += 10
    counts.failed("203.0.113.5")
    # The window runs from the first failure, so 50 s are left; another IP is not affected.
    assert counts.retry_after("203.0.113.5") == 50
    assert counts.retry_after("203.0.113.6") == 0
    clock.now += 50
    assert counts.retry_after("203.0.113.5") == 0


def test_the_in_process_counts_stay_bounded_dropping_the_oldest() -> None:
    clock = Clock(1000.0)
    counts = LocalCounts(limit=1, window=60, max_entries=3, clock=clock)
    for n in range(10):
        counts.failed(f"198.51.100.{n}")
        clock.now += 1
    assert len(counts) == 3
    assert counts.retry_after("198.51.100.0") == 0  # pushed out
    assert counts.retry_after("198.51.100.9") > 0
    # Expired entries make room first.
    clock.now += 60
    counts.failed("192.0.2.1")
    assert len(counts) == 1


def test_slots_refuse_one_more_at_once_and_come_back_when_released() -> None:
    slots = Slots(2, "exports")
    first = slots.take()
    with slots.taken(), pytest.raises(ServiceUnavailableException) as refused:
        slots.take()
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": str(RETRY_AFTER)}
    assert "too many exports at once (at most 2)" in refused.value.detail
    assert slots.held == 1
    first()
    first()  # a second release changes nothing
    assert slots.held == 0
