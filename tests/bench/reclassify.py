"""Benchmark: `linkpulse reclassify` over a seeded click_events, in clicks per second.

Not a test (nothing asserts a time): run it by hand after a change to linkpulse.db.reclassify or the bot rules.

    .venv/bin/python tests/bench/reclassify.py [--clicks 1000000] [--agents 2000] [--changed 0.1]

It starts its own PostgreSQL from the wheel in a temporary folder, migrates, fills click_events with SQL
(`--clicks` over this month and the last, round robin over 1,000 links and `--agents` distinct browser user
agents, of which the fraction `--changed` carries a word a changed rule makes a bot), builds the rollups
from them, then times one reclassify with the changed rule (the move) and a second one (nothing left to
move: the plan alone), and checks that the rollups equal a recount. It also times the rules on new user agents.
Figures in docs/analytics.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import asyncpg

from linkpulse.bots import BotRules
from linkpulse.db.migrate import migrate
from linkpulse.db.reclassify import CHUNK_PAGES, reclassify
from linkpulse.localstack.servers import PostgresServer

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{n}.0.0.0 Safari/537.36"
)
_SEED = """
INSERT INTO click_events (id, ts, link_id, code, ua, referrer_host, country, browser, os, device, is_bot)
SELECT gen_random_uuid(), date_trunc('month', now()) - interval '20 days' + (g % 3000000) * interval '1 second',
       1 + g % 1000, 'c' || (1 + g % 1000),
       replace($1, '{n}', (g % $2)::text) || CASE WHEN (g % $2) < $2 * $3::float8 THEN ' Zebrafish/2.0' ELSE '' END,
       CASE WHEN g % 4 = 0 THEN 'news.example' ELSE '' END, CASE WHEN g % 3 = 0 THEN 'DE' ELSE 'FR' END,
       'Chrome', 'Windows', 'desktop', false
FROM generate_series(1, $4) AS g
"""
_ROLLUPS = [
    "INSERT INTO link_totals (link_id, clicks, bot_clicks) SELECT link_id, count(*) FILTER (WHERE NOT is_bot), "
    "count(*) FILTER (WHERE is_bot) FROM click_events GROUP BY 1",
    *(
        f"INSERT INTO link_clicks_{s} (link_id, bucket, clicks, bot_clicks) "
        f"SELECT link_id, date_trunc('{s}', ts, 'UTC'), count(*) FILTER (WHERE NOT is_bot), "
        "count(*) FILTER (WHERE is_bot) FROM click_events GROUP BY 1, 2"
        for s in ("minute", "hour", "day")
    ),
    "INSERT INTO link_dimension_day (link_id, bucket, dimension, value, clicks, bot_clicks) "
    "SELECT link_id, (ts AT TIME ZONE 'UTC')::date, d.dimension, d.value, count(*) FILTER (WHERE NOT is_bot), "
    "count(*) FILTER (WHERE is_bot) FROM click_events CROSS JOIN LATERAL (VALUES ('country', country), "
    "('referrer', referrer_host), ('browser', browser), ('os', os), ('device', device)) AS d(dimension, value) "
    "GROUP BY 1, 2, 3, 4",
]
_CHECK = """
SELECT (SELECT sum(clicks) FROM link_totals)::bigint, (SELECT sum(bot_clicks) FROM link_totals)::bigint,
       (SELECT sum(bot_clicks) FROM link_clicks_minute)::bigint, (SELECT sum(bot_clicks) FROM link_dimension_day
        WHERE dimension = 'device' AND value = 'bot')::bigint,
       (SELECT count(*) FILTER (WHERE is_bot) FROM click_events)
"""


ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; SM-S{n}B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.{n}.0 "
    "Mobile Safari/537.36"
)


def rules_cost(template: str, agents: int) -> float:
    """Microseconds per new user agent for BotRules.is_bot (ua-parser's device, our lists, crawlerdetect)."""
    rules = BotRules()
    rules.is_bot("warm up")
    uas = [template.replace("{n}", str(n)) for n in range(agents)]
    start = time.perf_counter()
    for ua in uas:
        rules.is_bot(ua)
    return (time.perf_counter() - start) / agents * 1e6


async def run(args: argparse.Namespace, folder: Path) -> None:
    server = PostgresServer(folder / "pg", log_path=folder / "pg.log", database="bench").start()
    try:
        url = server.url_for("bench")
        await migrate(url)
        conn = await asyncpg.connect(url)
        start = time.perf_counter()
        await conn.execute(_SEED, BROWSER, args.agents, args.changed, args.clicks)
        for sql in _ROLLUPS:
            await conn.execute(sql)
        await conn.execute("VACUUM ANALYZE")
        size = await conn.fetchval(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits"
            " WHERE inhparent = 'click_events'::regclass"
        )
        print(f"seeded {args.clicks:,} clicks ({size} with partitions) in {time.perf_counter() - start:.1f} s")
        changed = BotRules(extra=[r"Zebrafish/"])
        moved = await reclassify(conn, changed, chunk_pages=args.chunk_pages)
        print(
            f"move:  {moved.to_bots:,} of {moved.clicks:,} clicks to bots ({moved.changed_agents} of "
            f"{moved.user_agents} agents) in {moved.seconds:.1f} s: {moved.rate:,.0f} clicks/s, "
            f"{moved.to_bots / moved.seconds:,.0f} moved/s"
        )
        again = await reclassify(conn, changed, chunk_pages=args.chunk_pages)
        print(f"again: {again.to_bots} moved in {again.seconds:.1f} s: {again.rate:,.0f} clicks/s (the plan alone)")
        humans, bots, minute_bots, device_bots, stored_bots = await conn.fetchrow(_CHECK)
        assert humans + bots == args.clicks and bots == minute_bots == device_bots == stored_bots == moved.to_bots
        print("rollups equal the recount")
        await conn.close()
    finally:
        server.stop()
    desktop, android = rules_cost(BROWSER, 2000), rules_cost(ANDROID, 2000)
    print(f"rules: {desktop:.0f} µs per new desktop Chrome user agent, {android:.0f} µs per Android one (uncached)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--changed", type=float, default=0.1)
    parser.add_argument("--chunk-pages", type=int, default=CHUNK_PAGES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lp-reclassify-") as folder:
        asyncio.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
