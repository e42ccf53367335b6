"""Ingest SQL: events, rollups and dead letters of one batch in one transaction; partition upkeep."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import NamedTuple

import asyncpg

from linkpulse.db.errors import is_data_error
from linkpulse.db.metrics import OperationTimer
from linkpulse.ingest.batch import ClickRow, DeadLetter

__all__ = ["StoreResult", "ensure_partitions", "store_batch", "write_batch"]

_INSERT_EVENTS = """
INSERT INTO click_events (id, ts, link_id, code, ip, ua, referrer, referrer_host, lang, country,
                          browser, os, device, is_bot)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::text[], $5::inet[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::boolean[])
ON CONFLICT (id, ts) DO NOTHING
RETURNING link_id, ts, is_bot, country, referrer_host, browser, os, device
"""

_UPSERT_TOTALS = """
INSERT INTO link_totals AS t (link_id, clicks, bot_clicks, last_click_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[])
ON CONFLICT (link_id) DO UPDATE SET
    clicks = t.clicks + excluded.clicks,
    bot_clicks = t.bot_clicks + excluded.bot_clicks,
    last_click_at = greatest(t.last_click_at, excluded.last_click_at)
"""

_UPSERT_SERIES = """
INSERT INTO {table} AS t (link_id, bucket, clicks, bot_clicks)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[])
ON CONFLICT (link_id, bucket) DO UPDATE SET
    clicks = t.clicks + excluded.clicks,
    bot_clicks = t.bot_clicks + excluded.bot_clicks
"""
_SERIES_TABLES = ("link_clicks_minute", "link_clicks_hour", "link_clicks_day")

_UPSERT_DIMENSIONS = """
INSERT INTO link_dimension_day AS t (link_id, bucket, dimension, value, clicks, bot_clicks)
SELECT * FROM unnest($1::bigint[], $2::date[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
ON CONFLICT (link_id, bucket, dimension, value) DO UPDATE SET
    clicks = t.clicks + excluded.clicks,
    bot_clicks = t.bot_clicks + excluded.bot_clicks
"""

_INSERT_DEAD_LETTERS = """
INSERT INTO dead_letters (stream, subject, stream_seq, msg_id, deliveries, payload, error)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::integer[], $6::bytea[], $7::text[])
ON CONFLICT (stream, stream_seq) DO NOTHING
"""


_STORE_TIMER = OperationTimer("store_batch")


class StoreResult(NamedTuple):
    """Counts of one stored batch."""

    inserted: int
    """Events that were new and so were added to the rollups."""
    duplicates: int
    """Events already stored (a redelivery or a publisher retry), skipped."""
    dead_letters: int
    """Messages stored in `dead_letters` (including ones already there from an earlier delivery)."""


async def store_batch(
    pool: asyncpg.Pool, rows: Sequence[ClickRow], dead_letters: Sequence[DeadLetter], *, timeout: float
) -> StoreResult:
    """Store a batch in one transaction; `timeout` bounds getting a connection while Postgres is down."""
    # Timed from the wait for a connection to the commit: what a batch waits on Postgres.
    with _STORE_TIMER.time():
        async with pool.acquire(timeout=timeout) as conn:
            try:
                async with conn.transaction():
                    return await write_batch(conn, rows, dead_letters)
            except BaseException as exc:
                if not is_data_error(exc):
                    # After a lost session asyncpg may hand the same broken connection out again
                    # ("another operation is in progress"); closing it makes the pool open a fresh one.
                    conn.terminate()
                raise


async def write_batch(
    conn: asyncpg.Connection, rows: Sequence[ClickRow], dead_letters: Sequence[DeadLetter]
) -> StoreResult:
    """Insert new events, add exactly those to the rollups, keep dead letters; caller owns the transaction.

    Rows and rollup keys go in sorted order so that two ingest processes lock the same rows in the
    same order and cannot deadlock.
    """
    unique = sorted({(row.id, row.ts): row for row in rows}.values(), key=lambda r: (r.id, r.ts))
    inserted: list[asyncpg.Record] = []
    if unique:
        inserted = await conn.fetch(_INSERT_EVENTS, *_columns(unique, len(ClickRow._fields)))
    if inserted:
        await _add_to_rollups(conn, inserted)
    if dead_letters:
        await conn.execute(_INSERT_DEAD_LETTERS, *_columns(dead_letters, len(DeadLetter._fields)))
    return StoreResult(inserted=len(inserted), duplicates=len(rows) - len(inserted), dead_letters=len(dead_letters))


async def ensure_partitions(pool: asyncpg.Pool, *, months_ahead: int = 3, timeout: float = 10.0) -> None:
    """Create the monthly `click_events` partitions up to `months_ahead` (idempotent, race-safe)."""
    async with pool.acquire(timeout=timeout) as conn:
        await conn.execute("SELECT linkpulse_ensure_click_partitions($1)", months_ahead)


class _Counts:
    __slots__ = ("bots", "humans")

    def __init__(self) -> None:
        self.humans = 0
        self.bots = 0

    def add(self, is_bot: bool) -> None:
        if is_bot:
            self.bots += 1
        else:
            self.humans += 1


async def _add_to_rollups(conn: asyncpg.Connection, inserted: Iterable[asyncpg.Record]) -> None:
    totals: defaultdict[int, _Counts] = defaultdict(_Counts)
    last_click: dict[int, datetime] = {}
    series: dict[str, defaultdict[tuple[int, datetime], _Counts]] = {
        table: defaultdict(_Counts) for table in _SERIES_TABLES
    }
    dimensions: defaultdict[tuple[int, date, str, str], _Counts] = defaultdict(_Counts)
    for link_id, ts, is_bot, country, ref_host, browser, os_family, device in inserted:
        totals[link_id].add(is_bot)
        if link_id not in last_click or ts > last_click[link_id]:
            last_click[link_id] = ts
        # Buckets in UTC: asyncpg returns timestamptz as UTC datetimes.
        minute = ts.replace(second=0, microsecond=0)
        hour = minute.replace(minute=0)
        day = hour.replace(hour=0)
        for table, bucket in zip(_SERIES_TABLES, (minute, hour, day), strict=True):
            series[table][(link_id, bucket)].add(is_bot)
        for dimension, value in (
            ("country", country),
            ("referrer", ref_host),
            ("browser", browser),
            ("os", os_family),
            ("device", device),
        ):
            dimensions[(link_id, day.date(), dimension, value)].add(is_bot)

    # Always the same table order and sorted keys: a fixed lock order across processes.
    keys = sorted(totals)
    await conn.execute(
        _UPSERT_TOTALS,
        keys,
        [totals[k].humans for k in keys],
        [totals[k].bots for k in keys],
        [last_click[k] for k in keys],
    )
    for table in _SERIES_TABLES:
        counts = series[table]
        skeys = sorted(counts)
        await conn.execute(
            _UPSERT_SERIES.format(table=table),
            [k[0] for k in skeys],
            [k[1] for k in skeys],
            [counts[k].humans for k in skeys],
            [counts[k].bots for k in skeys],
        )
    dkeys = sorted(dimensions)
    await conn.execute(
        _UPSERT_DIMENSIONS,
        [k[0] for k in dkeys],
        [k[1] for k in dkeys],
        [k[2] for k in dkeys],
        [k[3] for k in dkeys],
        [dimensions[k].humans for k in dkeys],
        [dimensions[k].bots for k in dkeys],
    )


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    # unnest() takes one array per column; zip(*rows) transposes rows into columns.
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
