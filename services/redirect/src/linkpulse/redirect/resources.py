"""Lifespan resources: the link store (traced), the NATS link, the click publisher, and the core they make.

`create_app` enters them in this order and Litestar leaves them in reverse, so the core is gone before
anything closes, the publisher drains while NATS is still up, NATS drains before the stores close. Each
keeps what later ones need on `app.state` (as the admin service's do); the doors get the core only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from litestar import Litestar
from opentelemetry.trace import Tracer

from linkpulse.db.pool import create_pool
from linkpulse.redirect.budget import ClickBudget
from linkpulse.redirect.cache import CACHE_BYTES, CACHED_LINKS, LinkCache
from linkpulse.redirect.clicks import ClickMaker
from linkpulse.redirect.core import RedirectCore, keep_core
from linkpulse.redirect.known_codes import KnownCodes
from linkpulse.redirect.lookup import LinkLookup
from linkpulse.redirect.nats_link import NatsLink
from linkpulse.redirect.publisher import ClickPublisher
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.redirect.spill import SpillFile
from linkpulse.redirect.tracing import ClickTracing
from linkpulse.redirect.visitor_keys import VisitorKeys
from linkpulse.sampling import SamplingPolicy
from linkpulse.telemetry import Tracing
from linkpulse.web.proxies import TrustedProxies

__all__ = ["KNOWN_CODES_START_WAIT", "click_publisher", "link_store", "nats_link", "redirect_core"]

KNOWN_CODES_START_WAIT = 10.0
"""Seconds start waits for the filter of known codes (a million load in about a second); later it loads in
the background, and meanwhile unknown codes reach Postgres within the unloaded budget."""


@asynccontextmanager
async def link_store(settings: RedirectSettings, tracing: Tracing, app: Litestar) -> AsyncIterator[None]:
    """`app.state.lookup` (process cache → Redis → known codes → Postgres), `.budget`, `.redis` and `.pool`.

    Redis and asyncpg calls get client spans while the app runs (nothing when tracing is off); the spans are
    flushed last, once the stores are closed.
    """
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
    app.state.update(
        lookup=LinkLookup(cache, redis, pool, settings.redis.ttl, known),
        budget=ClickBudget(pool, settings.cache.click_count_refresh),
        redis=redis,
        pool=pool,
    )
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(loading), KNOWN_CODES_START_WAIT)
        with tracing.asyncpg_spans():
            yield
    finally:
        loading.cancel()
        with contextlib.suppress(BaseException):
            await loading
        await known.close()
        await pool.close()
        await redis.aclose()
        await tracing.flush()


@asynccontextmanager
async def nats_link(settings: RedirectSettings, tracer: Tracer | None, app: Litestar) -> AsyncIterator[None]:
    """`app.state.nats_link`: the NATS connection (made in the background) evicting the cache on link changes."""
    lookup: LinkLookup = app.state.lookup
    link = NatsLink(settings.nats, lookup.cache, lookup.known, tracer)
    app.state.nats_link = link
    try:
        await link.start()
        yield
    finally:
        await link.close()


@asynccontextmanager
async def click_publisher(
    settings: RedirectSettings, tracing: ClickTracing | None, app: Litestar
) -> AsyncIterator[None]:
    """`app.state.publisher`, publishing on the NATS link once it connects; drained (or spilled) at shutdown."""
    publisher = ClickPublisher(settings.publisher, settings.clicks.shards,
                               SpillFile(Path(settings.publisher.spill_dir)), tracing=tracing)  # fmt: skip
    link: NatsLink = app.state.nats_link
    link.follow(publisher.attach, publisher.request_replay)
    app.state.publisher = publisher
    publisher.start()
    try:
        yield
    finally:
        await publisher.close()


@asynccontextmanager
async def redirect_core(
    settings: RedirectSettings, tracing: ClickTracing | None, trace_policy: SamplingPolicy | None, app: Litestar
) -> AsyncIterator[None]:
    """The doors' `RedirectCore` (`core_of(app)`), from the resources above and a click maker; entered last.

    The click maker keys visitors with the daily salts shared through Redis: today's is fetched before the
    first request (a Redis timeout at most; without Redis a local one), later ones by a background task.
    """
    visitors = VisitorKeys(app.state.redis)
    await visitors.refresh()
    stop = asyncio.Event()
    keeping = asyncio.create_task(visitors.keep(stop))
    clicks = ClickMaker(TrustedProxies(settings.proxy.trusted), settings.proxy.country_header,
                        anonymize=settings.proxy.anonymize_ip, tracing=tracing, visitors=visitors)  # fmt: skip
    keep_core(app, RedirectCore(app.state.lookup, app.state.budget, app.state.publisher, clicks, trace_policy))
    try:
        yield
    finally:
        keep_core(app, None)
        stop.set()
        await keeping
