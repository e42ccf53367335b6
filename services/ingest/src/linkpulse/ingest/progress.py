"""Ingest progress: what each shard loop last saw of its consumer, written to `ingest_progress` about once a second.

The stats answers read it to say how fresh they are (docs/analytics.md, "How fresh an answer is"). A shard loop
only notes what it saw (`observe`, no I/O); one task per worker writes the shards noted since its last report
in one upsert, outside the batches' transactions, so a report never holds a batch up and a failed report (logged)
never stops consuming: the next observations are reported at the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import NamedTuple

import asyncpg
import structlog

from linkpulse.backoff import wait_or_stop
from linkpulse.ingest import metrics

__all__ = ["REPORT_EVERY", "Observation", "ProgressReporter", "progress_rows"]

log = structlog.get_logger(__name__)

REPORT_EVERY = 1.0
"""Seconds between two reports of a worker: a stats answer's freshness is quoted to the second."""

# One statement for every shard noted, keys sorted: two pods reporting at once take the rows in the same order.
_REPORT = """
INSERT INTO ingest_progress AS p (shard, pending, behind_seconds, reported_at)
SELECT shard, pending, behind, now()
FROM unnest($1::integer[], $2::bigint[], $3::double precision[]) AS u(shard, pending, behind)
ORDER BY shard
ON CONFLICT (shard) DO UPDATE SET
    pending = excluded.pending, behind_seconds = excluded.behind_seconds, reported_at = excluded.reported_at
"""


class Observation(NamedTuple):
    """What a shard loop saw last: after a stored batch, or a fetch that came back empty."""

    pending: int
    """The consumer's messages not yet delivered after the batch's last one (num_pending); 0 after an idle fetch."""
    published: float | None
    """When the batch's last message was stored in the stream (epoch seconds); None after an idle fetch."""


def progress_rows(seen: dict[int, Observation], now: float) -> tuple[list[int], list[int], list[float]]:
    """The report's columns (shard, pending, behind_seconds), shards sorted.

    Behind is how long ago the last stored message was published while more wait (a consumer that has
    caught up is behind by nothing, however old its last message); never negative, whatever the clocks say.
    """
    shards = sorted(seen)
    pending = [seen[s].pending for s in shards]
    behind = [
        max(0.0, now - published) if (published := seen[s].published) is not None and seen[s].pending > 0 else 0.0
        for s in shards
    ]
    return shards, pending, behind


class ProgressReporter:
    """Collects the shard loops' observations and writes them to `ingest_progress` about once a second."""

    def __init__(
        self, pool: asyncpg.Pool, *, timeout: float, every: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        """Report into `pool`, waiting up to `timeout` for a connection; `every` defaults to REPORT_EVERY."""
        self._pool = pool
        self._timeout = timeout
        self._every = REPORT_EVERY if every is None else every
        self._clock = clock
        self._seen: dict[int, Observation] = {}

    def observe(self, shard: int, pending: int, published: float | None) -> None:
        """Note what `shard`'s loop saw last; the next report writes it (only the newest per shard)."""
        self._seen[shard] = Observation(pending, published)

    async def run(self, stop: asyncio.Event) -> None:
        """Report what was noted every `every` seconds until stop; a report in flight at stop is abandoned."""
        while not await wait_or_stop(stop, self._every):
            report = asyncio.ensure_future(self.report())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({report, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not report.done():
                # A stalled Postgres would hold the worker's stop for the connection timeout (10 s) otherwise.
                report.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await report

    async def report(self) -> bool:
        """Write the shards noted since the last report; False (logged) when Postgres would not take it."""
        if not self._seen:
            return True
        seen, self._seen = self._seen, {}
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                # Not waiting for the WAL flush: a report lost to a crash is replaced a second later, and waiting
                # took 8 ms a report on this machine (0.6 ms without, docs/performance.md).
                await conn.execute("SET LOCAL synchronous_commit = off")
                await conn.execute(_REPORT, *progress_rows(seen, self._clock()))
        except Exception as exc:  # whatever it was, consuming goes on; the next report tries again
            metrics.PROGRESS_ERRORS.inc()
            log.warning("ingest.progress_failed", error=repr(exc), shards=len(seen))
            # Kept for the next report unless a newer observation of the shard came meanwhile.
            for shard, observation in seen.items():
                self._seen.setdefault(shard, observation)
            return False
        return True
