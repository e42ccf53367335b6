"""Ingest under faults: SIGKILL mid-batch, a pod lost among two, poison messages — every answered click stored once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import nats
from tests.fault.stack import BackgroundLoad, FaultStack
from tests.polling import eventually

from linkpulse.events import ClickBatch, ClickEvent, encode
from linkpulse.ids import new_event_id, shard_for
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import CLICKS_STREAM, click_subject, ingest_durable

# Short enough that the clicks a killed process held come back within the test, long enough that a
# live batch (renewed every third of it) is never redelivered.
SHORT_ACK_WAIT = 5.0


@asynccontextmanager
async def click_events_locked(stack: FaultStack) -> AsyncIterator[None]:
    """Hold an exclusive lock on click_events: every ingest batch stops inside its transaction, unacked."""
    conn = await asyncpg.connect(stack.postgres.url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE click_events IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def every_shard_holds_a_batch(stack: FaultStack, pullers: int = 0) -> bool:
    """True when every shard has unacked messages out and at most `pullers` waiting pull requests."""
    infos = await stack.consumers()
    return all((i.num_ack_pending or 0) > 0 and (i.num_waiting or 0) <= pullers for i in infos)


async def test_sigkill_ingest_mid_batch_then_restart_stores_everything_once(fault_stack: FaultStack) -> None:
    started = time.monotonic()
    fault_stack.ack_wait = SHORT_ACK_WAIT
    codes = await fault_stack.make_links(40)
    ingest = await fault_stack.start_ingest()
    _, url = await fault_stack.start_redirect()
    load = BackgroundLoad(url, codes).start()

    # 1. Every shard loop is inside its transaction (INSERT waiting on the lock) with a fetched batch: kill.
    async with click_events_locked(fault_stack):
        await eventually(lambda: every_shard_holds_a_batch(fault_stack), "every shard holding a batch", timeout=20)
        ingest.kill()
        held = (await fault_stack.consumer_totals()).ack_pending
    assert held > 0

    # 2. A new process: new clicks flow at once, the dead one's come back after the ack wait.
    await fault_stack.start_ingest()
    result = await load.stop()
    await fault_stack.settle(url, codes, result, label="sigkill ingest mid-batch", started=started)
    redeliveries = await fault_stack.redeliveries()
    print(f"sigkill ingest: unacked messages of the killed process={held} redeliveries={redeliveries}")
    assert redeliveries >= held  # each one the killed process held came back (and was stored once)
    assert not result.errors and set(result.statuses) == {302}


async def test_two_ingest_processes_one_killed_the_survivor_stores_everything_once(fault_stack: FaultStack) -> None:
    started = time.monotonic()
    fault_stack.ack_wait = SHORT_ACK_WAIT
    codes = await fault_stack.make_links(40)
    victim = await fault_stack.start_ingest("ingest-a")
    await fault_stack.start_ingest("ingest-b")

    async def both_pulling() -> bool:
        return all((i.num_waiting or 0) >= 2 for i in await fault_stack.consumers())

    await eventually(both_pulling, "both ingest processes pulling every shard", timeout=30)
    _, url = await fault_stack.start_redirect()
    load = BackgroundLoad(url, codes).start()

    # Both processes stuck inside a transaction on every shard (no pull waiting): each holds a batch.
    async with click_events_locked(fault_stack):
        await eventually(lambda: every_shard_holds_a_batch(fault_stack), "both processes holding batches", timeout=20)
        victim.kill()
        held = (await fault_stack.consumer_totals()).ack_pending
    # The survivor stores its own batches at once and the victim's after their ack wait; the load goes on.
    await asyncio.sleep(SHORT_ACK_WAIT)  # load for one ack wait: the fault's length, not a synchronisation
    result = await load.stop()
    await fault_stack.settle(url, codes, result, label="two ingest, one sigkilled", started=started)
    redeliveries = await fault_stack.redeliveries()
    print(f"two ingest, one killed: unacked by both at the kill={held} redeliveries={redeliveries}")
    assert redeliveries > 0  # the victim's batches came back to the survivor (and were stored once)
    assert not result.errors and set(result.statuses) == {302}


async def test_poison_messages_are_dead_lettered_and_the_consumer_moves_on(fault_stack: FaultStack) -> None:
    started = time.monotonic()
    conn = await asyncpg.connect(fault_stack.postgres.url)
    try:
        # Stands in for any value Postgres refuses (SQLSTATE 23) that decoding let through.
        await conn.execute("ALTER TABLE click_events ADD CONSTRAINT no_evil CHECK (code <> 'evil')")
    finally:
        await conn.close()
    codes = await fault_stack.make_links(40)
    await fault_stack.start_ingest()
    _, url = await fault_stack.start_redirect()
    load = BackgroundLoad(url, codes).start()

    async def some_stored() -> bool:
        per_code, _ = await fault_stack.stored()
        return sum(per_code.values()) >= 200

    await eventually(some_stored, "load flowing", timeout=20)
    # Two kinds of poison amid the load: bytes that are no envelope, and an envelope Postgres rejects.
    nc = await nats.connect(fault_stack.nats.url)
    try:
        js = nc.jetstream()
        garbage = await publish_with_id(js, click_subject(shard_for(codes[0], fault_stack.shards)),
                                        b"\x00 not an envelope {", "garbage-1")  # fmt: skip
        evil = ClickEvent(id=new_event_id(), code="evil", link_id=999_999, ts=int(time.time() * 1000))
        envelope = ClickBatch(id=str(uuid.uuid4()), events=[evil])
        rejected = await publish_with_id(
            js, click_subject(shard_for("evil", fault_stack.shards)), encode(envelope), envelope.id
        )
    finally:
        await nc.close()

    async def dead_lettered() -> bool:
        conn = await asyncpg.connect(fault_stack.postgres.url)
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM dead_letters") >= 2)
        finally:
            await conn.close()

    await eventually(dead_lettered, "both poison messages dead-lettered", timeout=20)
    result = await load.stop()
    await fault_stack.settle(url, codes, result, label="poison among good", started=started)

    conn = await asyncpg.connect(fault_stack.postgres.url)
    try:
        dead = await conn.fetch("SELECT subject, stream_seq, msg_id, payload, error FROM dead_letters ORDER BY id")
        evil_rows = await conn.fetchval("SELECT count(*) FROM click_events WHERE code = 'evil'")
    finally:
        await conn.close()
    print(f"poison: dead letters={[(r['stream_seq'], r['error'][:40]) for r in dead]}")
    assert sorted((r["stream_seq"], r["msg_id"]) for r in dead) == sorted(
        [(garbage.seq, "garbage-1"), (rejected.seq, envelope.id)]
    )
    by_seq = {r["stream_seq"]: r for r in dead}
    assert by_seq[garbage.seq]["payload"] == b"\x00 not an envelope {"
    assert "DecodeError" in by_seq[garbage.seq]["error"]
    assert "CheckViolationError" in by_seq[rejected.seq]["error"]
    assert evil_rows == 0
    # The consumers are not stuck: settle() waited for num_pending == 0 and nothing in hand on every shard.
    nc = await nats.connect(fault_stack.nats.url)
    try:
        info = await nc.jetstream().consumer_info(CLICKS_STREAM, ingest_durable(shard_for("evil", fault_stack.shards)))
    finally:
        await nc.close()
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    assert await fault_stack.redeliveries() == 0  # dead-lettered on first delivery, not retried to max_deliver
    assert not result.errors and set(result.statuses) == {302}
