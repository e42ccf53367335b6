"""Load driver for fault scenarios: concurrent GETs over many codes, recording every answered redirect."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

__all__ = ["BROWSER_UA", "LoadResult", "drive"]

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@dataclass
class LoadResult:
    """What the driver saw: redirects answered per code, other statuses, transport errors."""

    answered: Counter[str] = field(default_factory=Counter)
    """30x answers per code: each one must become exactly one stored click."""
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Requests with no answer (connection refused/reset, timeout), by exception type."""

    @property
    def total_answered(self) -> int:
        return sum(self.answered.values())

    def merge(self, other: LoadResult) -> None:
        self.answered.update(other.answered)
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)

    def summary(self) -> str:
        return (
            f"answered={self.total_answered} statuses={dict(self.statuses)} "
            f"errors={dict(self.errors)} codes={len(self.answered)}"
        )


async def drive(
    base_url: str,
    codes: list[str],
    *,
    requests: int | None = None,
    duration: float | None = None,
    concurrency: int = 32,
    stop: asyncio.Event | None = None,
    timeout: float = 5.0,
) -> LoadResult:
    """Send GETs round-robin over `codes` from `concurrency` clients.

    Stops after `requests` requests, after `duration` seconds, or when `stop` is set, whichever
    comes first (at least one bound is required, so a scenario can never run forever).
    """
    if requests is None and duration is None and stop is None:
        raise ValueError("give requests, duration or stop: load must be bounded")
    result = LoadResult()
    deadline = time.monotonic() + duration if duration is not None else None
    counter = iter(range(requests if requests is not None else 10**12))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=timeout, headers={"user-agent": BROWSER_UA}
    ) as client:

        async def worker() -> None:
            for i in counter:
                if (deadline is not None and time.monotonic() > deadline) or (stop is not None and stop.is_set()):
                    return
                code = codes[i % len(codes)]
                try:
                    resp = await client.get(f"/{code}")
                except httpx.HTTPError as exc:
                    result.errors[type(exc).__name__] += 1
                    continue
                result.statuses[resp.status_code] += 1
                if 300 <= resp.status_code < 400:
                    result.answered[code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result
