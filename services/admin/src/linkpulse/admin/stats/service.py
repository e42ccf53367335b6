"""Stats from the rollups ingest keeps: series, top values, overview; unique visitors; filters and timezones.

Unique visitors per day come from `link_visitor_counts_day`; per hour or minute, per local day of a timezone, under a
filter, and for the hours at the edges of an overview window, they are counted from the clicks' visitor keys
(`click_events`, by its (link_id, ts) index): distinct counts do not add up across buckets, so no rollup can hold them.

Which table serves what (docs/analytics.md, "Slicing the stats"): without a filter, the click rollup of the interval
when the buckets are whole UTC buckets of it (always for tz=UTC), else the finest rollup whose buckets the local ones
are made of (hours for the days of Europe/Berlin, minutes for those of Asia/Kolkata), re-bucketed in SQL by
`width_bucket` over the boundaries the window computed; with one filter at hour or day interval, the dimension rollups
the same way; anything else (a minute series under a filter, several filters, top lists and visitors under a filter)
from the link's clicks in the window.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from linkpulse.admin.stats.filters import Filter, Filters, clicks_where
from linkpulse.admin.stats.freshness import decode_freshness, freshness_columns
from linkpulse.admin.stats.schemas import BotRulesUsed, LinkCount, LinkStats, Overview, Point, Ranked, TopValues
from linkpulse.admin.stats.window import STEPS, UTC_ZONE, Interval, Window, ceil_to, floor_to
from linkpulse.dimensions import BY_NAME, DIMENSIONS, located_only_sql
from linkpulse.validation import could_be_code

__all__ = ["TOP_VALUES", "Plan", "StatsService", "plan"]

TOP_VALUES = 10
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC_ZONE)
# One statement, so one snapshot: the series, the top lists and the freshness count the same batches without a
# transaction around several (BEGIN, three queries and COMMIT were five round trips, and their asyncpg and
# event-loop work was most of the admin's CPU under `linkpulse bench stats`). The statement is put together from
# the fixed fragments below, chosen by the window and the filtered dimensions' names, never from input; its
# arguments are named `@name` and numbered when it is first put together.
# The series comes as [epoch seconds, clicks, bots], the top values as [dimension, value, clicks], ranked humans
# only, ties broken by value in byte order (COLLATE "C") so no locale changes the order.
_LINK_STATS = """
WITH link AS (SELECT id FROM links WHERE code = @code AND deleted_at IS NULL),{matching}
ranked AS ({ranked})
SELECT (SELECT id FROM link) AS link_id, ({rules}) AS bot_rules,
       ({series}) AS series,
       (SELECT coalesce(json_agg(json_build_array(dimension, value, clicks) ORDER BY dimension, rank), '[]')
        FROM ranked WHERE rank <= @top) AS top,
       ({visitors}) AS visitors,
       ({visitor_days}) AS visitor_days,
       {freshness}
"""
# What is counted from the clicks is counted from one read of them: the link's clicks in the window that match the
# filters, read once through the (link_id, ts) index (each part reading them itself read the heap up to four times).
_MATCHING = """
matching AS MATERIALIZED (
    SELECT ts, is_bot, visitor{columns} FROM click_events
    WHERE link_id = (SELECT id FROM link) AND ts >= @lo AND ts < @hi{where}
),"""
_MATCHING_DIMENSIONS = "".join(f", {d.expression} AS {d.name}" for d in DIMENSIONS)
# Series, by source. Whole UTC buckets of the interval, as stored:
_SERIES_DIRECT = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM bucket)::bigint, clicks, bot_clicks) ORDER BY bucket),
                '[]')
FROM {table} WHERE link_id = (SELECT id FROM link) AND bucket >= @lo AND bucket < @hi
"""
# The dimension rollup per UTC day (a date column): its days are the buckets when they are UTC days.
_SERIES_DIMENSION_DAY = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM bucket::timestamp)::bigint, clicks, bot_clicks)), '[]')
FROM link_dimension_day
WHERE link_id = (SELECT id FROM link) AND bucket >= @day_lo AND bucket < @day_hi AND dimension = @dim AND value = @value
"""
# Finer stored buckets (or clicks) summed into the window's buckets: `width_bucket` gives the position of the
# boundary at or before each, and the boundary itself is the bucket's key.
_SERIES_BUCKETED = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM (@bounds::timestamptz[])[b])::bigint, clicks, bots)), '[]')
FROM (SELECT width_bucket(bucket, @bounds::timestamptz[]) AS b, sum(clicks)::bigint AS clicks,
             sum(bot_clicks)::bigint AS bots
      FROM {table} WHERE link_id = (SELECT id FROM link) AND bucket >= @lo AND bucket < @hi{condition} GROUP BY 1) AS s
"""
_DIMENSION_IS = " AND dimension = @dim AND value = @value"
_SERIES_MATCHING = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM (@bounds::timestamptz[])[b])::bigint, clicks, bots)), '[]')
FROM (SELECT width_bucket(ts, @bounds::timestamptz[]) AS b, count(*) FILTER (WHERE NOT is_bot) AS clicks,
             count(*) FILTER (WHERE is_bot) AS bots
      FROM matching GROUP BY 1) AS s
