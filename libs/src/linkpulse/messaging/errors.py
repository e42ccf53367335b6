"""The nats-py failures callers outside messaging catch, re-exported or as tuples, so they never import nats-py."""

from __future__ import annotations

import nats.errors
from nats.errors import OutboundBufferLimitError  # the reconnect buffer is full: the redirect spills

__all__ = ["PUBLISH_ERRORS", "OutboundBufferLimitError"]

PUBLISH_ERRORS: tuple[type[Exception], ...] = (nats.errors.Error, TimeoutError)
"""What a JetStream publish raises when it gets no ack: NATS away or slow, no stream for the subject, a full
client buffer. The event is not lost to the caller: it retries with the same id, or leaves it to its outbox."""
