"""Frozen, not dead (SIGSTOP/SIGCONT): a stalled ingest pod, NATS server or Postgres comes back to find the
world moved on, and still every answered click is stored once and counted once."""

from __future__ import annotations

import asyncio
import time
from functools import partial

import asyncpg
import pytest
from tests.fault.stack import BackgroundLoad, FaultStack, clicks_answered_and_published
from tests.fault.test_ingest_faults import SHORT_ACK_WAIT, click_events_locked, every_shard_holds_a_batch
from tests.polling import eventually

pytestmark = pytest.mark.slow


async def rollup_total(stack: FaultStack) -> int:
    """Clicks counted in the rollups (humans and bots): must equal the rows, or a duplicate was counted."""
    conn = await asyncpg.connect(stack.postgres.url)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(clicks + bot_clicks), 0) FROM link_totals"))
    finally:
        await conn.close()


async def test_ingest_frozen_past_its_ack_wait_wakes_to_redelivered_work_and_counts_nothing_twice(
    fault_stack: FaultStack,
) -> None:
    started = time.monotonic()
    fault_stack.ack_wait = SHORT_ACK_WAIT
    codes = await fault_stack.make_links(40)
    frozen = await fault_stack.start_ingest("ingest-frozen")
    await fault_stack.start_ingest("ingest-live")

    async def both_pulling() -> bool:
        return all((i.num_waiting or 0) >= 2 for i in await fault_stack.consumers())

    await eventually(both_pulling, "both ingest processes pulling every shard", timeout=30)
    _, url = await fault_stack.start_redirect()
    load = BackgroundLoad(url, codes).start()

    # 1. Both processes hold batches inside their transactions; freeze one of them there.
    async with click_events_locked(fault_stack):
        await eventually(lambda: every_shard_holds_a_batch(fault_stack), "both processes holding batches", timeout=20)
        frozen.pause()
    try:
        # 2. The frozen one's backends run on without it (its INSERTs get the lock, then wait for a COMMIT
        #    that cannot come, until Postgres ends the idle transaction); past the ack wait JetStream hands
        #    its messages to the live one. The load stops first: with nothing being published the
        #    consumers' cumulative counters are exact (the server's num_redelivered forgets a redelivery
        #    as soon as it is acked, and the live one acks within milliseconds).
        result = await load.stop()
        await eventually(partial(clicks_answered_and_published, url), "every answered click published",
                         accept=lambda counts: counts[0] == counts[1])  # fmt: skip

        async def redelivered() -> bool:
            return await fault_stack.redeliveries() > 0

        await eventually(redelivered, "the frozen process's messages redelivered", timeout=SHORT_ACK_WAIT * 4)
    finally:
        frozen.resume()
    # 3. Awake again: it finds its transaction gone, stores again (ids dedupe) and acks late; nothing twice.
    await fault_stack.settle(url, codes, result, label="ingest frozen past ack wait", started=started)
    redeliveries = await fault_stack.redeliveries()
    counted = await rollup_total(fault_stack)
    print(f"frozen ingest: redeliveries={redeliveries} rollup total={counted}")
    assert redeliveries > 0
    assert counted == result.total_answered
    assert frozen.alive(), "the frozen process carried on after SIGCONT"


@pytest.mark.parametrize("server", ["nats", "postgres"])
async def test_server_frozen_under_load_then_resumed_loses_nothing(fault_stack: FaultStack, server: str) -> None:
    # 12 s: past the NATS client's stale-connection detection (pings every second) and past asyncpg's
    # command timeout, so both the "reconnect" and the "statement timed out" paths run, not just a delay.
    freeze = 12.0
    started = time.monotonic()
    # Acks sent into a frozen NATS are lost; with a short ack wait their (duplicate) redelivery comes soon.
    fault_stack.ack_wait = SHORT_ACK_WAIT
    codes = await fault_stack.make_links(40)
    await fault_stack.start_ingest()
    _, url = await fault_stack.start_redirect()
    load = BackgroundLoad(url, codes).start()
    await fault_stack.wait_stored(1, timeout=30)

    process = getattr(fault_stack, server).process
    assert process is not None
    process.pause()
    try:
        await asyncio.sleep(freeze)  # the fault's length, not a synchronisation
    finally:
        process.resume()
    during = time.monotonic() - started
    result = await load.stop()
    # Redirects never waited on the frozen server: links were cached, clicks are published off the path.
    assert not result.errors and set(result.statuses) == {302}, result.summary()
    await fault_stack.settle(url, codes, result, label=f"{server} frozen {freeze:.0f}s", started=started)
    assert await rollup_total(fault_stack) == result.total_answered
    print(f"{server} frozen: load ran {during:.1f}s, redeliveries={await fault_stack.redeliveries()}")