"""
# Top lists from the dimension rollups over the window widened to whole UTC hours: its whole UTC days from the day
# rollup, the hours at either end from the hour rollup (like the overview's series).
_TOP_ROLLUPS = """
SELECT dimension, value, sum(clicks)::bigint AS clicks,
       row_number() OVER (PARTITION BY dimension ORDER BY sum(clicks) DESC, value COLLATE "C") AS rank
FROM (SELECT dimension, value, clicks FROM link_dimension_day
      WHERE link_id = (SELECT id FROM link) AND bucket >= @top_first_day AND bucket < @top_last_day
      UNION ALL
      SELECT dimension, value, clicks FROM link_dimension_hour
      WHERE link_id = (SELECT id FROM link) AND bucket >= @top_lo AND bucket < @top_first
      UNION ALL
      SELECT dimension, value, clicks FROM link_dimension_hour
      WHERE link_id = (SELECT id FROM link) AND bucket >= @top_last AND bucket < @top_hi) AS spans
GROUP BY dimension, value
HAVING sum(clicks) > 0
"""
# Top lists under filters, from the matching human clicks of exactly the window (whose columns are named for their
# dimensions).
_TOP_CLICKS = f"""
SELECT d.dimension, d.value, count(*) AS clicks,
       row_number() OVER (PARTITION BY d.dimension ORDER BY count(*) DESC, d.value COLLATE "C") AS rank
FROM matching AS m
CROSS JOIN LATERAL (VALUES {", ".join(f"('{d.name}', m.{d.name})" for d in DIMENSIONS)}) AS d(dimension, value)
WHERE NOT m.is_bot AND {located_only_sql("d")}
GROUP BY d.dimension, d.value
"""
# Unique visitors as [epoch seconds, humans, bots] per bucket: a UTC day's from its counts (link_visitor_counts_day),
# an hour's or minute's counted from the keys of its clicks.
_DAY_VISITORS = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM day::timestamp)::bigint, visitors, bot_visitors)),
                '[]')
FROM link_visitor_counts_day WHERE link_id = (SELECT id FROM link) AND day >= @day_lo AND day < @day_hi
"""
_TRUNC_VISITORS = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM bucket)::bigint, humans, bots)), '[]')
FROM (SELECT date_trunc('{step}', ts, 'UTC') AS bucket,
             count(DISTINCT visitor) FILTER (WHERE NOT is_bot) AS humans,
             count(DISTINCT visitor) FILTER (WHERE is_bot) AS bots
      FROM click_events WHERE link_id = (SELECT id FROM link) AND ts >= @lo AND ts < @hi AND visitor IS NOT NULL
      GROUP BY 1) AS b
"""
# Any other buckets (a local day, a local hour across :30, any bucket under a filter): each bucket's distinct
# (UTC day, visitor) pairs, since a key is salted per UTC day and a local day spans two of them. Made distinct by
# hashing first and counted after: count(DISTINCT (day, visitor)) sorts row values, several times slower.
_BUCKETED_VISITORS = """
SELECT coalesce(json_agg(json_build_array(extract(epoch FROM (@bounds::timestamptz[])[b])::bigint, humans, bots)), '[]')
FROM (SELECT b, count(*) FILTER (WHERE NOT is_bot) AS humans, count(*) FILTER (WHERE is_bot) AS bots
      FROM (SELECT DISTINCT width_bucket(ts, @bounds::timestamptz[]) AS b, (ts AT TIME ZONE 'UTC')::date AS day,
                            visitor, is_bot
            FROM matching WHERE visitor IS NOT NULL) AS k
      GROUP BY b) AS c
"""
_MATCHING_WINDOW_VISITORS = """
SELECT json_build_array(count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot))
FROM (SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS day, visitor, is_bot FROM matching
      WHERE visitor IS NOT NULL) AS k
