"""The stats bench's volume seeding: one link's clicks written by SQL, and its rollups built from exactly those rows.

Publishing 10^8 clicks through NATS and ingest would take about 45 minutes at ingest's 40k/s on the bench machine
(its shard loop, not Postgres, is the limit there), so `linkpulse bench stats --seed sql` writes them into
`click_events` straight from `generate_series`, a time slice per statement, and every statement rolls up the rows
it inserted (its `RETURNING`) the way ingest's store statement rolls up a batch: totals, minute/hour/day series,
the dimensions per day and per hour (the list and expressions of linkpulse.dimensions), and the distinct visitors
per day with their counts. The tables are the ones ingest writes, with their indexes, constraints and fillfactor;
only the loader's session commits without waiting for the WAL flush (synchronous_commit off). The rollups are
therefore built in bulk, not by ingest; tests/integration/libs/test_bench_volume.py checks them, exactly, against
the seeded clicks, and `check` compares their sums with a count of the clicks after every seeding.

The clicks: one link, spread evenly (with jitter) over `days` days ending now; weighted countries (each with two
cities and regions and a network, ~10% unlocated), languages, referrers and browser/OS/device profiles, 5% of
them bots (crawlers and link-preview fetchers, each from a few bot instances); human visitor keys drawn from a
daily pool with a skew that gives repeat visits (a key is a day's, as the redirect's daily salt makes it), the
anonymised address a function of the visitor. Ids are UUIDv7-shaped from each click's time (plus a serial, so
unique), so the primary key grows at its right edge as ingest's does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

import asyncpg

from linkpulse.dimensions import DIMENSIONS, lateral_values, located_only_sql

__all__ = ["CHUNK_ROWS", "VolumeSeed", "check", "seed_volume"]

CHUNK_ROWS: Final = 500_000
"""Clicks per statement (one time slice). Its RETURNING rows are held for the rollups: a few hundred MB at most."""
DAY_MS: Final = 86_400_000

# (value, weight) tables; values travel as array arguments, the SQL only indexes them.
_COUNTRIES: Final = (
    ("US", 30), ("DE", 14), ("GB", 10), ("FR", 8), ("IN", 8), ("BR", 6), ("JP", 5), ("CA", 4), ("NL", 3),
    ("ES", 3), ("IT", 3), ("", 6),
)  # fmt: skip
_PLACES: Final = {  # country → two (region, city) and a network; "" → unknown
    "US": (("US-CA", "San Francisco, US-CA"), ("US-NY", "New York, US-NY"), "AS7922 Comcast"),
    "DE": (("DE-BE", "Berlin, DE-BE"), ("DE-BY", "Munich, DE-BY"), "AS3320 Deutsche Telekom AG"),
    "GB": (("GB-ENG", "London, GB-ENG"), ("GB-SCT", "Edinburgh, GB-SCT"), "AS2856 British Telecom"),
    "FR": (("FR-IDF", "Paris, FR-IDF"), ("FR-ARA", "Lyon, FR-ARA"), "AS3215 Orange"),
    "IN": (("IN-MH", "Mumbai, IN-MH"), ("IN-KA", "Bengaluru, IN-KA"), "AS55836 Reliance Jio"),
    "BR": (("BR-SP", "Sao Paulo, BR-SP"), ("BR-RJ", "Rio de Janeiro, BR-RJ"), "AS28573 Claro"),
    "JP": (("JP-13", "Tokyo, JP-13"), ("JP-27", "Osaka, JP-27"), "AS2516 KDDI"),
    "CA": (("CA-ON", "Toronto, CA-ON"), ("CA-QC", "Montreal, CA-QC"), "AS812 Rogers"),
    "NL": (("NL-NH", "Amsterdam, NL-NH"), ("NL-ZH", "Rotterdam, NL-ZH"), "AS1136 KPN"),
    "ES": (("ES-MD", "Madrid, ES-MD"), ("ES-CT", "Barcelona, ES-CT"), "AS3352 Telefonica"),
    "IT": (("IT-62", "Rome, IT-62"), ("IT-25", "Milan, IT-25"), "AS3269 Telecom Italia"),
    "": (("", ""), ("", ""), ""),
}
_LANGS: Final = (
    ("en-US", 30), ("en-us", 5), ("en-GB", 10), ("de-DE", 12), ("de", 3), ("fr-FR", 8), ("pt-BR", 6), ("ja", 5),
    ("es-ES", 5), ("it-IT", 3), ("nl-NL", 3), ("hi-IN", 2), ("", 8),
)  # fmt: skip
_REFERRERS: Final = (  # (referrer, referrer_host, weight)
    ("", "", 40), ("https://www.google.com/", "www.google.com", 15), ("https://t.co/", "t.co", 10),
    ("https://news.ycombinator.com/", "news.ycombinator.com", 5), ("https://www.linkedin.com/", "www.linkedin.com", 8),
    ("https://www.facebook.com/", "www.facebook.com", 8), ("https://mail.example/", "mail.example", 9),
    ("https://www.reddit.com/", "www.reddit.com", 5),
)  # fmt: skip
# (user agent, browser, os, device, is_bot, weight): what ingest's enrichment makes of each; bots 5 in 100.
_PROFILES: Final = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
     "Chrome", "Windows", "desktop", False, 28),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
     "Mobile/15E148 Safari/604.1", "Mobile Safari", "iOS", "mobile", False, 24),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile "
     "Safari/537.36", "Chrome Mobile", "Android", "mobile", False, 20),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
     "Safari/605.1", "Safari", "Mac OS X", "desktop", False, 10),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
     "Firefox", "Windows", "desktop", False, 5),
    ("Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
     "Mobile/15E148 Safari/604.1", "Mobile Safari", "iOS", "tablet", False, 4),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
     "Chrome", "Linux", "desktop", False, 4),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     "Googlebot", "Other", "bot", True, 2),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slackbot-LinkExpanding", "Other", "bot", True, 1),
    ("http.rb/5.1.1 (Mastodon/4.3.2; +https://mastodon.social/)", "Other", "Other", "bot", True, 1),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
     "FacebookBot", "Other", "bot", True, 1),
)  # fmt: skip
BOT_SHARE: Final = sum(p[5] for p in _PROFILES if p[4]) / sum(p[5] for p in _PROFILES)
HUMAN_POOL: Final = 1.0
"""A day's pool of human visitors, per click of that day; a click draws its visitor as pool * r^2 (r uniform), so
the first visitors come back often and most come once: about 0.54 distinct visitors a click (measured)."""
BOT_INSTANCES: Final = 8
"""Visitor keys (addresses) each bot profile fetches from in a day."""


def _pick(r: str, weights: Sequence[float]) -> str:
    """A CASE picking an index 1..n from the uniform `r` by `weights` (constants only, never input)."""
    total = sum(weights)
    bounds = list(accumulate(w / total for w in weights))[:-1]
    whens = " ".join(f"WHEN {r} < {b!r} THEN {i}" for i, b in enumerate(bounds, start=1))
    return f"(CASE {whens} ELSE {len(weights)} END)"


# $1 link id, $2 code, $3 slice start (epoch ms), $4 slice length (ms), $5 rows, $6 the slice's first serial,
# $7 human visitors in a day's pool, $8... the value tables as arrays.
_GENERATE = f"""
SELECT (lpad(to_hex(ms), 12, '0') || '7' || lpad(to_hex((random() * 4095)::int), 3, '0') || '8'
        || lpad(to_hex(serial), 15, '0'))::uuid AS id,
       to_timestamp(ms / 1000) + (ms % 1000) * interval '1 millisecond' AS ts,
       $1::bigint AS link_id, $2::text AS code,
       (CASE WHEN bot THEN '66.249.' || pi || '.0'
             ELSE (v % 223 + 1) || '.' || (v / 223 % 256) || '.' || (v / 57088 % 256) || '.0' END)::inet AS ip,
       ($8::text[])[pi] AS ua, ($9::text[])[ri] AS referrer, ($10::text[])[ri] AS referrer_host,
       ($11::text[])[li] AS lang, ($12::text[])[ci] AS country,
       CASE WHEN place < 0.9 THEN ($13::text[])[2 * ci - (place < 0.6)::int] ELSE '' END AS region,
       CASE WHEN place < 0.9 THEN ($14::text[])[2 * ci - (place < 0.6)::int] ELSE '' END AS city,
       CASE WHEN place < 0.9 THEN ($15::text[])[ci] ELSE '' END AS asn,
       ($16::text[])[pi] AS browser, ($17::text[])[pi] AS os, ($18::text[])[pi] AS device, bot AS is_bot,
       decode(md5(CASE WHEN bot THEN 'bot:' || day || ':' || pi || ':' || v ELSE day || ':' || v END), 'hex') AS visitor
