"""NATS faults under load: a restart of nats-server, and a 30 s black hole between redirect and NATS."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.fault.stack import BackgroundLoad, FaultStack, scrape
from tests.fault.test_redirect_faults import spill_bytes, spill_replayed
from tests.polling import eventually

from linkpulse.localstack.proxy import FaultProxy

SPILL_GAUGE = ("linkpulse_publisher_spill_bytes", ())
QUEUE_GAUGE = ("linkpulse_publisher_queue_depth", ())


async def test_nats_restart_under_load(fault_stack: FaultStack) -> None:
    """Scenario 3: nats-server stops and starts again (same port, same data) while redirects flow."""
    started = time.monotonic()
    codes = await fault_stack.make_links(40, prefix="nr")
    # An ack that ingest sent as the server went down is lost; its batch comes back after ack_wait
    # (stored once, by event id). A short ack wait keeps the final "consumers idle" check quick.
    fault_stack.ack_wait = 10.0
    await fault_stack.start_ingest()
    _, url = await fault_stack.start_redirect()
    load = BackgroundLoad(url, codes, concurrency=16, max_duration=60).start()
    await asyncio.sleep(3)
    await asyncio.to_thread(fault_stack.stop_server, "nats")
    down_at = time.monotonic()
    await asyncio.sleep(3)  # redirects keep answering; clicks wait in the publisher queue
    await asyncio.to_thread(fault_stack.start_server, "nats")
    print(f"nats down for {time.monotonic() - down_at:.1f}s")
    await asyncio.sleep(4)
    result = await load.stop()
    assert not result.errors, result.summary()
    assert set(result.statuses) == {302}, result.summary()
    await fault_stack.settle(url, codes, result, label="nats restart", started=started)


@pytest.mark.slow
async def test_nats_black_holed_for_30s_spills_then_delivers(fault_stack: FaultStack) -> None:
    """Scenario 4: the redirect's NATS traffic vanishes for 30 s; the queue fills, spills, and all arrives."""
    started = time.monotonic()
    codes = await fault_stack.make_links(40, prefix="bh")
    await fault_stack.start_ingest()  # ingest talks to NATS directly: only the redirect is cut off
    proxy = FaultProxy(fault_stack.nats.port).start()
    try:
        _, url = await fault_stack.start_redirect(
            LINKPULSE_NATS_URL=f"nats://127.0.0.1:{proxy.port}",
            # A small queue, so 30 s of load overflows it: both ways into the spill file are used.
            LINKPULSE_PUBLISHER_QUEUE_MAX="1000",
        )
        spill_dir = fault_stack.root / "spill" / "redirect"
        load = BackgroundLoad(url, codes, concurrency=16, max_duration=80).start()
        await asyncio.sleep(3)
        proxy.blackhole()
        outage_start = time.monotonic()
        peak_queue = 0.0

        async def spilled() -> bool:
            nonlocal peak_queue
            metrics = await scrape(f"{url}/metrics")
            peak_queue = max(peak_queue, metrics.get(QUEUE_GAUGE, 0.0))
            return spill_bytes(spill_dir) > 0 and metrics.get(SPILL_GAUGE, 0.0) > 0

        await eventually(spilled, "spill file written during the outage", timeout=25, interval=0.5)
        first_spill = time.monotonic() - outage_start
        while time.monotonic() - outage_start < 30:
            metrics = await scrape(f"{url}/metrics")
            peak_queue = max(peak_queue, metrics.get(QUEUE_GAUGE, 0.0))
            await asyncio.sleep(0.5)
        during = spill_bytes(spill_dir)
        metric_during = (await scrape(f"{url}/metrics")).get(SPILL_GAUGE, 0.0)
        assert during > 0 and metric_during > 0
        proxy.blackhole(False)
        back_at = time.monotonic()
        # After the reconnect the spill is replayed and deleted, while new clicks keep flowing.
        await spill_replayed(spill_dir, "spill file replayed", timeout=40)
        replay_time = time.monotonic() - back_at
        await asyncio.sleep(1)
        result = await load.stop()
        print(
            f"black hole: first spill after {first_spill:.1f}s, peak queue {peak_queue:.0f}, spill {during} bytes "
            f"(metric {metric_during:.0f}), spill replayed {replay_time:.1f}s after NATS came back"
        )
        assert not result.errors, result.summary()
        assert set(result.statuses) == {302}, result.summary()
        assert (await scrape(f"{url}/metrics")).get(SPILL_GAUGE, 0.0) == 0
        await fault_stack.settle(url, codes, result, label="nats black hole 30s", started=started)
    finally:
        proxy.stop()
