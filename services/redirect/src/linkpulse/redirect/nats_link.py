"""The redirect's NATS link: one connection, made in the background, the feed of link changes on it, its followers.

NATS is not needed to answer redirects: until it comes clicks queue, then spill (`publisher.py`). So the
connection is made by a task that retries until NATS is there; once it is, each follower (the click
publisher) is handed the client, and the cache invalidator starts following LINKS (retrying with backoff
while the stream does not exist yet). After every reconnect the whole process cache is dropped (a change
may have been missed meanwhile) and the followers are told (the publisher replays its spill file).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from opentelemetry.trace import Tracer

from linkpulse.backoff import Backoff
from linkpulse.logs import redact_url
from linkpulse.messaging.connect import close, connect
from linkpulse.messaging.types import Client
from linkpulse.redirect.cache import LinkCache
from linkpulse.redirect.invalidation import CacheInvalidator
from linkpulse.redirect.known_codes import KnownCodes
from linkpulse.settings import NatsSettings

__all__ = ["CLOSE_TIMEOUT", "NatsLink"]

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT = 5.0
"""Seconds shutdown waits on NATS (unsubscribe, then drain and close) before giving up on it."""
_FEED_RETRY_FIRST = 0.1
"""Seconds before the first retry to follow LINKS (not created yet, or NATS gone again); then doubling."""


class NatsLink:
    """A NATS connection in the making; `start` begins it, `close` ends it, `follow` hands it on."""

    def __init__(
        self, settings: NatsSettings, cache: LinkCache, known: KnownCodes | None, tracer: Tracer | None
    ) -> None:
        self._settings = settings
        self._cache = cache
        self._known = known
        self._tracer = tracer
        self._client: Client | None = None
        self._invalidator: CacheInvalidator | None = None
        self._followers: list[tuple[Callable[[Client], None], Callable[[], None]]] = []
        self._task: asyncio.Task[None] | None = None

    def follow(self, on_connect: Callable[[Client], None], on_reconnect: Callable[[], None]) -> None:
        """Call `on_connect` with the client once connected (at once if it is), `on_reconnect` after every reconnect."""
        self._followers.append((on_connect, on_reconnect))
        if self._client is not None:
            on_connect(self._client)

    async def start(self) -> None:
        """Begin connecting; wait for the link at most the connect timeout, so a normal start serves with it."""
        self._task = asyncio.create_task(self._connect())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), self._settings.connect_timeout)
        if not self._task.done():
            log.warning("nats.unreachable_at_start", url=redact_url(self._settings.url), serving=True)

    async def close(self) -> None:
        """Stop connecting, stop following LINKS, then drain and close the connection (each step bounded)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._invalidator is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._invalidator.stop(), CLOSE_TIMEOUT)
        if self._client is not None:
            await close(self._client, CLOSE_TIMEOUT)

    async def _connect(self) -> None:
        nc = await connect(self._settings, "linkpulse-redirect", on_reconnect=self._reconnected)
        self._client = nc
        for on_connect, _ in self._followers:
            on_connect(nc)
        invalidator = CacheInvalidator(nc.jetstream(), self._cache, self._known, self._tracer)
        backoff = Backoff(_FEED_RETRY_FIRST, max(_FEED_RETRY_FIRST, self._settings.reconnect_wait))
        while True:
            try:
                await invalidator.start()
                break
            except Exception as exc:  # LINKS not created yet, or NATS gone again: keep trying
                log.warning("invalidation.subscribe_failed", error=type(exc).__name__, retry_within=backoff.ceiling)
                await backoff.wait()
        self._invalidator = invalidator
        # Changes made before the listener existed were not seen: forget what was cached meanwhile.
        self._cache.clear()
        log.info("nats.ready")

    async def _reconnected(self) -> None:
        if self._invalidator is not None:
            self._invalidator.drop_all()
        for _, on_reconnect in self._followers:
            on_reconnect()
