"""`eventually`: the one way tests wait for a state nothing announces, polling with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 15.0
DEFAULT_INTERVAL = 0.1


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    accept: Callable[[T], object] = bool,
    interval: float = DEFAULT_INTERVAL,
    wake: asyncio.Event | None = None,
) -> T:
    """Call `check` until `accept(value)` holds and return that value; fail naming `what` and the last value.

    Args:
        check: what to look at, sync or async; called once more after the deadline so a slow last call counts.
        what: the awaited state, as the failure message should name it ("ingest consumers idle").
        timeout: seconds before the test fails with an AssertionError.
        accept: when the value is the awaited one (default: truthy).
        interval: seconds between calls when nothing wakes the poll.
        wake: an event set whenever the state may have changed; the poll then waits on it instead of
            sleeping (it is cleared before each call, so a change during a call is not missed).
    """
    deadline = time.monotonic() + timeout
    while True:
        if wake is not None:
            wake.clear()
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if accept(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what}: not within {timeout:g}s (last value: {value!r})")
        if wake is None:
            await asyncio.sleep(min(interval, left))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), left)
