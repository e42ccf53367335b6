"""Click limits: how many human clicks a link with `max_clicks` has used, from the rollups plus local clicks.

Only humans count: `link_totals.clicks` (ingest counts bots apart, in `bot_clicks`, by the rule in
`linkpulse.bots`), and the request path records only the GETs that rule calls human. So a link preview or
a crawler never uses up a one-time link, though it is answered like anyone else while the limit allows.

Exactness: the count is `link_totals` (refreshed at most every `refresh` seconds per link) plus the
clicks this process answered since. Clicks still in flight (published, not yet ingested) and other
processes' clicks since the last refresh are not seen, so a limit can be overshot by about one
refresh interval of traffic; a click the limit allows is never refused. With Postgres down the
count stops advancing from the rollups (fail open): redirects keep working.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import structlog

from linkpulse.db.errors import UNAVAILABLE

__all__ = ["ClickBudget"]

log = structlog.get_logger(__name__)

_USED = "SELECT clicks FROM link_totals WHERE link_id = $1"


class ClickBudget:
    """Per-link used-click counts for limited links only; unlimited links never reach this class."""

    def __init__(self, pool: asyncpg.Pool, refresh: float = 1.0, max_links: int = 100_000) -> None:
        self._pool = pool
        self._refresh = refresh
        self._max_links = max_links
        # link_id → [stored total, monotonic time of the read, clicks answered here since]
        self._counts: dict[int, list[float]] = {}
        self._inflight: dict[int, asyncio.Future[None]] = {}

    async def used(self, link_id: int) -> int:
        """Clicks the link has used, as far as this process can tell."""
        entry = self._counts.get(link_id)
        if entry is None or time.monotonic() - entry[1] >= self._refresh:
            await self._refresh_count(link_id)
            entry = self._counts[link_id]
        return int(entry[0] + entry[2])

    def record(self, link_id: int) -> None:
        """Count a human click this process just answered."""
        entry = self._counts.get(link_id)
        if entry is not None:
            entry[2] += 1

    async def _refresh_count(self, link_id: int) -> None:
        pending = self._inflight.get(link_id)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[link_id] = future
        try:
            try:
                stored = await self._pool.fetchval(_USED, link_id) or 0
            except UNAVAILABLE as exc:
                log.warning("budget.refresh_failed", link_id=link_id, error=type(exc).__name__)
                previous = self._counts.get(link_id)
                # Keep counting on top of what we knew; retry the read after another interval.
                stored = previous[0] + previous[2] if previous else 0
            if len(self._counts) >= self._max_links and link_id not in self._counts:
                self._counts.clear()  # rare: bounded memory beats a perfect eviction order here
            self._counts[link_id] = [float(stored), time.monotonic(), 0.0]
        finally:
            future.set_result(None)
            del self._inflight[link_id]
