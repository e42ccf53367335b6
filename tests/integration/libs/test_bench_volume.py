"""The stats bench's SQL seeding: its rollups are exactly what ingest's would be for the clicks it wrote."""

from __future__ import annotations

import asyncpg
from tests.conftest import MakeLink

from linkpulse.bench.volume import check, seed_volume
from linkpulse.dimensions import DIMENSIONS

EVENTS = 100_000
END_MS = 1_796_000_000_000  # 2026-11-30, mid-morning UTC: the slices do not start on a day's boundary


async def _rows(conn: asyncpg.Connection, sql: str, *args: object) -> set[tuple[object, ...]]:
    return {tuple(row) for row in await conn.fetch(sql, *args)}


async def test_seeded_rollups_agree_exactly_with_the_seeded_clicks(db: asyncpg.Connection, database_url: str,
                                                                   make_link: MakeLink) -> None:  # fmt: skip
    link_id = await make_link("hot")
    other = await make_link("cold")
    # Small slices, so that buckets, days and visitors are split across statements (run two at a time).
    seed = await seed_volume(database_url, link_id, "hot", EVENTS, days=35, end_ms=END_MS, chunk_rows=7_000)
    assert seed.events == EVENTS and seed.consistent

    where = "FROM click_events WHERE link_id = $1"
    counts = "count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)"
    assert await db.fetchval(f"SELECT count(*) {where}", link_id) == EVENTS
    assert await db.fetchval("SELECT count(*) FROM click_events WHERE link_id <> $1", link_id) == 0
    # Totals and the three series, bucket by bucket (UTC).
    assert await _rows(db, "SELECT clicks, bot_clicks, last_click_at FROM link_totals WHERE link_id = $1", link_id) \
        == await _rows(db, f"SELECT {counts}, max(ts) {where}", link_id)  # fmt: skip
    for table in ("minute", "hour", "day"):
        assert await _rows(db, f"SELECT bucket, clicks, bot_clicks FROM link_clicks_{table} WHERE link_id = $1",
                           link_id) == await _rows(
            db, f"SELECT date_trunc('{table}', ts, 'UTC') AS b, {counts} {where} GROUP BY b", link_id)  # fmt: skip
    # Every dimension of linkpulse.dimensions, per UTC day and per UTC hour; no row for an unlocated click's place.
    for table, bucket in (("day", "(ts AT TIME ZONE 'UTC')::date"), ("hour", "date_trunc('hour', ts, 'UTC')")):
        for d in DIMENSIONS:
            seeded = await _rows(db, f"SELECT bucket, value, clicks, bot_clicks FROM link_dimension_{table} "
                                     "WHERE link_id = $1 AND dimension = $2", link_id, d.name)  # fmt: skip
            known = f"AND {d.expression} <> ''" if d.located else ""
            expected = await _rows(db, f"SELECT {bucket} AS b, {d.expression} AS v, {counts} {where} {known} "
                                       "GROUP BY b, v", link_id)  # fmt: skip
            assert seeded == expected, (table, d.name)
            assert len({value for _, value, _, _ in seeded}) >= 3, (table, d.name)  # several values, not one
            if not d.located:
                assert sum(c + b for _, _, c, b in seeded) == EVENTS
    # Distinct visitors per UTC day, humans and bots apart: the keys, and their counts.
    keys = f"SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date, is_bot, visitor {where}"
    assert await _rows(db, "SELECT day, is_bot, visitor FROM link_visitors_day WHERE link_id = $1", link_id) \
        == await _rows(db, keys, link_id)  # fmt: skip
    assert await _rows(db, "SELECT day, visitors, bot_visitors FROM link_visitor_counts_day WHERE link_id = $1",
                       link_id) == await _rows(
        db, f"SELECT (ts AT TIME ZONE 'UTC')::date AS d, count(DISTINCT visitor) FILTER (WHERE NOT is_bot), "
            f"count(DISTINCT visitor) FILTER (WHERE is_bot) {where} GROUP BY d", link_id)  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM link_totals WHERE link_id = $1", other) == 0

    # The shape the bench claims: 35 UTC days (36 calendar days touched), about 5% bots, repeat visitors.
    assert 35 <= len(await _rows(db, "SELECT bucket FROM link_clicks_day WHERE link_id = $1", link_id)) <= 36
    assert 0.04 < seed.bot_share < 0.06
    assert 0.3 < seed.visitors_per_click < 0.7
    assert seed.table_bytes["click_events"] > 0 and seed.database_bytes > seed.table_bytes["click_events"]


async def test_the_check_sees_a_click_the_rollups_do_not_hold(db: asyncpg.Connection, database_url: str,
                                                              make_link: MakeLink) -> None:  # fmt: skip
    link_id = await make_link("hot")
    seed = await seed_volume(database_url, link_id, "hot", 2_000, days=2, end_ms=END_MS)
    assert seed.consistent and seed.sums["clicks"] == seed.sums["link_clicks_day"] == 2_000
    await db.execute("DELETE FROM click_events WHERE id = (SELECT id FROM click_events ORDER BY ts LIMIT 1)")
    sums = await check(db, link_id)
    assert sums["clicks"] == 1_999 and sums["link_clicks_day"] == sums["link_dimension_hour country"] == 2_000