"""
# The window's visitors, [humans, bots]: each UTC day's distinct visitors within the window, added up (a key
# is salted per day, so no visitor is ever one across days). For UTC day series the sum of the points does it.
_WINDOW_VISITORS = """
SELECT json_build_array(count(DISTINCT (day, visitor)) FILTER (WHERE NOT is_bot),
                        count(DISTINCT (day, visitor)) FILTER (WHERE is_bot))
FROM (SELECT (ts AT TIME ZONE 'UTC')::date AS day, visitor, is_bot FROM click_events
      WHERE link_id = (SELECT id FROM link) AND ts >= @lo AND ts < @hi AND visitor IS NOT NULL) AS k
"""
# The newest rules (ingest's at its last connection, or a later reclassify's), as JSON.
_BOT_RULES = """
SELECT json_build_object('version', version,
                         'since', least(reclassified_since, first_used_at),
                         'reclassified_at', reclassified_at)
FROM bot_rules ORDER BY greatest(last_used_at, reclassified_at) DESC, version LIMIT 1
"""
_ARG = re.compile(r"@([a-z_]+)")

SeriesSource = Literal[
    "clicks_minute", "clicks_hour", "clicks_day",  # whole UTC buckets of the interval, as stored
    "bucketed_minute", "bucketed_hour", "bucketed_day",  # local buckets made of that rollup's UTC buckets
    "dimension_day", "dimension_hour",  # one filter: the dimension rollups
    "clicks",  # counted from click_events
]  # fmt: skip
VisitorSource = Literal["day_counts", "trunc_minute", "trunc_hour", "clicks"]


class Plan(NamedTuple):
    """Which fragments answer a request: decided from the window and the filtered dimensions' names alone."""

    series: SeriesSource
    top_from_clicks: bool
    visitors: VisitorSource
    filtered: tuple[str, ...]
    """The filtered dimensions' names, in linkpulse.dimensions order."""


@cache
def _statement(chosen: Plan) -> tuple[str, tuple[str, ...]]:
    """The SQL of a plan (its arguments numbered) and the names of its arguments in order; filter values follow."""
    where = "{where}"  # filled in once the named arguments are numbered
    if chosen.series.startswith("clicks_"):
        series = _SERIES_DIRECT.format(table=f"link_{chosen.series}")
    elif chosen.series.startswith("bucketed_"):
        table = f"link_clicks_{chosen.series.removeprefix('bucketed_')}"
        series = _SERIES_BUCKETED.format(table=table, condition="")
    elif chosen.series == "dimension_day":
        series = _SERIES_DIMENSION_DAY
    elif chosen.series == "dimension_hour":
        series = _SERIES_BUCKETED.format(table="link_dimension_hour", condition=_DIMENSION_IS)
    else:
        series = _SERIES_MATCHING
    if chosen.visitors == "day_counts":
        visitors, visitor_days = _DAY_VISITORS, "NULL"
    elif chosen.visitors.startswith("trunc_"):
        visitors = _TRUNC_VISITORS.format(step=chosen.visitors.removeprefix("trunc_"))
        visitor_days = _WINDOW_VISITORS
    else:
        visitors, visitor_days = _BUCKETED_VISITORS, _MATCHING_WINDOW_VISITORS
    reads_clicks = chosen.series == "clicks" or chosen.top_from_clicks or chosen.visitors == "clicks"
    matching = (
        _MATCHING.format(columns=_MATCHING_DIMENSIONS if chosen.top_from_clicks else "", where=where)
        if reads_clicks
        else ""
    )
    named = _LINK_STATS.format(
        matching=matching,
        ranked=_TOP_CLICKS if chosen.top_from_clicks else _TOP_ROLLUPS,
        rules=_BOT_RULES.strip(),
        series=series.strip(),
        visitors=visitors.strip(),
        visitor_days=visitor_days.strip(),
        freshness=freshness_columns("(SELECT id FROM link)"),
    )
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    numbered = _ARG.sub(number, named)
    # The SQL of the conditions depends on the dimensions alone; their values travel as the last arguments.
    conditions, _ = clicks_where(tuple(Filter(BY_NAME[name], "") for name in chosen.filtered), len(names) + 1)
    return numbered.replace("{where}", conditions), tuple(names)


