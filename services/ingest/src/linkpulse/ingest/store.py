"""Ingest SQL: events, rollups and dead letters of one batch in one transaction; partition upkeep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, get_type_hints

import asyncpg

from linkpulse.bots import active_rules
from linkpulse.db.errors import is_data_error
from linkpulse.db.metrics import OperationTimer
from linkpulse.dimensions import lateral_values, located_only_sql
from linkpulse.ingest.batch import ClickRow, DeadLetter

__all__ = ["STAGE", "StoreResult", "ensure_partitions", "prepare_connection", "store_batch", "write_batch"]

# A batch's rows are COPYed into this per-session temporary table, then moved by one statement. Passed as
# 14 arrays instead, asyncpg spent about 6 µs of ingest's CPU per click on encoding (it checks every array
# element for nesting); COPY takes 1 µs, and Postgres, too, does less (docs/performance.md).
# ON COMMIT DELETE ROWS empties it at every commit, and a rollback leaves nothing behind either.
# Its columns are ClickRow's fields, typed from their Python types: the row type is the one list.
_STAGE_TYPES: dict[object, str] = {str: "text", str | None: "text", int: "bigint", bool: "boolean"}
_ROW_TYPES = get_type_hints(ClickRow)
STAGE = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS ingest_stage (
    {", ".join(f"{name} {_STAGE_TYPES[_ROW_TYPES[name]]}" for name in ClickRow._fields)}
) ON COMMIT DELETE ROWS
"""
# What the move does to a staged column on its way into click_events; the others go as they are.
_FROM_STAGE = {
    "id": "id::uuid",
    "ts": "to_timestamp(ts / 1000) + (ts % 1000) * interval '1 millisecond'",
    "ip": "ip::inet",
    "visitor": "decode(visitor, 'hex')",
}

# One statement per batch: the new events go in, and exactly those (RETURNING) are rolled up, grouped in
# Postgres. Aggregating in Python and sending five more statements cost the ingest process about a third
# of its CPU (py-spy, docs/performance.md). id, ts and ip travel as text, milliseconds and text and are
# converted here: each costs less in Postgres's C than in Python. ts is split into whole seconds and the
# rest because both to_timestamp and interval * n compute in float8: whole seconds times 10**6 stay exact
# over ingest's whole range (batch.MIN_TS..MAX_TS), and so do 0-999 ms, which all-milliseconds would not.
# Rows and rollup keys go in sorted order (ORDER BY) so that two ingest processes take row locks in the
# same order and cannot deadlock; the buckets are UTC whatever the session's TimeZone. A click's visitor
# key joins its link's and day's distinct visitors (link_visitors_day) unless that visitor is already in, and
# only the keys that joined are added to the day's count (link_visitor_counts_day).
_STORE_EVENTS = """
WITH new AS (
    INSERT INTO click_events ({columns})
    SELECT {converted}
    FROM ingest_stage
    ORDER BY 1, 2
    ON CONFLICT (id, ts) DO NOTHING
    RETURNING link_id, ts, is_bot, country, region, city, asn, referrer_host, browser, os, device, lang, visitor
), visitors AS (
    INSERT INTO link_visitors_day (link_id, day, is_bot, visitor)
    SELECT DISTINCT link_id, (ts AT TIME ZONE 'UTC')::date, is_bot, visitor
    FROM new WHERE visitor IS NOT NULL ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING
    RETURNING link_id, day, is_bot
), visitor_counts AS (
    INSERT INTO link_visitor_counts_day AS t (link_id, day, visitors, bot_visitors)
    SELECT link_id, day, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM visitors GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (link_id, day) DO UPDATE SET
        visitors = t.visitors + excluded.visitors,
        bot_visitors = t.bot_visitors + excluded.bot_visitors
), totals AS (
    INSERT INTO link_totals AS t (link_id, clicks, bot_clicks, last_click_at)
    SELECT link_id, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot), max(ts)
    FROM new GROUP BY link_id ORDER BY link_id
    ON CONFLICT (link_id) DO UPDATE SET
        clicks = t.clicks + excluded.clicks,
        bot_clicks = t.bot_clicks + excluded.bot_clicks,
        last_click_at = greatest(t.last_click_at, excluded.last_click_at)
), {series}, {dimensions}
SELECT count(*) FROM new
"""
_SERIES = """series_{table} AS (
    INSERT INTO link_clicks_{table} AS t (link_id, bucket, clicks, bot_clicks)
    SELECT link_id, date_trunc('{table}', ts, 'UTC'), count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM new GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (link_id, bucket) DO UPDATE SET
        clicks = t.clicks + excluded.clicks,
        bot_clicks = t.bot_clicks + excluded.bot_clicks
)"""
# Every dimension of linkpulse.dimensions per UTC day and per UTC hour; the dimensions only a GeoIP database fills
# get no "" (unknown) row (located_only_sql).
_DIMENSION_BUCKETS = (("day", "(ts AT TIME ZONE 'UTC')::date"), ("hour", "date_trunc('hour', ts, 'UTC')"))
_DIMENSIONS = f"""dimensions_{{table}} AS (
    INSERT INTO link_dimension_{{table}} AS t (link_id, bucket, dimension, value, clicks, bot_clicks)
    SELECT link_id, {{bucket}}, d.dimension, d.value, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM new {lateral_values("d")}
    WHERE {located_only_sql("d")}
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (link_id, bucket, dimension, value) DO UPDATE SET
        clicks = t.clicks + excluded.clicks,
        bot_clicks = t.bot_clicks + excluded.bot_clicks
)"""
_STORE_EVENTS = _STORE_EVENTS.format(
    columns=", ".join(ClickRow._fields),
    converted=", ".join(_FROM_STAGE.get(name, name) for name in ClickRow._fields),
    series=", ".join(_SERIES.format(table=t) for t in ("minute", "hour", "day")),
    dimensions=", ".join(_DIMENSIONS.format(table=t, bucket=b) for t, b in _DIMENSION_BUCKETS),
)