FROM (
    SELECT ms, serial, ci, pi, ri, li, place, bot, ms / {DAY_MS} AS day,
           CASE WHEN bot THEN (rv * {BOT_INSTANCES})::bigint ELSE (rv * rv * $7::bigint)::bigint END AS v
    FROM (
        -- Each draw is made once, below, and picked from here: a CASE over random() would draw at every WHEN.
        SELECT ms, serial, place, rv, ci, pi, ri, li, ($19::boolean[])[pi] AS bot
        FROM (
            SELECT ms, serial, place, rv,
                   {_pick("rc", [w for _, w in _COUNTRIES])} AS ci,
                   {_pick("rp", [p[5] for p in _PROFILES])} AS pi,
                   {_pick("rr", [w for _, _, w in _REFERRERS])} AS ri,
                   {_pick("rl", [w for _, w in _LANGS])} AS li
            FROM (
                SELECT $3::bigint + ((n + random()) * $4::bigint / $5::bigint)::bigint AS ms, $6::bigint + n AS serial,
                       random() AS rc, random() AS rp, random() AS rr, random() AS rl, random() AS place,
                       random() AS rv
                FROM generate_series(0, $5::bigint - 1) AS n
            ) AS drawn
        ) AS picked
    ) AS classed
) AS click
"""
_ARRAYS: Final = (
    [p[0] for p in _PROFILES],
    [r for r, _, _ in _REFERRERS],
    [h for _, h, _ in _REFERRERS],
    [v for v, _ in _LANGS],
    [c for c, _ in _COUNTRIES],
    [place[0] for c, _ in _COUNTRIES for place in _PLACES[c][:2]],
    [place[1] for c, _ in _COUNTRIES for place in _PLACES[c][:2]],
    [str(_PLACES[c][2]) for c, _ in _COUNTRIES],
    [p[1] for p in _PROFILES],
    [p[2] for p in _PROFILES],
    [p[3] for p in _PROFILES],
    [p[4] for p in _PROFILES],
)
_COLUMNS: Final = (
    "id, ts, link_id, code, ip, ua, referrer, referrer_host, lang, country, region, city, asn, browser, os, device, "
    "is_bot, visitor"
)

# The rollups of the inserted rows, as ingest's store statement adds a batch's (services/ingest store.py): the same
# buckets (UTC), the same conflict handling, keys in sorted order; the dimensions from linkpulse.dimensions.
_SERIES = """series_{table} AS (
    INSERT INTO link_clicks_{table} AS t (link_id, bucket, clicks, bot_clicks)
    SELECT link_id, date_trunc('{table}', ts, 'UTC'), count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM new GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (link_id, bucket) DO UPDATE SET
        clicks = t.clicks + excluded.clicks, bot_clicks = t.bot_clicks + excluded.bot_clicks
)"""
_DIMENSIONS = """dimensions_{table} AS (
    INSERT INTO link_dimension_{table} AS t (link_id, bucket, dimension, value, clicks, bot_clicks)
    SELECT link_id, {bucket}, d.dimension, d.value, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
    FROM new {lateral}
    WHERE {located}
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (link_id, bucket, dimension, value) DO UPDATE SET
        clicks = t.clicks + excluded.clicks, bot_clicks = t.bot_clicks + excluded.bot_clicks
)"""
_SEED = f"""
WITH new AS (
    INSERT INTO click_events ({_COLUMNS}) {_GENERATE}
    RETURNING *
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
        visitors = t.visitors + excluded.visitors, bot_visitors = t.bot_visitors + excluded.bot_visitors
), totals AS (
    INSERT INTO link_totals AS t (link_id, clicks, bot_clicks, last_click_at)
    SELECT link_id, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot), max(ts)
    FROM new GROUP BY link_id ORDER BY link_id
    ON CONFLICT (link_id) DO UPDATE SET
        clicks = t.clicks + excluded.clicks, bot_clicks = t.bot_clicks + excluded.bot_clicks,
        last_click_at = greatest(t.last_click_at, excluded.last_click_at)
), {", ".join(_SERIES.format(table=t) for t in ("minute", "hour", "day"))},
{_DIMENSIONS.format(table="day", bucket="(ts AT TIME ZONE 'UTC')::date", lateral=lateral_values(),
                    located=located_only_sql())},
{_DIMENSIONS.format(table="hour", bucket="date_trunc('hour', ts, 'UTC')", lateral=lateral_values(),
                    located=located_only_sql())}
