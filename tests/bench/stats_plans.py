"""Which tables each path of a link's stats reads, and how long it takes: EXPLAIN (ANALYZE) on a seeded database.

Not a test (nothing asserts a time): run it by hand after a change to linkpulse.admin.stats.service.

    PYTHONPATH=. .venv/bin/python tests/bench/stats_plans.py [--clicks 300000] [--generic] [--verbose]

It starts its own PostgreSQL from the wheel in a temporary folder, migrates, stores `--clicks` clicks of one link
spread over 35 days (and a fifth as many over 49 others) with SQL, builds every rollup from them as ingest does
(the statements of tests/integration/admin/test_stats_slicing.py), then explains the statement the admin runs for
30 days of that link at each interval, timezone and filter below, printing its plan choice, its execution time and
whether it read `click_events`. `--generic` also explains each with a generic plan (what a prepared statement
may switch to after five executions). Figures in docs/analytics.md, "Slicing the stats".
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from tests.integration.admin.test_stats_slicing import _ROLLUPS

from linkpulse.admin.stats.filters import provide_filters
from linkpulse.admin.stats.service import _arguments, _statement, plan
from linkpulse.admin.stats.window import parse_tz, series_window
from linkpulse.db.migrate import migrate
from linkpulse.localstack.servers import PostgresServer

END = datetime(2026, 12, 7, tzinfo=UTC)
CASES: list[tuple[str, str, dict[str, str]]] = [
    ("day", "UTC", {}),
    ("hour", "UTC", {}),
    ("day", "UTC", {"country": "DE"}),
    ("hour", "UTC", {"country": "DE"}),
    ("day", "Europe/Berlin", {}),
    ("day", "Asia/Kolkata", {}),
    ("day", "Europe/Berlin", {"country": "DE"}),
    ("day", "UTC", {"country": "DE", "device": "mobile"}),
]
_SEED = """
INSERT INTO click_events (id, ts, link_id, code, country, device, lang, city, browser, os, referrer_host, visitor,
                          is_bot)
SELECT gen_random_uuid(), $1::timestamptz - random() * interval '35 days', CASE WHEN i <= $2 THEN 1 ELSE 2 + i % 49 END,
       'x', (ARRAY['DE', 'US', 'FR', 'IN', 'BR', 'JP', 'GB', 'IT', 'ES', 'NL'])[1 + i % 10],
       (ARRAY['desktop', 'mobile', 'tablet'])[1 + i % 3],
       (ARRAY['de-de', 'en-us', 'fr', 'hi', 'pt-br', 'ja'])[1 + i % 6],
       'City ' || i % 200, 'Chrome', 'Windows', 'h' || i % 50 || '.example', decode(md5((i % 100000)::text), 'hex'),
       i % 17 = 0
FROM generate_series(1, $2 + $2 / 5) AS i
"""


async def explain(url: str, clicks: int, generic: bool, verbose: bool) -> None:
    await migrate(url)
    db = await asyncpg.connect(url)
    await db.execute("INSERT INTO links (code, url) SELECT 'l' || i, 'https://e.com/' FROM generate_series(1, 50) i")
    await db.execute("UPDATE links SET code = 'big' WHERE id = 1")
    started = time.perf_counter()
    await db.execute(_SEED, END, clicks)
    for link_id in range(1, 51):
        for statement in _ROLLUPS:
            await db.execute(statement, link_id)
    await db.execute("VACUUM ANALYZE")
    print(f"seeded {clicks + clicks // 5} clicks and their rollups in {time.perf_counter() - started:.0f} s")
    for mode in ("auto", "force_generic_plan") if generic else ("auto",):
        await db.execute(f"SET plan_cache_mode = {mode}")
        for interval, tz, given in CASES:
            window = series_window("2026-11-07", "2026-12-07", interval, END, parse_tz(tz))
            bounds, filters = window.boundaries(), provide_filters(**given)
            chosen = plan(window, bounds, filters)
            sql, names = _statement(chosen)
            args = _arguments("big", window, bounds, filters)
            rows = await db.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *(args[n] for n in names),
                                  *(f.value for f in filters))  # fmt: skip
            text = "\n".join(r[0] for r in rows)
            took = re.search(r"Execution Time: ([\d.]+)", text)
            reads_clicks = " on click_events" in text
            print(f"{mode:18} {interval:4} {tz:13} {given!s:38} series={chosen.series:15} "
                  f"visitors={chosen.visitors:10} top_from_clicks={chosen.top_from_clicks!s:5} "
                  f"{took.group(1) if took else '?':>9} ms  reads click_events: {reads_clicks}")  # fmt: skip
            if verbose:
                print(text)
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=300_000, help="clicks of the explained link")
    parser.add_argument("--generic", action="store_true", help="also explain generic plans")
    parser.add_argument("--verbose", action="store_true", help="print every plan")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = PostgresServer(Path(folder) / "pg", log_path=Path(folder) / "pg.log", database="stats").start()
        try:
            asyncio.run(explain(server.url_for("stats"), options.clicks, options.generic, options.verbose))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
