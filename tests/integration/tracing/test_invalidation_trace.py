"""A link change's trace goes on in the redirect processes that evict it, published at once or by the relay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import nats
import redis.asyncio
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from tests.conftest import MakeLink
from tests.integration.tracing.conftest import RunApp, SpanLog, assert_stable_http

from linkpulse.admin.app import create_app
from linkpulse.admin.auth import generate_key
from linkpulse.admin.outbox import OutboxRelay, RecordWriter
from linkpulse.admin.settings import AdminSettings
from linkpulse.events import LinkChanged, decode_link_changed, encode
from linkpulse.ids import new_event_id
from linkpulse.messaging.streams import LINKS_STREAM, link_subject
from linkpulse.telemetry import Tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def evictions(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.name == "process links.*"]


@asynccontextmanager
async def admin(service_env: dict[str, str], tracing: Tracing) -> AsyncIterator[AsyncTestClient[Any]]:
    """The admin app in-process, traced by `tracing`, sending an admin key."""
    key = generate_key()
    settings = AdminSettings.from_env({**service_env, "LINKPULSE_ADMIN_KEY": key})
    async with AsyncTestClient(app=create_app(settings, tracing)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


async def test_a_patch_is_continued_by_the_redirect_eviction(
    span_log: tuple[Tracing, SpanLog], run_redirect: RunApp, service_env: dict[str, str], make_link: MakeLink
) -> None:
    tracing, log = span_log
    await make_link("inv1", "https://example.com/old")
    async with run_redirect(tracing) as redirect, admin(service_env, tracing) as api:
        # 1. The redirect caches the link, then the admin API changes it.
        assert (await redirect.get("/inv1", follow_redirects=False)).headers["location"] == "https://example.com/old"
        resp = await api.patch("/api/v1/links/inv1", json={"url": "https://example.com/new"})
        assert resp.status_code == 200
        # 2. The redirect's listener evicts it inside the PATCH's trace.
        [evicted] = await log.wait_for(evictions)
        assert (await redirect.get("/inv1", follow_redirects=False)).headers["location"] == "https://example.com/new"
    [patch] = [s for s in log.spans if s.kind is SpanKind.SERVER and s.name.startswith("PATCH ")]
    assert patch.name == "PATCH /api/v1/links/{code}"
    assert_stable_http(patch, "PATCH", "/api/v1/links/inv1", 200, "/api/v1/links/{code}")
    assert evicted.kind is SpanKind.CONSUMER
    assert evicted.parent is not None and evicted.parent.span_id == patch.context.span_id
    assert evicted.context.trace_id == patch.context.trace_id
    assert evicted.attributes is not None
    assert evicted.attributes["linkpulse.link.code"] == "inv1"
    assert evicted.attributes["messaging.destination.name"] == "links.inv1"
    # The change event carries the PATCH's context both in its payload and in its message header.
    msg = await last_change(service_env["LINKPULSE_NATS_URL"], "inv1")
    context = patch.context
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
    assert msg.headers is not None and msg.headers["traceparent"] == traceparent
    assert msg.data is not None and decode_link_changed(msg.data).traceparent == traceparent


async def test_a_relayed_change_keeps_the_trace_of_the_request_that_made_it(
    span_log: tuple[Tracing, SpanLog],
    run_redirect: RunApp,
    make_link: MakeLink,
    db: asyncpg.Connection,
    database_url: str,
    redis_url: str,
    nats_url: str,
) -> None:
    tracing, log = span_log
    link_id = await make_link("inv2")
    # 1. An outbox row left behind by a request (traced as TRACEPARENT) that crashed before publishing.
    event = LinkChanged(id=new_event_id(), code="inv2", op="updated", version=1, ts=1, traceparent=TRACEPARENT)
    await db.execute(
        "INSERT INTO link_events (id, link_id, code, op, version, payload) VALUES ($1, $2, $3, $4, $5, $6)",
        event.id, link_id, "inv2", "updated", 1, encode(event),
    )  # fmt: skip
    async with run_redirect(tracing), relay_resources(database_url, redis_url, nats_url) as (pool, cache, js):
        # 2. The relay publishes it; the redirect's eviction continues that request's trace.
        assert await OutboxRelay(pool, RecordWriter(cache, 60), js, interval=1.0, min_age=0).run_once() == 1
        [evicted] = await log.wait_for(evictions)
    assert evicted.parent is not None and evicted.parent.is_remote
    assert f"{evicted.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert f"{evicted.parent.span_id:016x}" == TRACEPARENT.split("-")[2]
    # 3. The relay also put it in the message header, where consumers look first.
    assert (await last_change(nats_url, "inv2")).headers == {"Nats-Msg-Id": event.id, "traceparent": TRACEPARENT}


async def last_change(nats_url: str, code: str) -> RawStreamMsg:
    """The last LinkChanged message stored for `code`."""
    nc = await nats.connect(nats_url)
    try:
        return await nc.jetstream().get_last_msg(LINKS_STREAM, link_subject(code))
    finally:
        await nc.close()


@asynccontextmanager
async def relay_resources(
    database_url: str, redis_url: str, nats_url: str
) -> AsyncIterator[tuple[asyncpg.Pool, redis.asyncio.Redis, JetStreamContext]]:
    """What an admin process hands its relay: a pool, a Redis client and JetStream."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    cache = redis.asyncio.Redis.from_url(redis_url)
    nc = await nats.connect(nats_url)
    try:
        yield pool, cache, nc.jetstream()
    finally:
        await nc.close()
        await cache.aclose()
        await pool.close()
