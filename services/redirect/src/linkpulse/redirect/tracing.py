"""Click tracing: a `create` span per click of a sampled request, a `publish` span per envelope carrying one."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer

from linkpulse.events import ClickBatch
from linkpulse.ids import shard_for
from linkpulse.messaging.streams import CLICKS_SUBJECTS, click_subject
from linkpulse.messaging.tracing import batch_links, create_span, messaging_attributes
from linkpulse.messaging.types import Client

__all__ = ["ClickTracing"]


class ClickTracing:
    """Exists only while tracing is on; the request path and the publisher skip all of this otherwise."""

    def __init__(self, tracer: Tracer, shards: int) -> None:
        self._tracer = tracer
        self._shards = shards

    def click(self, code: str, event_id: str) -> str:
        """The traceparent a click made now carries: a `create` span's when the request is sampled, else ""."""
        # Checked before the shard is computed: an unsampled request does nothing else here.
        if not trace.get_current_span().get_span_context().trace_flags.sampled:
            return ""
        shard = shard_for(code, self._shards)
        attributes = {"messaging.message.id": event_id, "linkpulse.link.code": code}
        return create_span(self._tracer, click_subject(shard), CLICKS_SUBJECTS, attributes, partition=shard)

    def publish_span(self, shard: int, envelope: ClickBatch, nc: Client | None) -> Span | None:
        """A started `publish` span linked to the envelope's traced clicks; None when no click in it is traced.

        The caller ends it, and puts its traceparent in the message's header. `nc`: the connection it goes
        out on (the server's address), if known.
        """
        links, dropped = batch_links(event.traceparent for event in envelope.events)
        if not links:
            return None
        attributes = messaging_attributes(
            "publish",
            click_subject(shard),
            CLICKS_SUBJECTS,
            partition=shard,
            nc=nc,
            **{
                "messaging.message.id": envelope.id,
                "linkpulse.clicks": len(envelope.events),
                "linkpulse.links_dropped": dropped,
            },
        )
        # No parent: the publish loop is not part of any request; the links say which clicks it carries.
        return self._tracer.start_span(
            f"publish {CLICKS_SUBJECTS}", context=Context(), kind=SpanKind.PRODUCER, links=links, attributes=attributes
        )
