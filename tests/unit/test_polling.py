"""The tests' polling helper: returns the awaited value, and a failure names what was awaited and what was seen."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from tests.polling import eventually


async def test_returns_the_first_accepted_value_of_a_sync_or_async_check() -> None:
    counter = itertools.count()
    assert await eventually(lambda: next(counter), "three calls", accept=lambda n: n >= 3, interval=0) == 3

    async def rows() -> list[int]:
        return [1]

    assert await eventually(rows, "a row") == [1]


async def test_a_timeout_names_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"clicks stored: not within 0\.05s \(last value: 7\)"):
        await eventually(lambda: 7, "clicks stored", accept=lambda n: n >= 10, timeout=0.05, interval=0.01)


async def test_a_wake_event_ends_the_wait_before_the_interval() -> None:
    wake = asyncio.Event()
    box: list[int] = []
    asyncio.get_running_loop().call_later(0.05, lambda: (box.append(1), wake.set()))
    # An hour-long interval: only the event can bring the second look in time.
    assert await eventually(lambda: list(box), "the value set", timeout=5, interval=3600, wake=wake) == [1]
