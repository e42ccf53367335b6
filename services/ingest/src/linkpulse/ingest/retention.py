"""Click-data retention: drop whole `click_events` partitions and purge dead letters older than the setting."""

from __future__ import annotations

from typing import NamedTuple

import asyncpg
import structlog

from linkpulse.ingest import metrics

__all__ = ["LOCK_ID", "RetentionResult", "apply_retention"]

log = structlog.get_logger(__name__)

LOCK_ID = 0x6C70726574656E74  # "lpretent"
"""Session advisory lock held by the one ingest process applying retention; the others skip that run."""
LOCK_TIMEOUT = 3.0
"""Seconds a partition's detach waits for click_events' lock: inserts queue behind it meanwhile, so it is short."""

# Partitions of click_events whose upper bound lies at or before the cutoff: every row in them is older than
# the retention. The bound is read from its text form ("FOR VALUES FROM ('…') TO ('…')", printed with its UTC
# offset); the default partition, MAXVALUE bounds and anything not range-partitioned by time have none.
_EXPIRED_PARTITIONS = """
SELECT c.oid::regclass::text AS name, b.upper
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (
    SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz AS upper
) b
WHERE i.inhparent = 'click_events'::regclass AND c.relispartition AND b.upper <= $1
ORDER BY b.upper
"""
# Events whose month had no partition yet (an odd clock, a replay of old clicks) wait in the default one.
_PURGE_DEFAULT = "DELETE FROM click_events_default WHERE ts < $1"
_PURGE_DEAD_LETTERS = "DELETE FROM dead_letters WHERE received_at < $1"


class RetentionResult(NamedTuple):
    """What one retention run did."""

    ran: bool
    """False when another process held the retention lock (it is doing this run's work)."""
    dropped: list[str]
    """Partitions of click_events dropped, oldest first."""
    busy: list[str]
    """Expired partitions left for the next run: their lock was not had within LOCK_TIMEOUT."""
    default_rows: int
    """Expired rows deleted from the default partition."""
    dead_letters: int
    """Dead letters deleted."""


async def apply_retention(
    pool: asyncpg.Pool, days: int, *, timeout: float, lock_timeout: float = LOCK_TIMEOUT
) -> RetentionResult:
    """Delete click data older than `days` (0 keeps everything); rollups are never touched.

    Not even `link_dimension_hour`: a timezone's days and a window's edge hours come from it for every day the
    day rollup answers, so purging it alone would make an old day's answer depend on the timezone asked in.

    Whole monthly partitions go once their upper bound is `days` old, so a click is kept for at least
    `days` and at most a month longer. Each partition is detached and dropped in its own short transaction.
    DETACH … CONCURRENTLY would not block inserts at all, but Postgres refuses it on a table with a default
    partition; the plain detach takes click_events' exclusive lock for a catalog change only, after waiting
    at most LOCK_TIMEOUT for the batches in flight, so ingestion pauses for a moment once a month.
    """
    if days <= 0:
        return RetentionResult(ran=False, dropped=[], busy=[], default_rows=0, dead_letters=0)
    async with pool.acquire(timeout=timeout) as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            log.debug("retention.skipped", reason="another process holds the retention lock")
            return RetentionResult(ran=False, dropped=[], busy=[], default_rows=0, dead_letters=0)
        try:
            return await _apply(conn, days, lock_timeout)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)


async def _apply(conn: asyncpg.Connection, days: int, lock_timeout: float) -> RetentionResult:
    cutoff = await conn.fetchval("SELECT now() - make_interval(days => $1)", days)
    dead_letters = _count(await conn.execute(_PURGE_DEAD_LETTERS, cutoff))
    default_rows = _count(await conn.execute(_PURGE_DEFAULT, cutoff))
    dropped: list[str] = []
    busy: list[str] = []
    for name, upper in await conn.fetch(_EXPIRED_PARTITIONS, cutoff):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {round(lock_timeout * 1000)}")
                # As the table's owner (migration 0006): ingest's own role may not detach or drop.
                await conn.execute("SELECT linkpulse_drop_click_partition($1::regclass, $2)", name, days)
        except asyncpg.LockNotAvailableError:
            busy.append(name)
            continue
        dropped.append(name)
        log.info("retention.partition_dropped", partition=name, upper_bound=upper.isoformat(), retention_days=days)
    metrics.RETENTION_PARTITIONS.inc(len(dropped))
    metrics.RETENTION_ROWS.labels("click_events_default").inc(default_rows)
    metrics.RETENTION_ROWS.labels("dead_letters").inc(dead_letters)
    if busy:
        log.warning("retention.partitions_busy", partitions=busy, retry="next run", lock_timeout=lock_timeout)
    if dropped or default_rows or dead_letters:
        log.info("retention.applied", retention_days=days, cutoff=cutoff.isoformat(), partitions=dropped,
                 default_rows=default_rows, dead_letters=dead_letters)  # fmt: skip
    return RetentionResult(ran=True, dropped=dropped, busy=busy, default_rows=default_rows, dead_letters=dead_letters)


def _count(status: str) -> int:
    # asyncpg returns the command tag: "DELETE 42".
    return int(status.rsplit(" ", 1)[-1])
