"""The redirect service's Litestar app: lookup chain, click publisher, cache invalidation."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from litestar import Litestar

from linkpulse.db.pool import create_pool
from linkpulse.messaging.connect import connect
from linkpulse.redirect.budget import ClickBudget
from linkpulse.redirect.cache import LinkCache
from linkpulse.redirect.invalidation import CacheInvalidator
from linkpulse.redirect.lookup import LinkLookup
from linkpulse.redirect.publisher import ClickPublisher
from linkpulse.redirect.readiness import ready
from linkpulse.redirect.routes import redirect
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.redirect.spill import SpillFile
from linkpulse.redirect.visitor import TrustedProxies
from linkpulse.web import ServicePlugin

__all__ = ["create_app"]


def create_app(settings: RedirectSettings | None = None) -> Litestar:
    """Build the app; settings come from the environment unless given (tests pass their own)."""
    settings = settings or RedirectSettings.from_env(os.environ)

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        cache = LinkCache(settings.cache.max_entries, settings.cache.ttl,
                          settings.cache.negative_max_entries, settings.cache.negative_ttl)  # fmt: skip
        redis = aioredis.Redis.from_url(settings.redis.url, socket_timeout=settings.redis.timeout,
                                        socket_connect_timeout=settings.redis.timeout)  # fmt: skip
        # min_size=0: the service starts (and serves from Redis) while Postgres is still down.
        pool = await create_pool(settings.database, min_size=0)
        holder: dict[str, CacheInvalidator | ClickPublisher] = {}

        async def reconnected() -> None:
            invalidator = holder.get("invalidator")
            if isinstance(invalidator, CacheInvalidator):
                invalidator.drop_all()
            publisher = holder.get("publisher")
            if isinstance(publisher, ClickPublisher):
                publisher.request_replay()

        nc = await connect(settings.nats, "linkpulse-redirect", on_reconnect=reconnected)
        js = nc.jetstream()
        publisher = ClickPublisher(js, settings.publisher, settings.clicks.shards,
                                   SpillFile(Path(settings.publisher.spill_dir)))  # fmt: skip
        invalidator = CacheInvalidator(js, cache)
        holder.update(publisher=publisher, invalidator=invalidator)
        app.state.update(
            lookup=LinkLookup(cache, redis, pool, settings.redis.ttl),
            budget=ClickBudget(pool, settings.cache.click_count_refresh),
            publisher=publisher,
            proxies=TrustedProxies(settings.proxy.trusted),
            country_header=settings.proxy.country_header.lower(),
            anonymize_ip=settings.proxy.anonymize_ip,
            redis=redis,
            pool=pool,
            readiness=ready,
        )
        publisher.start()
        await invalidator.start()
        try:
            yield
        finally:
            # Publisher first: its drain needs NATS; then NATS drains; then the stores close.
            await invalidator.stop()
            await publisher.close()
            await nc.drain()
            await pool.close()
            await redis.aclose()

    return Litestar(route_handlers=[redirect], lifespan=[resources], plugins=[ServicePlugin()], openapi_config=None)
