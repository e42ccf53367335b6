"""Streams and consumers as data, and the idempotent call that makes the server match them."""

from __future__ import annotations

import nats
import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from linkpulse.settings import ClicksSettings

__all__ = [
    "CLICKS_STREAM",
    "CLICKS_SUBJECTS",
    "LINKS_STREAM",
    "LINKS_SUBJECTS",
    "click_subject",
    "clicks_stream",
    "ensure_consumers",
    "ensure_streams",
    "ensure_streams_at",
    "ingest_consumer",
    "ingest_durable",
    "link_subject",
    "links_stream",
]

CLICKS_STREAM = "CLICKS"
LINKS_STREAM = "LINKS"
CLICKS_SUBJECTS = "clicks.*"
LINKS_SUBJECTS = "links.*"

# Ingest batches finish in well under a second; the default ack wait (ClicksSettings.ack_wait, 60 s)
# covers a slow Postgres, and long batches call in_progress() anyway. Redelivery before the batch
# commits would only cost a duplicate skip.
INGEST_ACK_WAIT = ClicksSettings().ack_wait
INGEST_MAX_DELIVER = 50
INGEST_MAX_ACK_PENDING = 20_000


def click_subject(shard: int) -> str:
    """Subject of one click shard."""
    return f"clicks.{shard}"


def link_subject(code: str) -> str:
    """Subject of a link's change events."""
    return f"links.{code}"


def ingest_durable(shard: int) -> str:
    """Durable pull consumer name of one shard."""
    return f"ingest-{shard}"


def clicks_stream(settings: ClicksSettings) -> StreamConfig:
    """CLICKS: file storage, 2 min duplicate window, `discard: new` so overflow is an error, not a loss."""
    return StreamConfig(
        name=CLICKS_STREAM,
        subjects=[CLICKS_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_bytes=settings.max_bytes,
        max_age=settings.max_age,
        duplicate_window=settings.duplicate_window,
        num_replicas=settings.replicas,
    )


def links_stream(settings: ClicksSettings) -> StreamConfig:
    """LINKS: keeps every change (audit and replay); one per-subject history is plenty for caches."""
    return StreamConfig(
        name=LINKS_STREAM,
        subjects=[LINKS_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=settings.duplicate_window,
        num_replicas=settings.replicas,
    )


def ingest_consumer(shard: int, ack_wait: float = INGEST_ACK_WAIT) -> ConsumerConfig:
    """Durable pull consumer of one shard; explicit ack because several pods share it."""
    return ConsumerConfig(
        durable_name=ingest_durable(shard),
        filter_subject=click_subject(shard),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=INGEST_MAX_DELIVER,
        max_ack_pending=INGEST_MAX_ACK_PENDING,
        max_waiting=512,
    )


async def ensure_streams(js: JetStreamContext, settings: ClicksSettings) -> None:
    """Create or update both streams and every shard's consumer; safe to run any number of times."""
    log = structlog.get_logger(__name__)
    for config in (clicks_stream(settings), links_stream(settings)):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("stream.created", stream=config.name)
        else:
            await js.update_stream(config)
    await ensure_consumers(js, settings)


async def ensure_consumers(js: JetStreamContext, settings: ClicksSettings) -> None:
    """Create or update every shard's `ingest-<shard>` consumer, never the stream; ingest runs it on start.

    add_consumer with an unchanged config is a no-op on the server, and updates a changed one, so every
    ingest pod may run it as well as the streams job. The stream's limits belong to the job alone.
    """
    for shard in range(settings.shards):
        await js.add_consumer(CLICKS_STREAM, ingest_consumer(shard, settings.ack_wait))


async def ensure_streams_at(nats_url: str, settings: ClicksSettings) -> None:
    """Connect, ensure streams and consumers, disconnect: for `linkpulse streams` and the Helm job."""
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        await ensure_streams(nc.jetstream(), settings)
    finally:
        await nc.close()
