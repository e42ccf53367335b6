"""Re-run the bot rules over stored clicks and move the rollups with them, exactly, while ingest keeps storing.

1. Plan: every distinct (user agent, is_bot, device) among the clicks from `since` on, in one scan; each user
   agent is read once with the rules, and the classes whose bot flag changes become a temporary table.
2. Move: each partition of click_events is walked in ranges of pages (a TID range scan, so one pass reads
   the table once). One statement per range, in its own short transaction, updates the clicks of a changed
   class (`WHERE is_bot = old AND device = old`: only rows still in the old class move, so a second run, or
   two runs at once, move nothing twice) and adds the exact deltas (-1 in the old class, +1 in the new) to
   link_totals, the minute, hour and day series and the dimension rollups per day and per hour
   (link_dimension_day, link_dimension_hour: every dimension of linkpulse.dimensions). The visitor keys of the
   moved clicks move too: into the new class of their day's distinct visitors, and out of the old one unless a
   click of theirs that day stays there; link_visitor_counts_day moves by the keys that actually joined or left. A
   visitor key hashes the user agent, so all of a visitor's clicks move with it; only clicks before `since`
   on the same day stay behind (the NOT EXISTS looks for those alone).

Ingest only inserts clicks and adds to the rollups, so the deltas commute with its batches; both statements
take the rollup rows in the same order (table by table, sorted keys), so they cannot deadlock, and a
deadlock with anything else is retried. A click stored meanwhile is counted once, by ingest, in the class
ingest gave it; if its page is scanned later and its class is one that changes, it moves with its deltas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from linkpulse.bots import BotRules
from linkpulse.dimensions import lateral_values, located_only_sql
from linkpulse.useragent import Enrichment, read_user_agent

__all__ = ["CHUNK_PAGES", "Outcome", "Partition", "Progress", "reclassify"]

CHUNK_PAGES = 1000
"""Pages (8 KiB) per transaction: about 30,000 clicks, a fraction of a second, so row locks are held briefly."""
_DEADLOCK_RETRIES = 5

Progress = Callable[[int], None]
"""Called with the number of stored clicks (estimated from pages) each range covered."""

_PLAN = """
SELECT tableoid::bigint AS part, ua, is_bot, device, count(*) AS clicks, min(ts) AS oldest
FROM click_events WHERE ts >= $1
GROUP BY 1, 2, 3, 4
"""
# Every partition with its bounds (NULL for the default partition) and its size in pages now; pages added
# later hold clicks ingest stored after the plan, classified by ingest's own rules.
_PARTITIONS = """
SELECT c.oid::bigint AS part,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''\\)')::timestamptz AS lower_bound,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz AS upper_bound,
       (pg_relation_size(c.oid) / current_setting('block_size')::integer)::bigint AS pages
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'click_events'::regclass
"""
_CHANGES = """
CREATE TEMPORARY TABLE IF NOT EXISTS reclassify_changes (
    ua text NOT NULL, is_bot boolean NOT NULL, device text NOT NULL, new_is_bot boolean NOT NULL,
    new_device text NOT NULL, PRIMARY KEY (ua, is_bot, device)
)
"""
# One range of pages of one partition. The ts bounds prune the scan to that partition (the default partition,
# without bounds, is matched by tableoid); the buckets are UTC and the statement mirrors ingest's rollup
# statement (services/ingest store.py): the same tables in the same order, keys sorted.
_MOVE = """
WITH moved AS (
    UPDATE click_events c SET is_bot = r.new_is_bot, device = r.new_device
    FROM reclassify_changes r
    WHERE c.tableoid = $1::oid
      AND c.ctid >= format('(%s,0)', $2::bigint)::tid AND c.ctid < format('(%s,0)', $3::bigint)::tid
      AND c.ts >= $4 AND c.ts >= coalesce($5::timestamptz, '-infinity') AND c.ts < coalesce($6::timestamptz, 'infinity')
      AND c.ua = r.ua AND c.is_bot = r.is_bot AND c.device = r.device
    RETURNING c.link_id, c.ts, c.country, c.region, c.city, c.asn, c.referrer_host, c.browser, c.os, c.lang,
              c.visitor,
              r.is_bot AS old_bot, r.device AS old_device, r.new_is_bot AS new_bot, r.new_device
), moved_visitors AS (
    SELECT DISTINCT link_id, (ts AT TIME ZONE 'UTC')::date AS day, old_bot, new_bot, visitor
    FROM moved WHERE visitor IS NOT NULL
), visitors_in AS (
    INSERT INTO link_visitors_day (link_id, day, is_bot, visitor)
    SELECT link_id, day, new_bot, visitor FROM moved_visitors ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING
    RETURNING link_id, day, is_bot, 1 AS sign
), visitors_out AS (
    DELETE FROM link_visitors_day v USING moved_visitors m
    WHERE v.link_id = m.link_id AND v.day = m.day AND v.is_bot = m.old_bot AND v.visitor = m.visitor
      AND NOT EXISTS (
          SELECT 1 FROM click_events k
          WHERE k.link_id = m.link_id AND k.ts >= m.day AT TIME ZONE 'UTC'
            AND k.ts < least($4, (m.day + 1) AT TIME ZONE 'UTC') AND k.is_bot = m.old_bot AND k.visitor = m.visitor)
    RETURNING v.link_id, v.day, v.is_bot, -1 AS sign
), visitor_counts AS (
    INSERT INTO link_visitor_counts_day AS t (link_id, day, visitors, bot_visitors)
    SELECT link_id, day, coalesce(sum(sign) FILTER (WHERE NOT is_bot), 0), coalesce(sum(sign) FILTER (WHERE is_bot), 0)
    FROM (SELECT * FROM visitors_in UNION ALL SELECT * FROM visitors_out) AS d GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (link_id, day) DO UPDATE SET
        visitors = t.visitors + excluded.visitors,
        bot_visitors = t.bot_visitors + excluded.bot_visitors
), delta AS (
    SELECT m.link_id, m.ts, m.country, m.region, m.city, m.asn, m.referrer_host, m.browser, m.os, m.lang, s.sign,
           s.bot, s.device
    FROM moved m CROSS JOIN LATERAL (VALUES (1, m.new_bot, m.new_device), (-1, m.old_bot, m.old_device))
        AS s(sign, bot, device)
), totals AS (
    INSERT INTO link_totals AS t (link_id, clicks, bot_clicks)
    SELECT link_id, coalesce(sum(sign) FILTER (WHERE NOT bot), 0), coalesce(sum(sign) FILTER (WHERE bot), 0)
    FROM delta GROUP BY link_id ORDER BY link_id
    ON CONFLICT (link_id) DO UPDATE SET
        clicks = t.clicks + excluded.clicks,
        bot_clicks = t.bot_clicks + excluded.bot_clicks
), {series}, {dimensions}
SELECT count(*) FILTER (WHERE new_bot) AS to_bots, count(*) FILTER (WHERE NOT new_bot) AS to_humans FROM moved
"""
_SERIES = """series_{table} AS (
    INSERT INTO link_clicks_{table} AS t (link_id, bucket, clicks, bot_clicks)
    SELECT link_id, date_trunc('{table}', ts, 'UTC'),
           coalesce(sum(sign) FILTER (WHERE NOT bot), 0), coalesce(sum(sign) FILTER (WHERE bot), 0)
    FROM delta GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (link_id, bucket) DO UPDATE SET
        clicks = t.clicks + excluded.clicks,
        bot_clicks = t.bot_clicks + excluded.bot_clicks
)"""
# The rows of every dimension (linkpulse.dimensions) per UTC day and per UTC hour, as ingest writes them.
_DIMENSION_BUCKETS = (("day", "(ts AT TIME ZONE 'UTC')::date"), ("hour", "date_trunc('hour', ts, 'UTC')"))
_DIMENSIONS = f"""dimensions_{{table}} AS (
    INSERT INTO link_dimension_{{table}} AS t (link_id, bucket, dimension, value, clicks, bot_clicks)
    SELECT link_id, {{bucket}}, d.dimension, d.value,
           coalesce(sum(sign) FILTER (WHERE NOT bot), 0), coalesce(sum(sign) FILTER (WHERE bot), 0)
    FROM delta {lateral_values("d")}
    WHERE {located_only_sql("d")}
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (link_id, bucket, dimension, value) DO UPDATE SET
        clicks = t.clicks + excluded.clicks,
        bot_clicks = t.bot_clicks + excluded.bot_clicks
)"""
_MOVE = _MOVE.format(
    series=", ".join(_SERIES.format(table=t) for t in ("minute", "hour", "day")),
    dimensions=", ".join(_DIMENSIONS.format(table=t, bucket=b) for t, b in _DIMENSION_BUCKETS),
)
# least(): a run over a shorter window with the same rules leaves the earlier, wider one standing.
_RECORD = """
INSERT INTO bot_rules AS b (version, reclassified_since, reclassified_at, reclassified_clicks)
VALUES ($1, $2, now(), $3)
ON CONFLICT (version) DO UPDATE SET
    reclassified_since = least(b.reclassified_since, excluded.reclassified_since),
    reclassified_at = excluded.reclassified_at,
    reclassified_clicks = b.reclassified_clicks + excluded.reclassified_clicks
