"""Cache invalidation: every redirect process follows LINKS from "new" and evicts changed codes."""

from __future__ import annotations

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from prometheus_client import Counter

from linkpulse.events import DecodeError, decode_link_changed
from linkpulse.messaging.streams import LINKS_STREAM
from linkpulse.redirect.cache import LinkCache

__all__ = ["CacheInvalidator"]

log = structlog.get_logger(__name__)
INVALIDATIONS = Counter("linkpulse_redirect_invalidations", "Cache evictions caused by LinkChanged events")


class CacheInvalidator:
    """An ordered push consumer per process: no durable state, so each pod sees every change."""

    def __init__(self, js: JetStreamContext, cache: LinkCache) -> None:
        self._js = js
        self._cache = cache
        self._sub: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        # Ordered consumers detect gaps and recreate themselves; a gap can hide a change, so the
        # reconnect hook below also drops the whole cache.
        self._sub = await self._js.subscribe(
            "links.*", stream=LINKS_STREAM, deliver_policy=DeliverPolicy.NEW, ordered_consumer=True, cb=self._on_msg
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    def drop_all(self) -> None:
        """After a NATS reconnect changes may have been missed: forget everything cached."""
        self._cache.clear()
        log.info("cache.cleared", reason="nats reconnect")

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = decode_link_changed(msg.data)
        except DecodeError:
            # Still evict by subject: an unreadable change must not leave a stale link cached.
            code, version = msg.subject.removeprefix("links."), None
            log.warning("invalidation.undecodable", subject=msg.subject)
        else:
            code, version = event.code, event.version
        self._cache.evict(code, version)
        INVALIDATIONS.inc()
