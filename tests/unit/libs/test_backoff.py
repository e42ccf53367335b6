"""Retry waits: exponential ceiling, full jitter (no two pods in step), reset, and an early wake on stop."""

from __future__ import annotations

import asyncio
import random

import pytest

from linkpulse.backoff import Backoff, wait_or_stop


def test_ceiling_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(1.0, 10.0, rng=random.Random(1))
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling)
        backoff.next_delay()
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.ceiling == 1.0


def test_every_draw_lies_between_zero_and_its_ceiling() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(7))
    for _ in range(200):
        ceiling = backoff.ceiling
        assert 0 <= backoff.next_delay() <= ceiling


def test_pods_that_failed_together_do_not_retry_together() -> None:
    # Ten pods, third failure in a row each: a fixed doubling would give ten identical waits.
    waits = []
    for seed in range(10):
        backoff = Backoff(1.0, 10.0, rng=random.Random(seed))
        backoff.next_delay(), backoff.next_delay()
        waits.append(backoff.next_delay())
    assert len({round(w, 6) for w in waits}) == 10
    assert max(waits) - min(waits) > 1.0  # spread over the window, not clustered


def test_long_outages_keep_a_finite_ceiling() -> None:
    backoff = Backoff(0.1, 5.0)
    for _ in range(2000):
        backoff.next_delay()
    assert backoff.ceiling == 5.0


@pytest.mark.parametrize(("first", "cap"), [(0, 1), (-1, 1), (2, 1)])
def test_nonsense_bounds_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(first, cap)


async def test_wait_wakes_at_once_when_stopped() -> None:
    stop = asyncio.Event()
    backoff = Backoff(3600.0, 3600.0, rng=random.Random(0))
    backoff.next_delay()  # the next draw is up to an hour
    waiting = asyncio.create_task(backoff.wait(stop))
    await asyncio.sleep(0)
    stop.set()
    assert await asyncio.wait_for(waiting, 1.0) is True


async def test_wait_or_stop_reports_a_timeout_as_not_stopped() -> None:
    assert await wait_or_stop(asyncio.Event(), 0.01) is False
