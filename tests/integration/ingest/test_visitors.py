"""Distinct visitors kept by ingest: one row per link, UTC day, class and visitor key, whatever is redelivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from tests.integration.ingest.conftest import CHROME, click
from tests.integration.ingest.test_rollups import GOOGLEBOT, ms

from linkpulse.events import ClickEvent
from linkpulse.ingest.batch import click_row
from linkpulse.ingest.store import write_batch

ALICE = "a1" * 16
BOB = "b2" * 16


async def store(db: asyncpg.Connection, events: list[ClickEvent]) -> int:
    async with db.transaction():
        return (await write_batch(db, [click_row(e) for e in events], [])).inserted


async def uniques(db: asyncpg.Connection) -> dict[tuple[str, bool], int]:
    """(day, is_bot) → distinct visitors, from the keys; the day counts the stats read must say the same."""
    rows = await db.fetch("SELECT day::text, is_bot, count(*) FROM link_visitors_day GROUP BY 1, 2")
    keys = {(r[0], r[1]): r[2] for r in rows}
    counts = await db.fetch("SELECT day::text, visitors, bot_visitors FROM link_visitor_counts_day")
    assert {(r[0], bot): r[2 if bot else 1] for r in counts for bot in (False, True) if r[2 if bot else 1]} == keys
    return keys


async def test_a_visitor_counts_once_a_day_and_a_redelivery_adds_nothing(
    ingest_db: asyncpg.Connection, make_link: Callable[[str], Awaitable[int]]
) -> None:
    db = ingest_db
    link = await make_link("uv")
    day1, day2 = ms(2026, 12, 7, 9, 0, 0), ms(2026, 12, 8, 0, 0, 1)
    batch = [
        click("uv", link, day1, visitor=ALICE),
        click("uv", link, day1 + 60_000, visitor=ALICE),  # again, a minute later: the same visitor
        click("uv", link, day1 + 3_600_000, visitor=BOB),
        click("uv", link, day1, visitor="c3" * 16, ua=GOOGLEBOT),  # a bot, counted apart
        click("uv", link, day2, visitor=ALICE),  # the next day is a new day's visitor
        click("uv", link, day1, ua=CHROME),  # no key (a v1 click): in no unique count
        click("uv", link, day1, visitor="NOT-A-KEY"),  # malformed: stored without a key
    ]
    assert await store(db, batch) == 7
    expected = {("2026-12-07", False): 2, ("2026-12-07", True): 1, ("2026-12-08", False): 1}
    assert await uniques(db) == expected

    # The whole batch again (a redelivery) stores nothing and counts no one twice.
    assert await store(db, batch) == 0
    assert await uniques(db) == expected
    # A new click of a known visitor that day is a new click, not a new visitor.
    assert await store(db, [click("uv", link, day1 + 7_200_000, visitor=BOB)]) == 1
    assert await uniques(db) == expected
    stored = await db.fetch("SELECT encode(visitor, 'hex') AS v FROM click_events WHERE link_id = $1", link)
    assert sorted(r["v"] or "" for r in stored) == sorted(["", "", ALICE, ALICE, ALICE, BOB, BOB, "c3" * 16])
