"""The nats-py failures callers outside messaging catch, as tuples, so they never import nats-py themselves."""

from __future__ import annotations

import nats.errors

__all__ = ["PUBLISH_ERRORS"]

PUBLISH_ERRORS: tuple[type[Exception], ...] = (nats.errors.Error, TimeoutError)
"""What a JetStream publish raises when it gets no ack: NATS away or slow, no stream for the subject, a full
client buffer. The event is not lost to the caller: it retries with the same id, or leaves it to its outbox."""
