"""The redirect service's Litestar app: lookup chain, click publisher, cache invalidation."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
import structlog
from litestar import Litestar
from nats.aio.client import Client

from linkpulse.db.pool import create_pool
from linkpulse.logs import redact_url
from linkpulse.messaging.connect import connect
from linkpulse.redirect.budget import ClickBudget
from linkpulse.redirect.cache import CACHE_BYTES, CACHED_LINKS, LinkCache
from linkpulse.redirect.clicks import ClickMaker
from linkpulse.redirect.fastpath import install as install_fast_path
from linkpulse.redirect.invalidation import CacheInvalidator
from linkpulse.redirect.known_codes import KnownCodes
from linkpulse.redirect.lookup import LinkLookup
from linkpulse.redirect.publisher import ClickPublisher
from linkpulse.redirect.readiness import ready
from linkpulse.redirect.routes import redirect
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.redirect.spill import SpillFile
from linkpulse.redirect.tracing import ClickTracing
from linkpulse.telemetry import Tracing
from linkpulse.web import ServicePlugin
from linkpulse.web.proxies import TrustedProxies

__all__ = ["create_app"]

log = structlog.get_logger(__name__)

# Seconds shutdown waits on NATS (unsubscribe, drain, close) before giving up on it.
NATS_CLOSE_TIMEOUT = 5.0
# Seconds start waits for the filter of known codes (a million load in about a second); later it loads in
# the background, and meanwhile unknown codes reach Postgres within the unloaded budget.
KNOWN_CODES_START_WAIT = 10.0


def create_app(settings: RedirectSettings | None = None, tracing: Tracing | None = None) -> Litestar:
    """Build the app; settings and tracing come from the environment unless given (tests pass their own)."""
    settings = settings or RedirectSettings.from_env(os.environ)
    tracing = tracing if tracing is not None else Tracing.from_env("linkpulse-redirect")
    tracer = tracing.tracer("linkpulse.redirect")
    # None while tracing is off: the request path then skips every span call.
    click_tracing = ClickTracing(tracer, settings.clicks.shards) if tracer is not None else None

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        cache = LinkCache(settings.cache.max_entries, settings.cache.ttl,
                          settings.cache.negative_max_entries, settings.cache.negative_ttl)  # fmt: skip
        CACHED_LINKS.set_function(cache.__len__)
        CACHE_BYTES.set_function(lambda: cache.nbytes)
        redis = aioredis.Redis.from_url(settings.redis.url, socket_timeout=settings.redis.timeout,
                                        socket_connect_timeout=settings.redis.timeout)  # fmt: skip
        tracing.instrument_redis(redis)
        # min_size=0: the service starts (and serves from Redis) while Postgres is still down.
        pool = await create_pool(settings.database, min_size=0)
        known = KnownCodes(pool, error_rate=settings.cache.known_codes_error_rate,
                           catch_up=settings.cache.known_codes_catch_up,
                           unloaded_budget=settings.cache.unknown_budget)  # fmt: skip
        loading = asyncio.create_task(known.keep_loading())
        publisher = ClickPublisher(None, settings.publisher, settings.clicks.shards,
                                   SpillFile(Path(settings.publisher.spill_dir)), tracing=click_tracing)  # fmt: skip
        invalidators: list[CacheInvalidator] = []
        clients: list[Client] = []

        async def reconnected() -> None:
            for invalidator in invalidators:
                invalidator.drop_all()
            publisher.request_replay()

        async def connect_nats() -> Client:
            """Connect (retrying until NATS is there), then hand the connection to the publisher and listener."""
            nc = await connect(settings.nats, "linkpulse-redirect", on_reconnect=reconnected)
            clients.append(nc)
            publisher.attach(nc)
            invalidator = CacheInvalidator(nc.jetstream(), cache, known, tracer)
            while True:
                try:
                    await invalidator.start()
                    break
                except Exception as exc:  # LINKS not created yet, or NATS gone again: keep trying
                    log.warning("invalidation.subscribe_failed", error=type(exc).__name__)
                    await asyncio.sleep(settings.nats.reconnect_wait)
            invalidators.append(invalidator)
            # Changes made before the listener existed were not seen: forget what was cached meanwhile.
            cache.clear()
            log.info("nats.ready")
            return nc

        app.state.update(
            lookup=LinkLookup(cache, redis, pool, settings.redis.ttl, known),
            budget=ClickBudget(pool, settings.cache.click_count_refresh),
            publisher=publisher,
            clicks=ClickMaker(
                TrustedProxies(settings.proxy.trusted),
                settings.proxy.country_header,
                anonymize=settings.proxy.anonymize_ip,
                tracing=click_tracing,
            ),
            trace_ratio=tracing.root_ratio,
            redis=redis,
            pool=pool,
            readiness=ready,
        )
        publisher.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(loading), KNOWN_CODES_START_WAIT)
        # NATS is not needed to answer redirects: without it clicks queue, then spill, until it comes.
        # A normal start waits for the first connection briefly, so the listener is on before serving.
        connecting = asyncio.create_task(connect_nats())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(connecting), settings.nats.connect_timeout)
        if not connecting.done():
            log.warning("nats.unreachable_at_start", url=redact_url(settings.nats.url), serving=True)
        try:
            with tracing.asyncpg_spans():
                yield
        finally:
            # Publisher first: its drain needs NATS; then NATS drains; then the stores close.
            for task in (connecting, loading):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await known.close()
            for invalidator in invalidators:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(invalidator.stop(), NATS_CLOSE_TIMEOUT)
            await publisher.close()
            for nc in clients:
                await _close_nats(nc)
            await pool.close()
            await redis.aclose()
            await tracing.flush()

    return Litestar(
        route_handlers=[redirect],
        # Before ServicePlugin's request metrics wrap the handler (plugins' startup hooks come after these).
        on_startup=[install_fast_path],
        lifespan=[resources],
        plugins=[ServicePlugin(), *tracing.server_plugins()],
        openapi_config=None,
    )


async def _close_nats(nc: Client) -> None:
    """Drain a live connection (bounded: a black-holed one never finishes), else just close it."""
    if nc.is_connected:
        try:
            await asyncio.wait_for(nc.drain(), NATS_CLOSE_TIMEOUT)
        except Exception as exc:  # timeout, or the connection died meanwhile
            log.warning("nats.drain_failed", error=type(exc).__name__)
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), NATS_CLOSE_TIMEOUT)
