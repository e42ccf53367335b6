"""The filter of known codes against a real Postgres: loading in pages, events, catch-ups, and the unloaded budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from linkpulse.localstack.process import free_port
from linkpulse.redirect.known_codes import PAGE_ROWS, KnownCodes, MissBudgetSpent


@pytest.fixture
async def counted_pool(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A pool whose every statement is recorded (asyncpg's query logger), as Postgres ran it."""
    statements: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: statements.append(record.query))

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, init=init)
    yield pool, statements
    await pool.close()


def reads(statements: list[str]) -> int:
    return sum("FROM links WHERE id > $1" in s for s in statements)


async def test_every_code_loads_over_several_pages_and_unknown_codes_are_refused(
    counted_pool: tuple[asyncpg.Pool, list[str]], db: asyncpg.Connection
) -> None:
    pool, statements = counted_pool
    count = 2 * PAGE_ROWS + 123
    await db.execute(
        "INSERT INTO links (code, url) SELECT 'k' || n, 'https://example.com/' FROM generate_series(1, $1) n", count
    )
    known = KnownCodes(pool, error_rate=0.0001, catch_up=0.05, unloaded_budget=5)
    await known.load()
    assert known.loaded
    assert reads(statements) == 3  # pages of PAGE_ROWS, bounded memory
    # No false negative, ever; a known code costs no query.
    found = await asyncio.gather(*(known.may_exist(f"k{n}") for n in range(1, count + 1, 97)))
    assert all(found)
    assert reads(statements) == 3
    # 500 unknown codes at once share one catch-up read, and are all refused.
    answers = await asyncio.gather(*(known.may_exist(f"unknown{n}") for n in range(500)))
    assert sum(answers) <= 1  # a false positive at 1 in 10,000 is possible, hardly likely
    assert reads(statements) == 4


async def test_a_code_is_known_from_its_event_or_from_the_catch_up(
    counted_pool: tuple[asyncpg.Pool, list[str]], db: asyncpg.Connection
) -> None:
    pool, statements = counted_pool
    known = KnownCodes(pool, error_rate=0.0001, catch_up=0.05, unloaded_budget=5)
    await known.load()
    known.add("from-event")
    assert await known.may_exist("from-event")
    assert reads(statements) == 1  # the load's only page: the event needed no query
    # Inserted with no event (behind the admin's back, or an event missed): the catch-up finds it.
    await db.execute("INSERT INTO links (code, url) VALUES ('late', 'https://example.com/')")
    assert await known.may_exist("late")
    assert not await known.may_exist("never")


async def test_while_postgres_is_away_at_start_a_bounded_budget_of_codes_goes_on(database_url: str) -> None:
    pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0, timeout=2)
    known = KnownCodes(pool, error_rate=0.0001, catch_up=0.05, unloaded_budget=5)
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await known.load()
    assert not known.loaded
    outcomes: list[Any] = []
    for n in range(20):
        try:
            outcomes.append(await known.may_exist(f"c{n}"))
        except MissBudgetSpent:
            outcomes.append("spent")
    # Fail open, bounded: the first second's budget goes on to Postgres, the rest are refused.
    assert outcomes[:5] == [True] * 5
    assert outcomes.count("spent") >= 14
    await pool.close()