SELECT count(*) FROM new
"""  # fmt: skip

# The sums every seeding is checked by: the clicks counted, and each rollup's total; one row per figure.
_CHECK = f"""
SELECT 'clicks' AS figure, count(*) AS n FROM click_events WHERE link_id = $1
UNION ALL SELECT 'link_totals', sum(clicks + bot_clicks) FROM link_totals WHERE link_id = $1
UNION ALL SELECT 'link_clicks_' || t, sum(clicks + bot_clicks) FROM (
    SELECT 'minute' AS t, clicks, bot_clicks FROM link_clicks_minute WHERE link_id = $1
    UNION ALL SELECT 'hour', clicks, bot_clicks FROM link_clicks_hour WHERE link_id = $1
    UNION ALL SELECT 'day', clicks, bot_clicks FROM link_clicks_day WHERE link_id = $1) AS s GROUP BY t
UNION ALL SELECT 'link_dimension_day ' || dimension, sum(clicks + bot_clicks) FROM link_dimension_day
    WHERE link_id = $1 AND dimension NOT IN ({", ".join(f"'{d.name}'" for d in DIMENSIONS if d.located)})
    GROUP BY dimension
UNION ALL SELECT 'link_dimension_hour ' || dimension, sum(clicks + bot_clicks) FROM link_dimension_hour
    WHERE link_id = $1 AND dimension NOT IN ({", ".join(f"'{d.name}'" for d in DIMENSIONS if d.located)})
    GROUP BY dimension
