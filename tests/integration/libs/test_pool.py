"""The shared asyncpg pool against a real PostgreSQL: a transaction left idle is ended by the server."""

from __future__ import annotations

import asyncpg
import pytest
from tests.polling import eventually

from linkpulse.db.pool import create_pool
from linkpulse.settings import DatabaseSettings


async def test_a_transaction_left_idle_is_ended_by_postgres(database_url: str, db: asyncpg.Connection) -> None:
    pool = await create_pool(DatabaseSettings(url=database_url, idle_in_transaction_timeout=0.3), min_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "300ms"
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            tx = conn.transaction()
            await tx.start()
            await conn.execute("SELECT 1")
            # Nothing more is sent, as from a process frozen mid-transaction: Postgres ends the session.
            # Polling pg_stat_activity: nothing announces the end of a session.
            sessions = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
            await eventually(lambda: db.fetchval(sessions, pid), "the idle transaction ended", timeout=10,
                             accept=lambda n: n == 0, interval=0.05)  # fmt: skip
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
                await conn.execute("SELECT 1")
    finally:
        pool.terminate()


async def test_a_service_can_still_override_the_setting(database_url: str) -> None:
    settings = DatabaseSettings(url=database_url)
    pool = await create_pool(settings, server_settings={"idle_in_transaction_session_timeout": "5s"})
    try:
        assert await pool.fetchval("SHOW idle_in_transaction_session_timeout") == "5s"
    finally:
        await pool.close()
    pool = await create_pool(settings)
    try:
        assert await pool.fetchval("SHOW idle_in_transaction_session_timeout") == "1min"
    finally:
        await pool.close()
