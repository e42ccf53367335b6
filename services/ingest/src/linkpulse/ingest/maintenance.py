"""Ingest's periodic upkeep beside the shard loops: monthly partitions ahead, and retention."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

import asyncpg
import structlog

from linkpulse.backoff import Backoff, wait_or_stop
from linkpulse.db.errors import is_unavailable
from linkpulse.ingest.pipeline import MAX_BACKOFF
from linkpulse.ingest.retention import apply_retention
from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.store import ensure_partitions

__all__ = ["PARTITIONS_EVERY", "RETENTION_EVERY", "maintenance_jobs"]

log = structlog.get_logger(__name__)

PARTITIONS_EVERY = 86400.0
"""Partition upkeep runs on start and then daily; it prepares three months ahead."""
RETENTION_EVERY = 3600.0
"""Retention runs on start and then hourly: a partition goes within the hour its last click expires."""


def maintenance_jobs(pool: asyncpg.Pool, settings: IngestSettings, stop: asyncio.Event) -> list[Awaitable[None]]:
    """The upkeep loops to run beside the shard loops until `stop`: partitions always, retention if set."""
    timeout, days = settings.database.command_timeout, settings.ingest.retention_days
    first = settings.ingest.retry_delay
    # Not fatal when it fails: events outside prepared months land in the default partition.
    partitions = partial(ensure_partitions, pool, timeout=timeout)
    jobs = [_periodically(stop, "partitions", PARTITIONS_EVERY, first, partitions)]
    if days:
        jobs.append(_periodically(stop, "retention", RETENTION_EVERY, first,
                                  partial(apply_retention, pool, days, timeout=timeout)))  # fmt: skip
    return jobs


async def _periodically(
    stop: asyncio.Event, name: str, every: float, first: float, job: Callable[[], Awaitable[object]]
) -> None:
    """Run `job` now and every `every` seconds until stop; while Postgres is away, retry with backoff."""
    backoff = Backoff(first, max(MAX_BACKOFF, first))
    while not stop.is_set():
        try:
            await job()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning(f"ingest.{name}_failed", error=repr(exc), retry_within=backoff.ceiling)
            await backoff.wait(stop)
        else:
            backoff.reset()
            await wait_or_stop(stop, every)
