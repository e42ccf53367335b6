"""LinkChanged on LINKS: each change published under `links.<code>`, its event id as `Nats-Msg-Id`."""

from __future__ import annotations

from nats.js.api import PubAck

from linkpulse.events import DecodeError, LinkChanged, decode_link_changed, encode
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import link_subject
from linkpulse.messaging.types import JetStreamContext

__all__ = ["publish_link_changed", "publish_stored_link_changed"]


async def publish_link_changed(js: JetStreamContext, event: LinkChanged, *, timeout: float) -> PubAck:
    """Publish `event`, carrying its trace context in the `traceparent` header; wait for the ack.

    Raises:
        One of `messaging.errors.PUBLISH_ERRORS` when no ack came: the outbox row stays pending.
    """
    return await publish_with_id(
        js, link_subject(event.code), encode(event), event.id, timeout=timeout, traceparent=event.traceparent
    )


async def publish_stored_link_changed(
    js: JetStreamContext, code: str, payload: bytes, event_id: str, *, timeout: float
) -> PubAck:
    """Publish an outbox row's payload byte for byte; its trace context, when it decodes, goes in the header.

    Raises:
        One of `messaging.errors.PUBLISH_ERRORS` when no ack came.
    """
    try:
        traceparent = decode_link_changed(payload).traceparent
    except DecodeError:
        traceparent = ""  # the payload goes out as stored all the same; only its trace is lost
    return await publish_with_id(js, link_subject(code), payload, event_id, timeout=timeout, traceparent=traceparent)