UNION ALL SELECT 'link_visitors_day', count(*) FROM link_visitors_day WHERE link_id = $1
UNION ALL SELECT 'link_visitor_counts_day', sum(visitors + bot_visitors) FROM link_visitor_counts_day
    WHERE link_id = $1
"""  # fmt: skip


@dataclass(frozen=True)
class VolumeSeed:
    """What one volume seeding wrote, how long it took and how much disk it took."""

    events: int
    days: int
    seconds: float
    """Inserting the clicks and rolling them up (one statement per slice)."""
    analyze_seconds: float
    check_seconds: float
    sums: dict[str, int]
    """Each rollup's total and the clicks counted (`check`)."""
    table_bytes: dict[str, int]
    database_bytes: int
    bot_share: float
    visitors_per_click: float

    @property
    def seconds_per_10m(self) -> float:
        return self.seconds / self.events * 10_000_000 if self.events else 0.0

    @property
    def consistent(self) -> bool:
        """Every total (clicks, totals, series, each always-filled dimension, visitor counts) agrees."""
        clicks = self.sums.get("clicks")
        totals = [
            v for k, v in self.sums.items() if k not in {"clicks", "link_visitors_day", "link_visitor_counts_day"}
        ]
        return (clicks == self.events and all(v == clicks for v in totals)
                and self.sums.get("link_visitors_day") == self.sums.get("link_visitor_counts_day"))  # fmt: skip


