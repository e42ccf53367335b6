"""Lifespan resources: Postgres pool, Redis client, auth throttle, NATS connection (each on `app.state`), tracing
spans, the outbox relay; and the readiness check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from redis.asyncio import Redis

from linkpulse.admin.auth import ensure_bootstrap_key
from linkpulse.admin.outbox import OutboxRelay, RecordWriter
from linkpulse.admin.settings import AdminSettings
from linkpulse.admin.throttle import AuthThrottle
from linkpulse.db.metrics import time_queries
from linkpulse.db.pool import create_pool
from linkpulse.messaging.connect import close, connect
from linkpulse.messaging.permissions import CLIENT_NAMES
from linkpulse.telemetry import Tracing
from linkpulse.web.proxies import TrustedProxies

__all__ = ["auth_throttle", "database", "database_ready", "messaging", "outbox_relay", "redis_client", "traced"]

_READY_TIMEOUT = 2.0
_REDIS_TIMEOUT_FLOOR = 1.0
# A relay pass holds a few publishes at most; past this, shutdown cancels it (its rows stay pending).
_RELAY_STOP_TIMEOUT = 5.0
# By NATS's turn uvicorn has finished the requests and the relay has stopped, so nothing awaits an ack and
# the drain only flushes; a dead connection costs at most 3x this (see messaging.close), which keeps the
# whole shutdown inside the chart's terminationGracePeriodSeconds.
_NATS_CLOSE_TIMEOUT = 2.0


@asynccontextmanager
async def database(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """`app.state.db`: the asyncpg pool; the bootstrap admin key is upserted once it is open."""
    # Every statement is timed: the admin API does few enough that asyncpg's query logger costs nothing.
    pool = await create_pool(settings.database, init=time_queries("admin_query"))
    try:
        await ensure_bootstrap_key(pool, settings.admin)
        app.state.db = pool
        yield
    finally:
        await pool.close()


@asynccontextmanager
async def redis_client(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """`app.state.redis`: connects lazily, so a Redis outage never stops the API from starting."""
    # The shared timeout is sized for the redirect's hot path; here a slow Redis should delay a
    # write-through, not skip it (a skipped one delays the change by a relay pass).
    timeout = max(settings.redis.timeout, _REDIS_TIMEOUT_FLOOR)
    client = Redis.from_url(settings.redis.url, socket_timeout=timeout, socket_connect_timeout=timeout)
    app.state.redis = client
    try:
        yield
    finally:
        await client.aclose()


@asynccontextmanager
async def auth_throttle(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """`app.state.throttle`: failed authentications counted per client IP, in Redis while it answers."""
    # A client of its own with the shared (hot-path) timeout: every authentication asks it first, so a
    # slow Redis must cost little before the throttle falls back to counting in process.
    timeout = settings.redis.timeout
    client = Redis.from_url(settings.redis.url, socket_timeout=timeout, socket_connect_timeout=timeout)
    app.state.throttle = AuthThrottle(
        client,
        TrustedProxies(settings.proxy.trusted),
        limit=settings.admin.auth_failures,
        window=settings.admin.auth_failure_window,
    )
    try:
        yield
    finally:
        await client.aclose()


@asynccontextmanager
async def traced(tracing: Tracing, app: Litestar) -> AsyncIterator[None]:
    """Redis and asyncpg client spans while the app runs (nothing when tracing is off); flushed at shutdown."""
    tracing.instrument_redis(app.state.redis)
    try:
        with tracing.asyncpg_spans():
            yield
    finally:
        await tracing.flush()


@asynccontextmanager
async def messaging(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """`app.state.nats` and `app.state.js`; drained on shutdown (bounded) so in-flight publishes finish."""
    nc = await connect(settings.nats, CLIENT_NAMES["admin"])
    app.state.nats = nc
    app.state.js = nc.jetstream()
    try:
        yield
    finally:
        await close(nc, _NATS_CLOSE_TIMEOUT)


@asynccontextmanager
async def outbox_relay(settings: AdminSettings, app: Litestar) -> AsyncIterator[None]:
    """The outbox relay as a background task; needs `db`, `redis` and `js`, so it is entered after them.

    It stops (finishing its pass) before NATS drains and the pool closes.
    """
    relay = OutboxRelay(
        app.state.db,
        RecordWriter(app.state.redis, settings.redis.ttl),
        app.state.js,
        interval=settings.admin.relay_interval,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop), name="outbox-relay")
    try:
        yield
    finally:
        stop.set()
        # On timeout wait_for cancels it; whatever it had not marked stays pending for the next start.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, _RELAY_STOP_TIMEOUT)


async def database_ready(app: Litestar) -> bool:
    """Ready when Postgres answers: without it the admin API can do nothing useful."""
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            return bool(await app.state.db.fetchval("SELECT 1") == 1)
    except Exception:  # any failure means "not ready"; /readyz must answer, never raise
        return False
