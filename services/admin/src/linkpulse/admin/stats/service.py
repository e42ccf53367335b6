"""Stats from the rollups ingest keeps: series, top values, overview; and unique visitors.

Unique visitors per day come from `link_visitor_counts_day`; per hour or minute, and for the hours at the edges of an
overview window, they are counted from the clicks' visitor keys (`click_events`, by its (link_id, ts) index):
distinct counts do not add up across buckets, so no rollup can hold them.
"""

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
        FROM ranked WHERE rank <= $6) AS top,
       ({visitors}) AS visitors,
       ({visitor_days}) AS visitor_days
"""
# Unique visitors as [epoch seconds, humans, bots] per bucket: a day's from its counts (link_visitor_counts_day),
# an hour's or minute's counted from the keys of its clicks.
_DAY_VISITORS = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM day AT TIME ZONE 'UTC')::bigint, visitors, bot_visitors)),
                '[]')
FROM link_visitor_counts_day WHERE link_id = (SELECT id FROM link) AND day >= $4 AND day < $5
"""
_BUCKET_VISITORS = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM bucket)::bigint, humans, bots)), '[]')
FROM (SELECT date_trunc('{step}', ts, 'UTC') AS bucket,
             count(DISTINCT visitor) FILTER (WHERE NOT is_bot) AS humans,
             count(DISTINCT visitor) FILTER (WHERE is_bot) AS bots
      FROM click_events WHERE link_id = (SELECT id FROM link) AND ts >= $2 AND ts < $3 AND visitor IS NOT NULL
      GROUP BY 1) AS b
"""
# The window's visitors, [humans, bots]: each UTC day's distinct visitors within the window, added up (a key
# is salted per day, so no visitor is ever one across days). For day series the sum of the points does it.
_WINDOW_VISITORS = """
SELECT json_build_array(count(DISTINCT (day, visitor)) FILTER (WHERE NOT is_bot),
                        count(DISTINCT (day, visitor)) FILTER (WHERE is_bot))
FROM (SELECT (ts AT TIME ZONE 'UTC')::date AS day, visitor, is_bot FROM click_events
      WHERE link_id = (SELECT id FROM link) AND ts >= $2 AND ts < $3 AND visitor IS NOT NULL) AS k
"""
# The newest rules (ingest's at its last connection, or a later reclassify's), as JSON.
_BOT_RULES = """
SELECT json_build_object('version', version,
                         'since', least(reclassified_since, first_used_at),
                         'reclassified_at', reclassified_at)
