"""A batch whose Postgres session dies fails as "unavailable", and the next attempt gets a working connection."""

from __future__ import annotations

import asyncio

import asyncpg
from tests.conftest import MakeLink
from tests.integration.ingest.conftest import click
from tests.polling import eventually

from linkpulse.db.errors import is_unavailable
from linkpulse.ingest.batch import click_row
from linkpulse.ingest.store import prepare_connection, store_batch


async def test_store_recovers_after_its_session_is_terminated(
    database_url: str, db: asyncpg.Connection, make_link: MakeLink
) -> None:
    link = await make_link("recover")
    rows = [click_row(click("recover", link))]
    # One connection only: the retry can succeed only if the broken one is replaced, never reused.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, init=prepare_connection)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
        # Hold a lock the batch needs, so its session is killed mid-transaction.
        async with db.transaction():
            await db.execute("LOCK TABLE link_totals IN EXCLUSIVE MODE")
            storing = asyncio.create_task(store_batch(pool, rows, [], timeout=5))
            waiting = "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted"
            await eventually(lambda: db.fetchval(waiting, pid), "the store waiting on the lock", timeout=10)
            assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
            (failure,) = await asyncio.gather(storing, return_exceptions=True)
        assert isinstance(failure, BaseException) and is_unavailable(failure), repr(failure)
        assert await db.fetchval("SELECT count(*) FROM click_events") == 0

        result = await store_batch(pool, rows, [], timeout=5)
        assert result.inserted == 1
        assert await db.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", link) == 1
    finally:
        await pool.close()
