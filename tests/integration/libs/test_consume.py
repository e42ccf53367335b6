"""`messaging.consume` against a real nats-server: idle fetches, filling to bytes, keep-alive, ack and nak."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from linkpulse.messaging.consume import (
    ConsumerUnavailable,
    PullConsumer,
    ack_all,
    backlog,
    ensure_ingest_consumers,
    nak_all,
)
from linkpulse.messaging.streams import CLICKS_STREAM, click_subject, ingest_durable
from linkpulse.settings import ClicksSettings

SHARD = 1


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A client on this test's freshly emptied streams."""
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def bound(nc: Client, settings: ClicksSettings) -> PullConsumer:
    """Shard SHARD's consumer, ensured with `settings` and bound."""
    await ensure_ingest_consumers(nc, settings)
    return await PullConsumer.bind(nc, CLICKS_STREAM, ingest_durable(SHARD), settings.ack_wait)


async def publish(nc: Client, count: int, size: int = 100) -> None:
    js = nc.jetstream()
    for i in range(count):
        await js.publish(click_subject(SHARD), str(i).encode().ljust(size))


async def pending(nc: Client) -> tuple[int, int, int]:
    """(to deliver, awaiting an ack, redelivered) of the shard's consumer."""
    info = await nc.jetstream().consumer_info(CLICKS_STREAM, ingest_durable(SHARD))
    return info.num_pending, info.num_ack_pending, info.num_redelivered


async def after_acking(nc: Client, msgs: list[Msg]) -> tuple[int, int, int]:
    """`pending` once every message of `msgs` is acked and the acks have reached the server."""
    await ack_all(msgs)
    await nc.flush()
    return await pending(nc)


async def test_a_fetch_on_an_idle_consumer_is_empty_not_an_error(nc: Client, clicks_settings: ClicksSettings) -> None:
    consumer = await bound(nc, clicks_settings)
    started = time.monotonic()
    assert await consumer.fetch(10, 0.2) == []
    assert time.monotonic() - started >= 0.2
    await consumer.close()


async def test_fetch_and_ack_all_leave_nothing_pending(nc: Client, clicks_settings: ClicksSettings) -> None:
    consumer = await bound(nc, clicks_settings)
    await publish(nc, 5)
    msgs = await consumer.fetch(3, 1.0)
    assert [m.data.strip() for m in msgs] == [b"0", b"1", b"2"]
    assert backlog(msgs) > 0  # the server's count, with the last message, of what it still had to deliver
    await ack_all(msgs)
    rest = await consumer.fetch(10, 1.0)
    assert len(rest) == 2 and backlog(rest) == 0 and backlog([]) == 0
    assert await after_acking(nc, rest) == (0, 0, 0)
    await consumer.close()


async def test_a_full_fetch_fills_on_at_once_up_to_the_byte_budget(nc: Client, clicks_settings: ClicksSettings) -> None:
    consumer = await bound(nc, clicks_settings)
    await publish(nc, 30, size=100)
    msgs = await consumer.fetch(4, 1.0)
    started = time.monotonic()
    # A backlog: no linger (10 s would fail the bound below), fetches of 4 until 1,000 bytes are in hand.
    await consumer.fill(msgs, max_bytes=1000, count=4, timeout=1.0, linger=10.0, stop=asyncio.Event())
    assert time.monotonic() - started < 5.0
    assert len(msgs) == 12  # 1,200 bytes: the fetch that crossed 1,000 is kept whole
    assert [m.data.strip() for m in msgs] == [str(i).encode() for i in range(12)]
    await ack_all(msgs)
    await consumer.close()


async def test_a_short_fetch_lingers_and_takes_what_came_meanwhile(nc: Client, clicks_settings: ClicksSettings) -> None:
    consumer = await bound(nc, clicks_settings)
    await publish(nc, 2)
    msgs = await consumer.fetch(10, 1.0)
    assert len(msgs) == 2

    async def later() -> None:
        await asyncio.sleep(0.1)
        await publish(nc, 3)

    publishing = asyncio.create_task(later())
    await consumer.fill(msgs, max_bytes=10_000, count=10, timeout=0.5, linger=0.5, stop=asyncio.Event())
    await publishing
    assert len(msgs) == 5
    await ack_all(msgs)
    await consumer.close()


async def test_a_stop_during_the_linger_stores_what_is_in_hand(nc: Client, clicks_settings: ClicksSettings) -> None:
    consumer = await bound(nc, clicks_settings)
    await publish(nc, 1)
    msgs = await consumer.fetch(10, 1.0)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    started = time.monotonic()
    await consumer.fill(msgs, max_bytes=10_000, count=10, timeout=0.5, linger=5.0, stop=stop)
    assert time.monotonic() - started < 2.0 and len(msgs) == 1
    await ack_all(msgs)
    await consumer.close()


async def test_a_batch_kept_alive_outlives_its_ack_wait_without_a_redelivery(nc: Client) -> None:
    settings = ClicksSettings(shards=4, ack_wait=1.0)
    consumer = await bound(nc, settings)
    await publish(nc, 3)
    msgs = await consumer.fetch(10, 1.0)
    assert consumer.keep_alive_every == pytest.approx(1.0 / 3)
    async with consumer.kept_alive(msgs):
        await asyncio.sleep(2.5)  # two and a half ack waits: without in_progress() all three come back
    assert await pending(nc) == (0, 3, 0)
    assert await after_acking(nc, msgs) == (0, 0, 0)
    await consumer.close()


async def test_nak_all_gives_the_batch_back_after_its_delay(nc: Client, clicks_settings: ClicksSettings) -> None:
    consumer = await bound(nc, clicks_settings)
    await publish(nc, 3)
    msgs = await consumer.fetch(10, 1.0)
    await nak_all(msgs, 0.3)
    again = await consumer.fetch(10, 3.0)
    assert [m.data for m in again] == [m.data for m in msgs]
    assert all(m.metadata.num_delivered == 2 for m in again)
    await ack_all(again)
    await consumer.close()


async def test_ensuring_consumers_is_idempotent_and_updates_the_ack_wait(nc: Client) -> None:
    await ensure_ingest_consumers(nc, ClicksSettings(shards=4))
    await ensure_ingest_consumers(nc, ClicksSettings(shards=4, ack_wait=5.0))
    info = await nc.jetstream().consumer_info(CLICKS_STREAM, ingest_durable(3))
    assert info.config.ack_wait == 5.0 and info.config.filter_subject == click_subject(3)


async def test_nats_failures_surface_as_consumer_unavailable(nc: Client, clicks_settings: ClicksSettings) -> None:
    consumer = await bound(nc, clicks_settings)
    await nc.jetstream().delete_consumer(CLICKS_STREAM, ingest_durable(SHARD))
    with pytest.raises(ConsumerUnavailable):
        await consumer.fetch(10, 1.0)
    await consumer.close()
    await nc.close()
    with pytest.raises(ConsumerUnavailable):
        await ensure_ingest_consumers(nc, clicks_settings)
