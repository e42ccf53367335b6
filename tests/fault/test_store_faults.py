"""Postgres and Redis under faults: an outage, a slow database, a lost cache — nothing lost, redirects answer."""

from __future__ import annotations

import asyncio
import time
from functools import partial

import pytest
import redis.asyncio as aioredis
from tests.fault.load import LoadResult, drive
from tests.fault.stack import BackgroundLoad, FaultStack, scrape
from tests.polling import eventually

from linkpulse.links import redis_key
from linkpulse.localstack.process import free_port

POSTGRES_OUTAGE = 30.0
# Three ack waits inside the outage: a held batch is only kept by in_progress() renewals.
OUTAGE_ACK_WAIT = 10.0
SLOW_POSTGRES = 0.2


def sample(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.slow
async def test_postgres_down_for_30s_ingest_holds_acks_nothing_and_loses_nothing(fault_stack: FaultStack) -> None:
    started = time.monotonic()
    fault_stack.ack_wait = OUTAGE_ACK_WAIT
    codes = await fault_stack.make_links(40)
    metrics_port = free_port()
    await fault_stack.start_ingest(LINKPULSE_INGEST_METRICS_PORT=str(metrics_port))
    ingest_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    _, url = await fault_stack.start_redirect()
    result = await drive(url, codes, requests=len(codes) * 2, concurrency=8)  # every code cached
    before = await drive(url, codes, duration=2.0, concurrency=8, timeout=30.0)  # load flowing
    result.merge(before)

    # 1. Postgres stops under load.
    outage = BackgroundLoad(url, codes, concurrency=8).start()
    await asyncio.to_thread(fault_stack.stop_server, "postgres")
    down_at = time.monotonic()

    async def ingest_failing() -> bool:
        return sample(await scrape(ingest_metrics), "linkpulse_ingest_db_errors_total") > 0

    await eventually(ingest_failing, "ingest noticing the outage", timeout=20)
    # A batch committed just before the stop may still be acked: take the floor once ingest is failing.
    acks_arrived = partial(_acks_arrived, fault_stack, ingest_metrics)
    await eventually(acks_arrived, "acks of the last committed batches", timeout=5)
    frozen = await fault_stack.consumer_totals()
    held_max = 0
    # 2. For the rest of the outage: nothing acked, nothing redelivered, the held batches stay in hand.
    while time.monotonic() - down_at < POSTGRES_OUTAGE:
        totals = await fault_stack.consumer_totals()
        assert totals.acked == frozen.acked, "ingest acked while Postgres was down"
        assert totals.redelivered == 0, "a held batch was redelivered (in_progress not renewed)"
        assert totals.ack_pending > 0
        held_max = max(held_max, totals.ack_pending)
        await asyncio.sleep(1.0)  # the outage's own length, sampled every second
    grown = (await fault_stack.consumer_totals()).pending
    during = await outage.stop()
    print(f"postgres outage: answered during it={during.summary()} held={held_max} waiting in stream={grown}")
    assert during.total_answered > 0 and not during.errors and set(during.statuses) == {302}
    result.merge(during)

    # 3. Postgres back: ingest retries and stores everything exactly once.
    await asyncio.to_thread(fault_stack.start_server, "postgres")
    after = await drive(url, codes, duration=3.0, concurrency=8, timeout=30.0)
    result.merge(after)
    await fault_stack.settle(url, codes, result, label="postgres down 30s", started=started)
    assert not result.errors and set(result.statuses) == {302}
    assert await fault_stack.redeliveries() == 0  # held batches were renewed, never handed back


async def _acks_arrived(stack: FaultStack, ingest_metrics: str) -> bool:
    """True once the server holds every ack ingest has sent: the messages ingest counts in its acked batches
    (it counts a batch in the same step as it sends the acks) equal those the consumers no longer wait for.

    Delivered minus awaiting an ack is acked while nothing was redelivered, which this test asserts throughout.
    """
    sent = sample(await scrape(ingest_metrics), "linkpulse_ingest_batch_size_sum")
    totals = await stack.consumer_totals()
    return totals.deliveries - totals.ack_pending == sent


async def test_redis_down_redirects_answer_from_cache_and_postgres_then_use_redis_again(
    fault_stack: FaultStack,
) -> None:
    started = time.monotonic()
    warm, cold = await fault_stack.make_links(30, "w"), await fault_stack.make_links(30, "c")
    await fault_stack.start_ingest()
    # A 1 s local cache: lookups go past it to Redis (or, without Redis, Postgres) all the time.
    _, url = await fault_stack.start_redirect(LINKPULSE_CACHE_TTL="1")
    result = await drive(url, warm, requests=len(warm), concurrency=8)
    client = aioredis.Redis.from_url(fault_stack.redis.url)
    try:
        assert await client.exists(*(redis_key(c) for c in warm)) == len(warm)
    finally:
        await client.aclose()

    # 1. Redis stops: warm and never-seen codes all answer, from the local cache and Postgres.
    await asyncio.to_thread(fault_stack.stop_server, "redis")
    before = await scrape(f"{url}/metrics")
    during = await drive(url, warm + cold, duration=5.0, concurrency=8, timeout=30.0)
    outage = await scrape(f"{url}/metrics")
    result.merge(during)
    redis_errors = sample(outage, "linkpulse_redirect_redis_errors_total") - sample(
        before, "linkpulse_redirect_redis_errors_total"
    )
    from_db = sample(outage, "linkpulse_redirect_lookups_total", tier="db") - sample(
        before, "linkpulse_redirect_lookups_total", tier="db"
    )
    print(f"redis down: {during.summary()} redis errors={redis_errors} db lookups={from_db}")
    assert not during.errors and set(during.statuses) == {302}
    assert set(during.answered) == set(warm + cold)
    assert redis_errors > 0 and from_db > 0
    assert sample(outage, "linkpulse_redirect_lookups_total", tier="redis") == sample(
        before, "linkpulse_redirect_lookups_total", tier="redis"
    )

    # 2. Redis back: after its back-off the redirect reads it again.
    await asyncio.to_thread(fault_stack.start_server, "redis")
    redis_hits = sample(outage, "linkpulse_redirect_lookups_total", tier="redis")
    back: LoadResult = LoadResult()

    async def redis_used() -> bool:
        back.merge(await drive(url, warm, requests=len(warm), concurrency=8, timeout=30.0))
        now = sample(await scrape(f"{url}/metrics"), "linkpulse_redirect_lookups_total", tier="redis")
        return now > redis_hits

    await eventually(redis_used, "redirect reading Redis again", timeout=20)
    result.merge(back)
    client = aioredis.Redis.from_url(fault_stack.redis.url)
    try:
        gets = (await client.info("commandstats")).get("cmdstat_get", {}).get("calls", 0)
    finally:
        await client.aclose()
    print(f"redis back: {back.summary()} redis GET calls since restart={gets}")
    assert gets > 0 and not back.errors
    await fault_stack.settle(url, warm + cold, result, label="redis down and back", started=started)
    assert not result.errors and set(result.statuses) == {302}


async def test_slow_postgres_ingest_batches_grow_without_a_redelivery_storm(fault_stack: FaultStack) -> None:
    proxy_module = pytest.importorskip("linkpulse.localstack.proxy")
    started = time.monotonic()
    codes = await fault_stack.make_links(40)
    _, url = await fault_stack.start_redirect()  # redirect talks to Postgres directly: only ingest is slowed
    proxy = proxy_module.FaultProxy(fault_stack.postgres.port).start()
    try:
        fault_stack.database_url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{fault_stack.postgres.database}"
        metrics_port = free_port()
        await fault_stack.start_ingest(LINKPULSE_INGEST_METRICS_PORT=str(metrics_port))
        ingest_metrics = f"http://127.0.0.1:{metrics_port}/metrics"

        async def batches() -> tuple[float, float]:
            m = await scrape(ingest_metrics)
            return sample(m, "linkpulse_ingest_batch_size_count"), sample(m, "linkpulse_ingest_batch_size_sum")

        # 1. Fast Postgres: the mean batch size at this load.
        result = await drive(url, codes, duration=3.0, concurrency=8, timeout=30.0)
        await fault_stack.wait_stored(result.total_answered, timeout=20)
        count0, sum0 = await batches()
        # 2. 200 ms added each way: the same load makes fewer, larger batches.
        proxy.set_latency(SLOW_POSTGRES)
        slow = await drive(url, codes, duration=6.0, concurrency=8, timeout=30.0)
        result.merge(slow)
        await fault_stack.wait_stored(result.total_answered, timeout=30)
        count1, sum1 = await batches()
        totals = await fault_stack.consumer_totals()
        fast_mean = sum0 / count0
        slow_mean = (sum1 - sum0) / (count1 - count0)
        print(
            f"slow postgres: mean batch fast={fast_mean:.1f} ({count0:.0f} batches) "
            f"slow={slow_mean:.1f} ({count1 - count0:.0f} batches) redelivered={totals.redelivered}"
        )
        assert slow_mean > 3 * fast_mean
        assert totals.redelivered == 0
        await fault_stack.settle(url, codes, result, label="slow postgres", started=started)
        redeliveries = await fault_stack.redeliveries()
        print(f"slow postgres: redeliveries over the whole run={redeliveries}")
        assert redeliveries == 0
        assert not result.errors and set(result.statuses) == {302}
    finally:
        proxy.stop()