"""


@dataclass
class Partition:
    """A click_events partition and the part of it this run walks."""

    oid: int
    lower: datetime | None
    upper: datetime | None
    pages: int
    clicks: int = 0
    """Clicks of the plan in it (from `since` on): the progress a walk through its pages stands for."""


@dataclass
class Outcome:
    """What a run did."""

    version: str
    """The rules it classified with (BotRules.version)."""
    since: datetime | None
    """The oldest click it covered (`since`, or the oldest stored click); None when there was none."""
    clicks: int = 0
    """Clicks it read the class of (from `since` on, at the plan)."""
    user_agents: int = 0
    """Distinct user agents among them."""
    changed_agents: int = 0
    """User agents whose bot flag the rules change."""
    to_bots: int = 0
    to_humans: int = 0
    pages: int = 0
    """Pages of the partitions walked (those holding a click to move)."""
    seconds: float = 0.0
    partitions: list[Partition] = field(default_factory=list, repr=False)

    @property
    def walked_clicks(self) -> int:
        """Clicks of the plan in the partitions walked: what `progress` counts up to."""
        return sum(p.clicks for p in self.partitions)

    @property
    def rate(self) -> float:
        """Stored clicks covered per second."""
        return self.clicks / self.seconds if self.seconds > 0 else 0.0


async def reclassify(
    conn: asyncpg.Connection,
    rules: BotRules,
    since: datetime | None = None,
    *,
    chunk_pages: int = CHUNK_PAGES,
    on_plan: Callable[[Outcome], None] | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Re-run `rules` over the clicks from `since` on (all stored ones by default) and fix the rollups.

    `conn` must be outside a transaction (each range commits on its own). `on_plan` sees the outcome once
    the plan is known (clicks, agents, pages), before any row moves; `progress` is called after each range.
    """
    if chunk_pages < 1:
        raise ValueError("chunk_pages must be at least 1")
    started = time.perf_counter()
    plan = await conn.fetch(_PLAN, since if since is not None else _NO_LIMIT)
    oldest = min((row["oldest"] for row in plan), default=None)
    outcome = Outcome(version=rules.version, since=since if since is not None else oldest)
    readings: dict[str, Enrichment] = {}
    changes: dict[tuple[str, bool, str], tuple[str, bool, str, bool, str]] = {}
    per_part: dict[int, int] = {}
    changed_parts: set[int] = set()
    for row in plan:
        ua, was_bot, device = row["ua"], row["is_bot"], row["device"]
        outcome.clicks += row["clicks"]
        per_part[row["part"]] = per_part.get(row["part"], 0) + row["clicks"]
        reading = readings.get(ua)
        if reading is None:
            reading = readings[ua] = read_user_agent(ua, rules)
        if reading.is_bot != was_bot:
            changes[ua, was_bot, device] = (ua, was_bot, device, reading.is_bot, reading.device)
            changed_parts.add(row["part"])
    outcome.user_agents = len(readings)
    outcome.changed_agents = len({ua for ua, _, _ in changes})
    # Only the partitions that hold a click to move are walked.
    outcome.partitions = [
        Partition(
            oid=r["part"], lower=r["lower_bound"], upper=r["upper_bound"], pages=r["pages"], clicks=per_part[r["part"]]
        )
        for r in await conn.fetch(_PARTITIONS)
        if r["part"] in changed_parts
    ]
    outcome.pages = sum(p.pages for p in outcome.partitions)
    if on_plan is not None:
        on_plan(outcome)
    if changes:
        await conn.execute(_CHANGES)
        await conn.execute("TRUNCATE reclassify_changes")
        await conn.copy_records_to_table("reclassify_changes", records=list(changes.values()))
        await conn.execute("ANALYZE reclassify_changes")
        for part in outcome.partitions:
            await _walk(conn, part, since if since is not None else _NO_LIMIT, chunk_pages, outcome, progress)
    if outcome.since is not None:
        await conn.execute(_RECORD, rules.version, outcome.since, outcome.to_bots + outcome.to_humans)
    outcome.seconds = time.perf_counter() - started
    return outcome


# ts >= this holds for every storable click (ingest accepts years 1 to 9999); it keeps one plan for both cases.
_NO_LIMIT = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


async def _walk(
    conn: asyncpg.Connection,
    part: Partition,
    since: datetime,
    chunk_pages: int,
    outcome: Outcome,
    progress: Progress | None,
) -> None:
    for first in range(0, part.pages, chunk_pages):
        last = min(first + chunk_pages, part.pages)
        # The last range is open-ended: rows that moved to new pages while a range was walked (an update in
        # a full page) are found there, and pages ingest added since are cheap to skip.
        end = last if last < part.pages else 2**31
        to_bots, to_humans = await _move(conn, part, first, end, since)
        outcome.to_bots += to_bots
        outcome.to_humans += to_humans
        if progress is not None:
            progress(part.clicks * (last - first) // max(part.pages, 1))


async def _move(conn: asyncpg.Connection, part: Partition, first: int, end: int, since: datetime) -> tuple[int, int]:
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            async with conn.transaction():
                row = await conn.fetchrow(_MOVE, part.oid, first, end, since, part.lower, part.upper)
            return row["to_bots"], row["to_humans"]
        except asyncpg.DeadlockDetectedError:
            if attempt == _DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
