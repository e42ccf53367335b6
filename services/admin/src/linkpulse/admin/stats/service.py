"""Stats from the rollups ingest keeps (never from `click_events`): series, top values, overview."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import msgspec

from linkpulse.admin.stats.schemas import BotRulesUsed, LinkCount, LinkStats, Overview, Point, Ranked, TopValues
from linkpulse.admin.stats.window import STEPS, Window, ceil_to, floor_to
from linkpulse.validation import could_be_code

__all__ = ["TOP_VALUES", "StatsService"]

TOP_VALUES = 10
_DAY = timedelta(days=1)
# Fixed table names per interval: never built from input.
_SERIES_TABLES = {"minute": "link_clicks_minute", "hour": "link_clicks_hour", "day": "link_clicks_day"}
# One statement, so one snapshot: the series and the top lists count the same batches without a
# transaction around several (BEGIN, three queries and COMMIT were five round trips, and their
# asyncpg and event-loop work was most of the admin's CPU under `linkpulse bench stats`).
# The series comes as [epoch seconds, clicks, bots], the top values as [dimension, value, clicks],
# ranked humans only, ties broken by value in byte order (COLLATE "C") so no locale changes the order.
_LINK_STATS = """
WITH link AS (SELECT id FROM links WHERE code = $1 AND deleted_at IS NULL),
ranked AS (
    SELECT dimension, value, sum(clicks)::bigint AS clicks,
           row_number() OVER (PARTITION BY dimension ORDER BY sum(clicks) DESC, value COLLATE "C") AS rank
    FROM link_dimension_day
    WHERE link_id = (SELECT id FROM link) AND bucket >= $4 AND bucket < $5
    GROUP BY dimension, value
    HAVING sum(clicks) > 0
)
SELECT (SELECT id FROM link) AS link_id, ({rules}) AS bot_rules,
       (SELECT coalesce(json_agg(json_build_array(extract(epoch FROM bucket)::bigint, clicks, bot_clicks)
                                 ORDER BY bucket), '[]')
        FROM {table} WHERE link_id = (SELECT id FROM link) AND bucket >= $2 AND bucket < $3) AS series,
       (SELECT coalesce(json_agg(json_build_array(dimension, value, clicks) ORDER BY dimension, rank), '[]')
        FROM ranked WHERE rank <= $6) AS top
"""
# The newest rules (ingest's at its last connection, or a later reclassify's), as JSON.
_BOT_RULES = """
SELECT json_build_object('version', version,
                         'since', least(reclassified_since, first_used_at),
                         'reclassified_at', reclassified_at)
FROM bot_rules ORDER BY greatest(last_used_at, reclassified_at) DESC, version LIMIT 1
"""
_LINK_STATS = _LINK_STATS.replace("{rules}", _BOT_RULES.strip())
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
_BUCKETS = msgspec.json.Decoder(list[tuple[int, int, int]])
_RULES = msgspec.json.Decoder(BotRulesUsed | None)
_TOP_ROWS = msgspec.json.Decoder(list[tuple[str, str, int]])
_DIMENSIONS = {"country": "countries", "referrer": "referrers", "browser": "browsers", "os": "os", "device": "devices",
               "region": "regions", "city": "cities", "asn": "asns"}  # fmt: skip


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
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_LINK_STATS.format(table=_SERIES_TABLES[window.interval]), code,
                                      window.start, window.end, first_day, end_day, TOP_VALUES)  # fmt: skip
        if row is None or row["link_id"] is None:
            return None
        series = _zero_filled(_BUCKETS.decode(row["series"]), window.start, window.end, step)
        top: dict[str, list[Ranked]] = {name: [] for name in _DIMENSIONS.values()}
        for dimension, value, clicks in _TOP_ROWS.decode(row["top"]):
            top[_DIMENSIONS[dimension]].append(Ranked(value=value, clicks=clicks))
        return LinkStats(
            code=code,
            from_=window.start,
            to=window.end,
            interval=window.interval,
            total=sum(p.clicks for p in series),
            bots=sum(p.bots for p in series),
            series=series,
            top=TopValues(**top),
            bot_rules=_RULES.decode(row["bot_rules"] or "null"),
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
            rules = await conn.fetchval(_BOT_RULES)
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
            bot_rules=_RULES.decode(rules or "null"),
        )


def _zero_filled(buckets: list[tuple[int, int, int]], start: datetime, end: datetime, step: timedelta) -> list[Point]:
    """Every bucket of `[start, end)`, those without a row at zero; `buckets` are (epoch seconds, clicks, bots)."""
    stored = {epoch: (clicks, bots) for epoch, clicks, bots in buckets}
    epoch, seconds = int(start.timestamp()), int(step.total_seconds())
    series = []
    ts = start
    while ts < end:
        clicks, bots = stored.get(epoch, (0, 0))
        series.append(Point(ts=ts, clicks=clicks, bots=bots))
        ts += step
        epoch += seconds
    return series