def plan(window: Window, bounds: list[datetime], filters: Filters) -> Plan:
    """Where each part of a link's stats is read from (module docstring); `bounds` are `window.boundaries()`."""
    step = STEPS[window.interval]
    # Whole UTC buckets of the interval, as the click rollups store them: always so in UTC.
    uniform = window.tz is UTC_ZONE or (_aligned_to(bounds, step) and all(b - a == step for a, b in pairwise(bounds)))
    grain = window.interval if window.tz is UTC_ZONE else _grain(bounds)
    series: SeriesSource
    if not filters:
        series = f"clicks_{window.interval}" if uniform else (f"bucketed_{grain}" if grain else "clicks")  # type: ignore[assignment]
    elif len(filters) == 1 and window.interval != "minute":
        if uniform and window.interval == "day":
            series = "dimension_day"
        elif grain in ("day", "hour"):
            series = "dimension_hour"
        else:
            series = "clicks"
    else:
        series = "clicks"
    visitors: VisitorSource
    if filters or not uniform:
        visitors = "clicks"
    else:
        visitors = "day_counts" if window.interval == "day" else f"trunc_{window.interval}"  # type: ignore[assignment]
    return Plan(series, bool(filters), visitors, tuple(f.dimension.name for f in filters))


def _grain(bounds: list[datetime]) -> Interval | None:
    """The coarsest UTC bucket every boundary is a start of (None when not even a minute's: an old LMT offset)."""
    for interval in ("day", "hour", "minute"):
        if _aligned_to(bounds, STEPS[interval]):  # type: ignore[index]
            return interval  # type: ignore[return-value]
    return None


def _aligned_to(bounds: list[datetime], step: timedelta) -> bool:
    return all((b - _EPOCH) % step == timedelta(0) for b in bounds)


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
# The overview's geography: top countries and cities of every link's human clicks, spans as in _OVERVIEW.
_OVERVIEW_PLACES = """
WITH spans AS (
    SELECT dimension, value, clicks FROM link_dimension_hour
    WHERE bucket >= $1 AND bucket < $2 AND dimension IN ('country', 'city')
    UNION ALL
    SELECT dimension, value, clicks FROM link_dimension_day
    WHERE bucket >= $5 AND bucket < $6 AND dimension IN ('country', 'city')
    UNION ALL
    SELECT dimension, value, clicks FROM link_dimension_hour
    WHERE bucket >= $3 AND bucket < $4 AND dimension IN ('country', 'city')
), ranked AS (
    SELECT dimension, value, sum(clicks)::bigint AS clicks,
           row_number() OVER (PARTITION BY dimension ORDER BY sum(clicks) DESC, value COLLATE "C") AS rank
    FROM spans GROUP BY dimension, value HAVING sum(clicks) > 0
)
SELECT coalesce(json_agg(json_build_array(dimension, value, clicks) ORDER BY dimension, rank), '[]')
FROM ranked WHERE rank <= $7
"""
_OVERVIEW_RULES = f"SELECT ({_BOT_RULES.strip()}) AS bot_rules, {freshness_columns(None)}"
_BUCKETS = msgspec.json.Decoder(list[tuple[int, int, int]])
_RULES = msgspec.json.Decoder(BotRulesUsed | None)
_PAIR = msgspec.json.Decoder(tuple[int, int])
_TOP_ROWS = msgspec.json.Decoder(list[tuple[str, str, int]])
_PLURALS = {d.name: d.plural for d in DIMENSIONS}