FROM bot_rules ORDER BY greatest(last_used_at, reclassified_at) DESC, version LIMIT 1
"""
_LINK_STATS = _LINK_STATS.replace("{rules}", _BOT_RULES.strip())
# Fixed statements per interval: never built from input.
_LINK_STATS_SQL = {
    step: _LINK_STATS.format(
        table=f"link_clicks_{step}",
        visitors=_DAY_VISITORS.strip() if step == "day" else _BUCKET_VISITORS.format(step=step).strip(),
        visitor_days="NULL" if step == "day" else _WINDOW_VISITORS.strip(),
    )
    for step in ("minute", "hour", "day")
}
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
), visits AS (
    -- Unique visitors the same way: whole days' from their counts, the edge hours' from the clicks' keys.
    SELECT link_id, visitors, bot_visitors FROM link_visitor_counts_day
    WHERE day >= ($2 AT TIME ZONE 'UTC')::date AND day < ($3 AT TIME ZONE 'UTC')::date
    UNION ALL
    SELECT link_id, count(DISTINCT ((ts AT TIME ZONE 'UTC')::date, visitor)) FILTER (WHERE NOT is_bot),
           count(DISTINCT ((ts AT TIME ZONE 'UTC')::date, visitor)) FILTER (WHERE is_bot)
    FROM click_events
    WHERE ((ts >= $1 AND ts < $2) OR (ts >= $3 AND ts < $4)) AND visitor IS NOT NULL GROUP BY 1
), per_link_visits AS (
    SELECT link_id, sum(visitors)::bigint AS visitors, sum(bot_visitors)::bigint AS bot_visitors
    FROM visits GROUP BY link_id
)
SELECT l.code, l.url, p.clicks, p.bots,
       coalesce(v.visitors, 0) AS visitors, coalesce(v.bot_visitors, 0) AS bot_visitors,
       sum(p.clicks) OVER ()::bigint AS all_clicks, sum(p.bots) OVER ()::bigint AS all_bots,
       sum(coalesce(v.visitors, 0)) OVER ()::bigint AS all_visitors,
       sum(coalesce(v.bot_visitors, 0)) OVER ()::bigint AS all_bot_visitors
FROM per_link p JOIN links l ON l.id = p.link_id LEFT JOIN per_link_visits v ON v.link_id = p.link_id
ORDER BY p.clicks DESC, p.bots DESC, l.code COLLATE "C"
LIMIT $5
"""
_BUCKETS = msgspec.json.Decoder(list[tuple[int, int, int]])
_RULES = msgspec.json.Decoder(BotRulesUsed | None)
_PAIR = msgspec.json.Decoder(tuple[int, int])
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
            row = await conn.fetchrow(_LINK_STATS_SQL[window.interval], code,
                                      window.start, window.end, first_day, end_day, TOP_VALUES)  # fmt: skip
        if row is None or row["link_id"] is None:
            return None
        series = _zero_filled(_BUCKETS.decode(row["series"]), _BUCKETS.decode(row["visitors"]),
                              window.start, window.end, step)  # fmt: skip
        if row["visitor_days"] is not None:
            visitors, bot_visitors = _PAIR.decode(row["visitor_days"])
        else:
            visitors, bot_visitors = sum(p.visitors for p in series), sum(p.bot_visitors for p in series)
        top: dict[str, list[Ranked]] = {name: [] for name in _DIMENSIONS.values()}
        for dimension, value, clicks in _TOP_ROWS.decode(row["top"]):
            # A dimension this build has no top list for (lang, backfilled by migration 0010) is left out, not a 500.
            if (plural := _DIMENSIONS.get(dimension)) is not None:
                top[plural].append(Ranked(value=value, clicks=clicks))
        return LinkStats(
            code=code,
            from_=window.start,
            to=window.end,
            interval=window.interval,
            total=sum(p.clicks for p in series),
            bots=sum(p.bots for p in series),
            visitors=visitors,
            bot_visitors=bot_visitors,
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
                first = rows[0]
                clicks, bots = first["all_clicks"], first["all_bots"]
                visitors, bot_visitors = first["all_visitors"], first["all_bot_visitors"]
            else:
                clicks = bots = visitors = bot_visitors = 0
        return Overview(
            from_=start,
            to=end,
            clicks=clicks,
            bots=bots,
            visitors=visitors,
            bot_visitors=bot_visitors,
            top_links=[
                LinkCount(
                    code=r["code"],
                    url=r["url"],
                    clicks=r["clicks"],
                    bots=r["bots"],
                    visitors=r["visitors"],
                    bot_visitors=r["bot_visitors"],
                )
                for r in rows
            ],
            bot_rules=_RULES.decode(rules or "null"),
        )


def _zero_filled(
    buckets: list[tuple[int, int, int]],
    visits: list[tuple[int, int, int]],
    start: datetime,
    end: datetime,
    step: timedelta,
) -> list[Point]:
    """Every bucket of `[start, end)`, those without a row at zero.

    `buckets` are (epoch seconds, clicks, bots), `visits` (epoch seconds, visitors, bot visitors).
    """
    stored = {epoch: (clicks, bots) for epoch, clicks, bots in buckets}
    visited = {epoch: (humans, bots) for epoch, humans, bots in visits}
    epoch, seconds = int(start.timestamp()), int(step.total_seconds())
    series = []
    ts = start
    while ts < end:
        clicks, bots = stored.get(epoch, (0, 0))
        visitors, bot_visitors = visited.get(epoch, (0, 0))
        series.append(Point(ts=ts, clicks=clicks, bots=bots, visitors=visitors, bot_visitors=bot_visitors))
        ts += step
        epoch += seconds
    return series
