"""Each service's /metrics after a known workload: fresh processes, so every counter starts at zero and is exact."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import MakeLink

from linkpulse.apikeys import generate_key
from linkpulse.events import ClickBatch, ClickEvent, encode
from linkpulse.ids import new_event_id, shard_for
from linkpulse.links import LinkRecord, encode_record, redis_key
from linkpulse.localstack.process import ManagedProcess, free_port
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import CLICKS_STREAM, click_subject, ingest_durable
from linkpulse.settings import ClicksSettings

READY_TIMEOUT = 60.0
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
REQUESTS = "linkpulse_http_requests_total"
DURATION_COUNT = "linkpulse_http_request_duration_seconds_count"


class Samples(dict[tuple[str, tuple[tuple[str, str], ...]], float]):
    """One scrape: sample values keyed by (sample name, sorted label pairs)."""

    def get_value(self, name: str, **labels: str) -> float | None:
        return self.get((name, tuple(sorted(labels.items()))))

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; a missing series fails the test (it is not taken for zero)."""
        found = self.get_value(name, **labels)
        assert found is not None, f"no sample {name}{labels}"
        return found

    def series(self, name: str, **match: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every series of `name` whose labels include `match`, by its label pairs."""
        return {
            labels: value
            for (sample, labels), value in self.items()
            if sample == name and match.items() <= dict(labels).items()
        }

    def requests(self, route_prefix: str = "") -> Counter[tuple[str, str, str]]:
        """linkpulse_http_requests_total as (route, method, status) counts, for routes starting with the prefix."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for labels, value in self.series(REQUESTS).items():
            d = dict(labels)
            if d["route"].startswith(route_prefix):
                counts[(d["route"], d["method"], d["status"])] = int(value)
        return counts


StartService = Callable[..., Awaitable[tuple[ManagedProcess, str]]]


@pytest.fixture
def start_service(service_env: dict[str, str], tmp_path: Path) -> Iterator[StartService]:
    """Start `python -m <module>` against this test's servers; returns it and its base URL once /readyz is 200.

    `port_var` names the variable that sets its HTTP port. Stopped (SIGTERM) at the end of the test.
    """
    started: list[ManagedProcess] = []

    async def start(module: str, port_var: str, **extra: str) -> tuple[ManagedProcess, str]:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}
        env.update(service_env, **{port_var: str(port)}, **extra)
        name = module.rsplit(".", 1)[-1]
        proc = ManagedProcess(name, [sys.executable, "-m", module], log_path=tmp_path / f"{name}.log", env=env)
        started.append(proc.start())
        url = f"http://127.0.0.1:{port}"
        await _until(lambda: _answers(url, "/readyz"), f"{name} ready", proc)
        return proc, url

    yield start
    for proc in reversed(started):
        proc.stop(timeout=20)


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=5.0) as client:
        resp = await client.get(f"{url}/metrics")
    assert resp.status_code == 200, resp.text
    return Samples(
        ((s.name, tuple(sorted(s.labels.items()))), s.value)
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    )


async def _answers(url: str, path: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(f"{url}{path}")).status_code == 200
    except httpx.TransportError:
        return False


