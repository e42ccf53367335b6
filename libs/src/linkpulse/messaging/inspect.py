"""What CLICKS and its ingest consumers hold, read without changing anything: for the bench and its tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from linkpulse.messaging.streams import CLICKS_STREAM, CLICKS_SUBJECTS, ingest_durable
from linkpulse.messaging.types import JetStreamContext

__all__ = ["clicks_after", "clicks_last_seq", "unacked_clicks"]

# Seconds a fetch waits before the read counts as finished: nothing more arrives.
_FETCH_TIMEOUT = 5.0
# An ephemeral reader the server forgets this long after its client went without unsubscribing.
_READER_INACTIVE = 60.0


async def clicks_last_seq(js: JetStreamContext) -> int:
    """The last sequence CLICKS holds now."""
    return (await js.stream_info(CLICKS_STREAM)).state.last_seq


async def clicks_after(js: JetStreamContext, after_seq: int, *, batch: int) -> AsyncIterator[bytes]:
    """The payload of each CLICKS message after `after_seq`, up to the last one there now, each read once.

    An ephemeral consumer that acks nothing reads them, `batch` a fetch: a fetch far past the client's buffer
    makes the server drop the connection as a slow consumer. A fetch that waits 5 s for nothing ends the read.
    """
    total = await clicks_last_seq(js) - after_seq
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after_seq + 1,
        inactive_threshold=_READER_INACTIVE,
    )
    sub = await js.pull_subscribe(CLICKS_SUBJECTS, stream=CLICKS_STREAM, config=config)
    try:
        read = 0
        while read < total:
            try:
                msgs = await sub.fetch(batch, timeout=_FETCH_TIMEOUT)
            except TimeoutError:
                return
            for msg in msgs:
                read += 1
                yield msg.data
    finally:
        await sub.unsubscribe()


async def unacked_clicks(js: JetStreamContext, shards: int) -> int:
    """Messages the ingest consumers of `shards` shards have not acked: not yet delivered plus delivered and in hand."""
    infos = await asyncio.gather(*(js.consumer_info(CLICKS_STREAM, ingest_durable(s)) for s in range(shards)))
    return sum((i.num_pending or 0) + (i.num_ack_pending or 0) for i in infos)
