"""Publishing with an event id as `Nats-Msg-Id`, so a retry within the duplicate window is stored once."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import PubAck

__all__ = ["publish_with_id"]


async def publish_with_id(
    js: JetStreamContext, subject: str, payload: bytes, msg_id: str, *, timeout: float = 2.0, traceparent: str = ""
) -> PubAck:
    """Publish and wait for the stream's ack; `ack.duplicate` is True when the id was seen before.

    A non-empty `traceparent` goes out as the W3C `traceparent` header, so consumers can continue the trace.
    Raises the nats-py timeout/connection errors unchanged: the caller decides to retry (with the
    same `msg_id`) or to spill.
    """
    headers = {"Nats-Msg-Id": msg_id, "traceparent": traceparent} if traceparent else {"Nats-Msg-Id": msg_id}
    return await js.publish(subject, payload, timeout=timeout, headers=headers)
