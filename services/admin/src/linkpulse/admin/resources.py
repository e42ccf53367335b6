"""Lifespan resources: the Postgres pool, the Redis client and the NATS connection, each on `app.state`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from redis.asyncio import Redis

from linkpulse.admin.auth import ensure_bootstrap_key
from linkpulse.admin.settings import AdminSettings
from linkpulse.db.pool import create_pool
from linkpulse.messaging.connect import connect

__all__ = ["database", "database_ready", "messaging", "redis_client"]

_READY_TIMEOUT = 2.0


@asynccontextmanager
async def database(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """`app.state.db`: the asyncpg pool; the bootstrap admin key is upserted once it is open."""
    pool = await create_pool(settings.database)
    try:
        await ensure_bootstrap_key(pool, settings.admin)
        app.state.db = pool
        yield
    finally:
        await pool.close()


@asynccontextmanager
async def redis_client(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """`app.state.redis`: connects lazily, so a Redis outage never stops the API from starting."""
    client = Redis.from_url(
        settings.redis.url, socket_timeout=settings.redis.timeout, socket_connect_timeout=settings.redis.timeout
    )
    app.state.redis = client
    try:
        yield
    finally:
        await client.aclose()


@asynccontextmanager
async def messaging(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """`app.state.nats` and `app.state.js`; drained on shutdown so in-flight publishes finish."""
    nc = await connect(settings.nats, "linkpulse-admin")
    app.state.nats = nc
    app.state.js = nc.jetstream()
    try:
        yield
    finally:
        if not nc.is_closed:
            await nc.drain()


async def database_ready(app: Litestar) -> bool:
    """Ready when Postgres answers: without it the admin API can do nothing useful."""
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            return bool(await app.state.db.fetchval("SELECT 1") == 1)
    except Exception:  # any failure means "not ready"; /readyz must answer, never raise
        return False
