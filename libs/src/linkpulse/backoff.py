"""Waiting between retries: exponential backoff with full jitter, cut short by a stop event.

Full jitter (each wait drawn uniformly from 0 to the exponential ceiling) is what keeps a fleet
from retrying in step: after a Postgres outage every ingest pod failed at the same instant, and
with a fixed doubling they all came back at the same instants too. Written here rather than
taken from tenacity or backoff: every loop that uses it must also wake at once when its service
stops, which those libraries' sleeps do not do, and the whole policy is a dozen lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

__all__ = ["Backoff", "wait_or_stop"]


class Backoff:
    """The waits of one retry loop: the n-th failure in a row waits uniform(0, min(cap, first · 2ⁿ)).

    `reset()` after a success, so the next outage starts small again. `ceiling` is what a log line
    reports as "retry within"; the draw itself is below it.
    """

    __slots__ = ("_cap", "_failures", "_first", "_uniform")

    def __init__(self, first: float, cap: float, *, rng: random.Random | None = None) -> None:
        if first <= 0 or cap < first:
            raise ValueError(f"need 0 < first <= cap, got first={first}, cap={cap}")
        self._first = first
        self._cap = cap
        self._failures = 0
        # The module's shared generator unless a test passes its own: a fresh random.Random() seeds itself
        # from os.urandom, some 10 µs, and the publisher makes a Backoff per envelope it sends.
        self._uniform = rng.uniform if rng is not None else random.uniform

    @property
    def ceiling(self) -> float:
        """The most the next wait can be."""
        return min(self._cap, self._first * 2**self._failures)

    def next_delay(self) -> float:
        """Draw the next wait and count one more failure."""
        delay = self._uniform(0, self.ceiling)
        self._failures = min(self._failures + 1, 62)  # 2**62 · first is past any cap; keeps the float finite
        return delay

    def reset(self) -> None:
        """Back to the first step, after a success."""
        self._failures = 0

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleep the next drawn delay, waking early when `stop` is set; True when stopped."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        return await wait_or_stop(stop, delay)


async def wait_or_stop(stop: asyncio.Event, timeout: float) -> bool:
    """Sleep up to `timeout`, waking early on stop; True when stop is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
    return stop.is_set()