# Names the rules this process classifies with (for the stats answers), on every new connection: last_used_at
# then tells which rules the newest ingest process runs.
_REGISTER_RULES = """
INSERT INTO bot_rules (version) VALUES ($1)
ON CONFLICT (version) DO UPDATE SET last_used_at = now()
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


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Create this session's staging table and record the bot rules (idempotent): run it on every connection."""
    await conn.execute(STAGE)
    await conn.execute(_REGISTER_RULES, active_rules().version)


async def write_batch(
    conn: asyncpg.Connection, rows: Sequence[ClickRow], dead_letters: Sequence[DeadLetter]
) -> StoreResult:
    """Insert new events, add exactly those to the rollups, keep dead letters; caller owns the transaction.

    `conn` must have been through `prepare_connection` (the ingest pool does it for each new connection).

    An event already stored (a redelivery, or twice in this batch) is skipped and counted as a duplicate.
    """
    inserted = 0
    if rows:
        await conn.copy_records_to_table("ingest_stage", records=rows)
        inserted = await conn.fetchval(_STORE_EVENTS)
    if dead_letters:
        await conn.execute(_INSERT_DEAD_LETTERS, *_columns(dead_letters, len(DeadLetter._fields)))
    return StoreResult(inserted=inserted, duplicates=len(rows) - inserted, dead_letters=len(dead_letters))


async def ensure_partitions(pool: asyncpg.Pool, *, months_ahead: int = 3, timeout: float = 10.0) -> None:
    """Create the monthly `click_events` partitions up to `months_ahead` (idempotent, race-safe)."""
    async with pool.acquire(timeout=timeout) as conn:
        await conn.execute("SELECT linkpulse_ensure_click_partitions($1)", months_ahead)


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    # unnest() takes one array per column; zip(*rows) transposes rows into columns.
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