async def seed_volume(
    database_url: str,
    link_id: int,
    code: str,
    events: int,
    *,
    days: int = 35,
    end_ms: int | None = None,
    connections: int = 2,
    chunk_rows: int = CHUNK_ROWS,
    log: Callable[[str], None] | None = None,
) -> VolumeSeed:
    """Write `events` clicks of one link over the `days` days before `end_ms` (default now), roll them up, check.

    `connections` statements run at once, each on its own time slice (a slice's statement is one transaction, so
    a deadlock between two, which Postgres resolves by aborting one, is retried whole).
    """
    end = end_ms if end_ms is not None else int(time.time() * 1000)
    span = days * DAY_MS
    slices = max(1, -(-events // chunk_rows))
    pool_per_day = max(1, int(events / days * HUMAN_POOL))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(slices):
        queue.put_nowait(i)
    stored = 0
    started = time.monotonic()

    async def worker() -> None:
        nonlocal stored
        conn = await asyncpg.connect(database_url)
        try:
            # The loader's session only: its commits do not wait for the WAL flush (nothing else changes).
            await conn.execute("SET synchronous_commit = off; SET work_mem = '256MB'")
            while not queue.empty():
                i = queue.get_nowait()
                first, last = events * i // slices, events * (i + 1) // slices
                start = end - span + span * i // slices
                length = end - span + span * (i + 1) // slices - start
                for attempt in range(5):
                    try:
                        inserted = await conn.fetchval(_SEED, link_id, code, start, length, last - first, first,
                                                       pool_per_day, *_ARRAYS)  # fmt: skip
                        break
                    except asyncpg.DeadlockDetectedError:
                        if attempt == 4:
                            raise
                stored += inserted  # after the await: `stored += await …` would read `stored` before it
                if log is not None and (i + 1) % max(1, slices // 20) == 0:
                    log(f"seeded {stored:,} of {events:,} clicks ({time.monotonic() - started:.0f} s)")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, connections))))
    seconds = time.monotonic() - started
    conn = await asyncpg.connect(database_url)
    try:
        # The planner's statistics, as autovacuum would have them for tables that grew gradually.
        at = time.monotonic()
        await conn.execute(
            "ANALYZE click_events, link_clicks_minute, link_clicks_hour, link_clicks_day, "
            "link_dimension_day, link_dimension_hour, link_visitors_day, link_visitor_counts_day"
        )
        analyzed = time.monotonic() - at
        at = time.monotonic()
        sums = await check(conn, link_id)
        checked = time.monotonic() - at
        sizes = await conn.fetch(
            "SELECT t, pg_total_relation_size(t::regclass) AS n FROM unnest($1::text[]) AS t",
            ["link_visitors_day", "link_visitor_counts_day", "link_dimension_day", "link_dimension_hour",
             "link_clicks_minute", "link_clicks_hour", "link_clicks_day"],
        )  # fmt: skip
        # click_events is partitioned: its size is its partitions'.
        clicks_bytes = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('click_events')"
        )
        database_bytes = await conn.fetchval("SELECT pg_database_size(current_database())")
        bots = await conn.fetchval("SELECT bot_clicks FROM link_totals WHERE link_id = $1", link_id)
    finally:
        await conn.close()
    return VolumeSeed(
        events=stored,
        days=days,
        seconds=seconds,
        analyze_seconds=analyzed,
        check_seconds=checked,
        sums=sums,
        table_bytes={"click_events": int(clicks_bytes), **{r["t"]: int(r["n"]) for r in sizes}},
        database_bytes=int(database_bytes),
        bot_share=(bots or 0) / stored if stored else 0.0,
        visitors_per_click=sums.get("link_visitor_counts_day", 0) / stored if stored else 0.0,
    )


async def check(conn: asyncpg.Connection, link_id: int) -> dict[str, int]:
    """The link's clicks counted and each rollup's total (per dimension for those every click has)."""
    return {row["figure"]: int(row["n"] or 0) for row in await conn.fetch(_CHECK, link_id)}