async def _until(check: Callable[[], Awaitable[bool]], what: str, proc: ManagedProcess | None = None) -> None:
    """Poll `check` until it holds; fail naming `what` (with the process's log) after the deadline."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not await check():
        if proc is not None and not proc.alive():
            raise proc.fail(f"exited before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {READY_TIMEOUT:.0f}s\n{proc.log_tail() if proc else ''}")
        await asyncio.sleep(0.05)


def _histograms_agree(samples: Samples, counts: Counter[tuple[str, str, str]]) -> None:
    """The duration histogram counted exactly the requests the counter did, series by series."""
    for (route, method, status), count in counts.items():
        labels = {"route": route, "method": method, "status": status}
        assert samples.value(DURATION_COUNT, **labels) == count, labels
        assert samples.value("linkpulse_http_request_duration_seconds_bucket", le="+Inf", **labels) == count


async def test_redirect_metrics_count_requests_by_route_and_status_and_lookups_by_tier(
    start_service: StartService,
    make_link: MakeLink,
    redis_url: str,
    tmp_path: Path,
) -> None:
    # 1. Links in Postgres only (Redis is empty), and one in Redis only.
    await make_link("known", "https://example.com/known")
    await make_link("perm", "https://example.com/perm", redirect_type=301)
    async with aioredis.Redis.from_url(redis_url) as r:
        await r.set(redis_key("inredis"), encode_record(LinkRecord(id=999, code="inredis", url="https://example.org/")))
    proc, url = await start_service(
        "linkpulse.redirect",
        "LINKPULSE_HTTP_PORT",
        LINKPULSE_PUBLISHER_SPILL_DIR=str(tmp_path / "spill"),
        LINKPULSE_PUBLISHER_LINGER="0.001",
        LINKPULSE_CACHE_NEGATIVE_TTL="600",  # the unknown code stays cached as unknown for the whole test
    )
    # The cache is cleared once the LINKS listener is on; the workload must start after that.
    await _until(lambda: asyncio.to_thread(lambda: "nats.ready" in proc.log_tail(200)), "redirect nats.ready", proc)

    # 2. The workload, one request at a time (so no two misses share a lookup).
    statuses: Counter[tuple[str, str, int]] = Counter()
    async with httpx.AsyncClient(base_url=url, headers={"user-agent": CHROME}) as client:
        for method, path, times in [
            ("GET", "/known", 5),  # 1 miss through Redis to Postgres, then 4 from the process cache
            ("GET", "/perm", 2),  # 1 from Postgres, 1 local
            ("GET", "/inredis", 3),  # 1 from Redis, 2 local
            ("GET", "/nosuch", 3),  # 404: 1 from the filter of known codes (no query), 2 from the negative cache
            ("GET", "/bad.code", 2),  # 404 without a lookup: not a valid code
            ("HEAD", "/known", 1),  # local; no click
            ("GET", "/a/b", 1),  # no route: 404 from the router
            ("POST", "/known", 1),  # no route for POST: 405 from the router
        ]:
            for _ in range(times):
                resp = await client.request(method, path)
                statuses[(method, path, resp.status_code)] += 1
    assert statuses == {
        ("GET", "/known", 302): 5, ("GET", "/perm", 301): 2, ("GET", "/inredis", 302): 3, ("GET", "/nosuch", 404): 3,
        ("GET", "/bad.code", 404): 2, ("HEAD", "/known", 302): 1, ("GET", "/a/b", 404): 1, ("POST", "/known", 405): 1,
    }  # fmt: skip

    # 3. Every GET redirect is one click; once all 10 are acked, scrape.
    async def published() -> bool:
        return (await scrape(url)).get_value("linkpulse_publisher_events_total") == 10

    await _until(published, "10 clicks published", proc)
    samples = await scrape(url)

    # Requests by route template (never the raw code), method and status.
    expected = Counter({
        ("/{code}", "GET", "302"): 8, ("/{code}", "GET", "301"): 2, ("/{code}", "GET", "404"): 5,
        ("/{code}", "HEAD", "302"): 1, ("unmatched", "GET", "404"): 1, ("unmatched", "POST", "405"): 1,
    })  # fmt: skip
    assert samples.requests("/{") + samples.requests("unmatched") == expected
    _histograms_agree(samples, expected)
    # The scrapes before this one, on their own route.
    assert samples.value(REQUESTS, route="/metrics", method="GET", status="200") >= 1

    # Lookups by the tier that answered: 10 local (4 + 1 + 2 + 2 + HEAD), 1 Redis, 2 Postgres, and the unknown
    # code once by the filter of known codes, which spares it a Postgres query.
    tiers = {dict(labels)["tier"]: v for labels, v in samples.series("linkpulse_redirect_lookups_total").items()}
    assert tiers == {"local": 10, "redis": 1, "filter": 1, "db": 2, "coalesced": 0}
    # Postgres and Redis latency: 2 Postgres reads; 4 Redis reads (every miss), 2 fills (links Postgres found).
    db = "linkpulse_db_operation_duration_seconds_count"
    assert samples.value(db, operation="link_lookup", outcome="ok") == 2
    assert samples.get_value(db, operation="link_lookup", outcome="error") == 0
    redis_ops = "linkpulse_redis_operation_duration_seconds_count"
    assert samples.value(redis_ops, operation="link_get", outcome="ok") == 4
    assert samples.value(redis_ops, operation="link_fill", outcome="ok") == 2
    assert samples.value("linkpulse_redirect_redis_errors_total") == 0
    assert samples.value("linkpulse_redirect_cached_links") == 3  # known, perm, inredis (not the unknown code)
    # The publisher: nothing waits, nothing spilled, nothing failed.
    assert samples.value("linkpulse_publisher_queue_depth") == 0
    assert samples.value("linkpulse_publisher_spill_bytes") == 0
    assert samples.value("linkpulse_publisher_spilled_events_total") == 0
    assert samples.value("linkpulse_publisher_errors_total") == 0
    assert samples.value("linkpulse_publisher_connected") == 1


async def test_admin_metrics_count_api_calls_by_route_template_and_status(
    start_service: StartService,
) -> None:
    key = generate_key()
    _, url = await start_service("linkpulse.admin", "LINKPULSE_HTTP_PORT", LINKPULSE_ADMIN_KEY=key)
    before = await scrape(url)
    assert not before.requests("/api/")  # nothing called the API yet

    # 1. A few API calls, each with the route template it should be counted under.
    auth = {"Authorization": f"Bearer {key}"}
    calls: Counter[tuple[str, str, str]] = Counter()
    async with httpx.AsyncClient(base_url=url, headers=auth) as client:

        async def call(template: str, method: str, path: str, expect: int, **kwargs: object) -> None:
            resp = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert resp.status_code == expect, resp.text
            calls[(template, method, str(expect))] += 1

        links, one = "/api/v1/links", "/api/v1/links/{code}"
        await call(links, "POST", links, 201, json={"url": "https://example.com/a", "code": "adm-a"})
        await call(links, "POST", links, 201, json={"url": "https://example.com/b", "code": "adm-b"})
        await call(links, "POST", links, 409, json={"url": "https://example.com/c", "code": "adm-a"})
        await call(links, "POST", links, 422, json={"url": "https://example.com/d", "nope": 1})
        json_type = {**auth, "content-type": "application/json"}
        await call(links, "POST", links, 400, content=b"{not json", headers=json_type)
        for _ in range(3):
            await call(one, "GET", "/api/v1/links/adm-a", 200)
        await call(one, "GET", "/api/v1/links/adm-zzz", 404)
        await call(one, "GET", "/api/v1/links/adm-a", 401, headers={"Authorization": "Bearer lp_wrong"})
        await call(one, "DELETE", "/api/v1/links/adm-b", 204)
        await call(links, "GET", links, 200)
        await call("/api/v1/links/{code}/stats", "GET", "/api/v1/links/adm-a/stats", 200)

    # 2. The counts by route template, method and status are exactly the calls made.
    samples = await scrape(url)
    assert samples.requests("/api/") == calls
    _histograms_agree(samples, calls)
    # The first scrape, counted under /metrics by the time of the second.
    assert samples.value(REQUESTS, route="/metrics", method="GET", status="200") == 1
    # Every statement of the admin process is timed (the outbox relay's too, so only a lower bound).
    admin_ok = "linkpulse_db_operation_duration_seconds_count"
    assert samples.value(admin_ok, operation="admin_query", outcome="ok") > before.value(
        admin_ok, operation="admin_query", outcome="ok"
    )


async def test_ingest_metrics_count_stored_duplicate_and_dead_events_batches_and_lag(
    start_service: StartService,
    make_link: MakeLink,
    db: asyncpg.Connection,
    nats_url: str,
    database_url: str,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("ingested")
    shard = shard_for("ingested", clicks_settings.shards)
    events = [_click("ingested", link_id) for _ in range(6)]
    async with _jetstream(nats_url) as js:
        # 1. Five messages on one shard before ingest starts, so its batches of 2 are 2, 2 and 1:
        #    three envelopes of 2 events, the last envelope again under a new id (2 duplicates), and a poison message.
        for envelope in (events[:2], events[2:4], events[4:], events[4:]):
            await _publish(js, envelope, clicks_settings.shards)
        await js.publish(click_subject(shard), b"\x00 not an envelope", headers={"Nats-Msg-Id": "poison-1"})

        # 2. Postgres holds the first batch (a lock on click_events): ingest has fetched 2 and reports 3 waiting.
        locker = await asyncpg.connect(database_url)
        lock = locker.transaction()
        await lock.start()
        try:
            await locker.execute("LOCK TABLE click_events IN ACCESS EXCLUSIVE MODE")
            _, url = await start_service(
                "linkpulse.ingest", "LINKPULSE_INGEST_METRICS_PORT", LINKPULSE_INGEST_BATCH_SIZE="2",
                LINKPULSE_INGEST_MAX_WAIT="0.1", LINKPULSE_INGEST_LINGER="0",  # each fetch its own batch
            )  # fmt: skip
            lag = "linkpulse_ingest_lag_messages"

            async def fetched() -> bool:
                return (await scrape(url)).get_value(lag, shard=str(shard)) is not None

            await _until(fetched, "first batch fetched")
            held = await scrape(url)
            assert held.value(lag, shard=str(shard)) == 3
            assert held.value("linkpulse_ingest_batch_size_count") == 0  # nothing acked while Postgres waits
        finally:
            await lock.rollback()
            await locker.close()

        # 3. Postgres lets go: all three batches are stored and acked.
        async def done() -> bool:
            info = await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))
            acked = not (info.num_pending or info.num_ack_pending)
            return acked and (await scrape(url)).get_value("linkpulse_ingest_batch_size_count") == 3

        await _until(done, "three batches acked")

    samples = await scrape(url)
    assert await db.fetchval("SELECT count(*) FROM click_events") == 6
    assert await db.fetchval("SELECT count(*) FROM dead_letters") == 1
    assert samples.value("linkpulse_ingest_events_total", result="inserted") == 6
    assert samples.value("linkpulse_ingest_events_total", result="duplicate") == 2
    assert samples.value("linkpulse_ingest_dead_letters_total") == 1
    assert samples.value("linkpulse_ingest_batch_size_count") == 3
    assert samples.value("linkpulse_ingest_batch_size_sum") == 5
    assert samples.value("linkpulse_ingest_batch_duration_seconds_count") == 3
    # Lag per shard: only the shard that had messages, drained.
    assert samples.series("linkpulse_ingest_lag_messages") == {(("shard", str(shard)),): 0}
    # One Postgres transaction per batch.
    assert samples.value("linkpulse_db_operation_duration_seconds_count", operation="store_batch", outcome="ok") == 3
    # The probe app counts its own requests: every scrape before this one.
    assert samples.value(REQUESTS, route="/metrics", method="GET", status="200") >= 3
    assert samples.value(REQUESTS, route="/readyz", method="GET", status="200") >= 1


def _click(code: str, link_id: int) -> ClickEvent:
    return ClickEvent(id=new_event_id(), code=code, link_id=link_id, ts=int(time.time() * 1000), ua=CHROME)


async def _publish(js: JetStreamContext, events: list[ClickEvent], shards: int) -> None:
    envelope = ClickBatch(id=new_event_id(), events=events)
    await publish_with_id(js, click_subject(shard_for(events[0].code, shards)), encode(envelope), envelope.id)


@asynccontextmanager
async def _jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
