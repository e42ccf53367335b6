"""Cache invalidation: every redirect process follows LINKS from "new", evicts changed codes and learns new ones."""

from __future__ import annotations

import structlog
from opentelemetry.trace import Span, SpanKind, Tracer
from prometheus_client import Counter

from linkpulse.events import DecodeError, decode_link_changed
from linkpulse.messaging.links_feed import LinksFeed, follow_links
from linkpulse.messaging.streams import LINKS_SUBJECTS
from linkpulse.messaging.tracing import context_from, header_traceparent, messaging_attributes
from linkpulse.messaging.types import JetStreamContext, Msg
from linkpulse.redirect.cache import LinkCache
from linkpulse.redirect.known_codes import KnownCodes

__all__ = ["CacheInvalidator"]

log = structlog.get_logger(__name__)
INVALIDATIONS = Counter("linkpulse_redirect_invalidations", "Cache evictions caused by LinkChanged events")


class CacheInvalidator:
    """An ordered push consumer per process: no durable state, so each pod sees every change."""

    def __init__(
        self, js: JetStreamContext, cache: LinkCache, known: KnownCodes | None = None, tracer: Tracer | None = None
    ) -> None:
        self._js = js
        self._cache = cache
        self._known = known
        self._tracer = tracer
        self._sub: LinksFeed | None = None

    async def start(self) -> None:
        """Follow LINKS from now on; raises what nats-py raises (LINKS missing, NATS gone)."""
        # A gap can hide a change, so the NATS link's reconnect hook also drops the whole cache (`drop_all`).
        self._sub = await follow_links(self._js, self._on_msg)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    def drop_all(self) -> None:
        """After a NATS reconnect changes may have been missed: forget everything cached."""
        self._cache.clear()
        log.info("cache.cleared", reason="nats reconnect")

    async def _on_msg(self, msg: Msg) -> None:
        traceparent = ""
        try:
            event = decode_link_changed(msg.data)
        except DecodeError:
            # Still evict by subject: an unreadable change must not leave a stale link cached.
            code, version = msg.subject.removeprefix("links."), None
            log.warning("invalidation.undecodable", subject=msg.subject)
        else:
            code, version, traceparent = event.code, event.version, event.traceparent
        span = self._span(msg, traceparent, code) if self._tracer is not None else None
        self._cache.evict(code, version)
        if self._known is not None:
            # Every op, not only `created`: a code an event names exists, or did (a deleted one may stay).
            self._known.add(code)
        INVALIDATIONS.inc()
        if span is not None:
            span.end()

    def _span(self, msg: Msg, event_traceparent: str, code: str) -> Span | None:
        """A `process` span in the admin change's trace when that change was traced; else None."""
        # The header names the publish; the event's own field is there too (the relay republishes it as stored).
        parent = context_from(header_traceparent(msg.headers)) or context_from(event_traceparent)
        if parent is None:
            return None
        assert self._tracer is not None
        attributes = messaging_attributes("process", msg.subject, LINKS_SUBJECTS, **{"linkpulse.link.code": code})
        return self._tracer.start_span(
            f"process {LINKS_SUBJECTS}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
