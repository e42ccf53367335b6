"""Stats from the rollups ingest keeps (never from `click_events`): series, top values, overview."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from linkpulse.admin.stats.schemas import LinkCount, LinkStats, Overview, Point, Ranked, TopValues
from linkpulse.admin.stats.window import STEPS, Window, ceil_to, floor_to
from linkpulse.validation import could_be_code

__all__ = ["TOP_VALUES", "StatsService"]

TOP_VALUES = 10
_DAY = timedelta(days=1)
# Fixed table names per interval: never built from input.
_SERIES_TABLES = {"minute": "link_clicks_minute", "hour": "link_clicks_hour", "day": "link_clicks_day"}
_SERIES = """
SELECT bucket, clicks, bot_clicks FROM {table}
WHERE link_id = $1 AND bucket >= $2 AND bucket < $3
ORDER BY bucket
"""
# Humans only; ties broken by value in byte order (COLLATE "C"), so the order never depends on a locale.
_TOP = """
SELECT dimension, value, clicks FROM (
    SELECT dimension, value, sum(clicks)::bigint AS clicks,
           row_number() OVER (PARTITION BY dimension ORDER BY sum(clicks) DESC, value COLLATE "C") AS rank
    FROM link_dimension_day
    WHERE link_id = $1 AND bucket >= $2 AND bucket < $3
    GROUP BY dimension, value
    HAVING sum(clicks) > 0
) ranked
WHERE rank <= $4
ORDER BY dimension, rank
"""
# Whole days from the day rollup, the partial days at either end from the hour rollup:
# exact at hour granularity while reading about 24 times fewer rows for long windows.
_OVERVIEW = """
WITH spans AS (
    SELECT link_id, clicks, bot_clicks FROM link_clicks_hour WHERE bucket >= $1 AND bucket < $2
    UNION ALL
    SELECT link_id, clicks, bot_clicks FROM link_clicks_day WHERE bucket >= $2 AND bucket < $3
    UNION ALL
    SELECT link_id, clicks, bot_clicks FROM link_clicks_hour WHERE bucket >= $3 AND bucket < $4
), per_link AS (
    SELECT link_id, sum(clicks)::bigint AS clicks, sum(bot_clicks)::bigint AS bots FROM spans GROUP BY link_id
)
SELECT l.code, l.url, p.clicks, p.bots,
       sum(p.clicks) OVER ()::bigint AS all_clicks, sum(p.bots) OVER ()::bigint AS all_bots
FROM per_link p JOIN links l ON l.id = p.link_id
ORDER BY p.clicks DESC, p.bots DESC, l.code COLLATE "C"
LIMIT $5
"""
_DIMENSIONS = {"country": "countries", "referrer": "referrers", "browser": "browsers", "os": "os", "device": "devices"}


class StatsService:
    """Reads the rollups; handlers call it and never build SQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Bind the service to the app's Postgres pool."""
        self._pool = pool

    async def link_stats(self, code: str, window: Window) -> LinkStats | None:
        """Series and top values of a live link in `window`; None when no live link has `code`."""
        if not could_be_code(code):
            return None
        step = STEPS[window.interval]
        # Dimension rollups are per UTC day: the days the window touches.
        first_day = floor_to(window.start, _DAY).date()
        end_day = ceil_to(window.end, _DAY).date()
        # One snapshot for every read, so the series and the top lists count the same batches.
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            link_id = await conn.fetchval("SELECT id FROM links WHERE code = $1 AND deleted_at IS NULL", code)
            if link_id is None:
                return None
            rows = await conn.fetch(
                _SERIES.format(table=_SERIES_TABLES[window.interval]), link_id, window.start, window.end
            )
            top_rows = await conn.fetch(_TOP, link_id, first_day, end_day, TOP_VALUES)
        series = _zero_filled(rows, window.start, window.end, step)
        top: dict[str, list[Ranked]] = {name: [] for name in _DIMENSIONS.values()}
        for row in top_rows:
            top[_DIMENSIONS[row["dimension"]]].append(Ranked(value=row["value"], clicks=row["clicks"]))
        return LinkStats(
            code=code,
            from_=window.start,
            to=window.end,
            interval=window.interval,
            total=sum(p.clicks for p in series),
            bots=sum(p.bots for p in series),
            series=series,
            top=TopValues(**top),
        )

    async def overview(self, start: datetime, end: datetime, limit: int) -> Overview:
        """Totals of every link in the hour-aligned `[start, end)` and the `limit` links with most clicks."""
        first_day = ceil_to(start, _DAY)
        last_day = floor_to(end, _DAY)
        # [start, first_day) and [last_day, end) from hours, whole days between; a window inside one
        # day (no whole day) is read from hours alone.
        bounds = (start, first_day, last_day, end) if first_day < last_day else (start, end, end, end)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(_OVERVIEW, *bounds, limit)
            if rows:
                clicks, bots = rows[0]["all_clicks"], rows[0]["all_bots"]
            else:
                clicks = bots = 0
        return Overview(
            from_=start,
            to=end,
            clicks=clicks,
            bots=bots,
            top_links=[LinkCount(code=r["code"], url=r["url"], clicks=r["clicks"], bots=r["bots"]) for r in rows],
        )


def _zero_filled(rows: list[asyncpg.Record], start: datetime, end: datetime, step: timedelta) -> list[Point]:
    stored = {row["bucket"]: row for row in rows}
    series = []
    ts = start
    while ts < end:
        row = stored.get(ts)
        series.append(Point(ts=ts, clicks=row["clicks"] if row else 0, bots=row["bot_clicks"] if row else 0))
        ts += step
    return series