class StatsService:
    """Reads the rollups; handlers call it and never build SQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Bind the service to the app's Postgres pool."""
        self._pool = pool

    async def link_stats(self, code: str, window: Window, filters: Filters = ()) -> LinkStats | None:
        """Series and top values of a live link in `window`, of the clicks matching `filters`; None when no live
        link has `code`."""
        if not could_be_code(code):
            return None
        bounds = window.boundaries()
        sql, names = _statement(plan(window, bounds, filters))
        args = _arguments(code, window, bounds, filters)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(sql, *(args[name] for name in names), *(f.value for f in filters))
        if row is None or row["link_id"] is None:
            return None
        series = _zero_filled(_BUCKETS.decode(row["series"]), _BUCKETS.decode(row["visitors"]), bounds, window.tz)
        if row["visitor_days"] is not None:
            visitors, bot_visitors = _PAIR.decode(row["visitor_days"])
        else:
            visitors, bot_visitors = sum(p.visitors for p in series), sum(p.bot_visitors for p in series)
        total = sum(p.clicks for p in series)
        top: dict[str, list[Ranked]] = {plural: [] for plural in _PLURALS.values()}
        for dimension, value, clicks in _TOP_ROWS.decode(row["top"]):
            top[_PLURALS[dimension]].append(Ranked(value=value, clicks=clicks))
        for f in filters:
            # Every matching click has the filtered value (an unknown region too, which no top list shows).
            top[f.dimension.plural] = [Ranked(value=f.value, clicks=total)] if total else []
        freshness = decode_freshness(row["as_of"], row["ingest_lag"])
        return LinkStats(
            code=code,
            from_=window.start.astimezone(window.tz),
            to=window.end.astimezone(window.tz),
            interval=window.interval,
            tz=window.tz.key,
            filters={f.dimension.name: f.value for f in filters},
            total=total,
            bots=sum(p.bots for p in series),
            visitors=visitors,
            bot_visitors=bot_visitors,
            series=series,
            top=TopValues(**top),
            bot_rules=_RULES.decode(row["bot_rules"] or "null"),
            as_of=freshness.as_of,
            ingest_lag=freshness.ingest_lag,
        )

    async def overview(self, start: datetime, end: datetime, limit: int, tz: ZoneInfo = UTC_ZONE) -> Overview:
        """Totals of every link in the hour-aligned `[start, end)` and the `limit` links with most clicks."""
        first_day = ceil_to(start, _DAY)
        last_day = floor_to(end, _DAY)
        # [start, first_day) and [last_day, end) from hours, whole days between; a window inside one
        # day (no whole day) is read from hours alone.
        bounds = (start, first_day, last_day, end) if first_day < last_day else (start, end, end, end)
        days = (_utc_date(bounds[1]), _utc_date(bounds[2]))
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(_OVERVIEW, *bounds, limit)
            places = await conn.fetchval(_OVERVIEW_PLACES, *bounds, *days, TOP_VALUES)
            info = await conn.fetchrow(_OVERVIEW_RULES)
            if rows:
                first = rows[0]
                clicks, bots = first["all_clicks"], first["all_bots"]
                visitors, bot_visitors = first["all_visitors"], first["all_bot_visitors"]
            else:
                clicks = bots = visitors = bot_visitors = 0
        geography: dict[str, list[Ranked]] = {"country": [], "city": []}
        for dimension, value, count in _TOP_ROWS.decode(places):
            geography[dimension].append(Ranked(value=value, clicks=count))
        freshness = decode_freshness(info["as_of"], info["ingest_lag"])
        return Overview(
            from_=start.astimezone(tz),
            to=end.astimezone(tz),
            clicks=clicks,
            bots=bots,
            visitors=visitors,
            bot_visitors=bot_visitors,
            tz=tz.key,
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
            countries=geography["country"],
            cities=geography["city"],
            bot_rules=_RULES.decode(info["bot_rules"] or "null"),
            as_of=freshness.as_of,
            ingest_lag=freshness.ingest_lag,
        )


def _arguments(code: str, window: Window, bounds: list[datetime], filters: Filters) -> dict[str, object]:
    """Every named argument a plan's statement may take (each statement takes those it names)."""
    # Top lists from the rollups cover the window widened to whole UTC hours, whole UTC days from the day rollup.
    top_lo, top_hi = floor_to(window.start, _HOUR), ceil_to(window.end, _HOUR)
    top_first, top_last = ceil_to(top_lo, _DAY), floor_to(top_hi, _DAY)
    if top_first >= top_last:  # no whole day: hours alone
        top_first = top_last = top_hi
    dimension, value = (filters[0].dimension.name, filters[0].value) if filters else ("", "")
    return {
        "code": code,
        "lo": window.start,
        "hi": window.end,
        "bounds": bounds,
        "day_lo": _utc_date(window.start),
        "day_hi": _utc_date(window.end),
        "top_lo": top_lo,
        "top_first": top_first,
        "top_last": top_last,
        "top_hi": top_hi,
        "top_first_day": _utc_date(top_first),
        "top_last_day": _utc_date(top_last),
        "dim": dimension,
        "value": value,
        "top": TOP_VALUES,
    }


def _utc_date(ts: datetime) -> date:
    return ts.astimezone(UTC_ZONE).date()


def _zero_filled(
    buckets: list[tuple[int, int, int]], visits: list[tuple[int, int, int]], bounds: list[datetime], tz: ZoneInfo
) -> list[Point]:
    """Every bucket starting at `bounds[:-1]`, those without a row at zero, each `ts` in `tz`.

    `buckets` are (epoch seconds, clicks, bots), `visits` (epoch seconds, visitors, bot visitors).
    """
    stored = {epoch: (clicks, bots) for epoch, clicks, bots in buckets}
    visited = {epoch: (humans, bots) for epoch, humans, bots in visits}
    series = []
    for ts in bounds[:-1]:
        epoch = int(ts.timestamp())
        clicks, bots = stored.get(epoch, (0, 0))
        visitors, bot_visitors = visited.get(epoch, (0, 0))
        series.append(Point(ts=ts.astimezone(tz), clicks=clicks, bots=bots, visitors=visitors,
                            bot_visitors=bot_visitors))  # fmt: skip
    return series
