"""The outbox relay against real servers: pending rows get published exactly once, Redis stays version-safe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
import redis.asyncio
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from tests.conftest import MakeLink
from tests.polling import eventually

from linkpulse.admin.app import create_app
from linkpulse.admin.outbox import OutboxRelay, RecordWriter
from linkpulse.admin.settings import AdminSettings
from linkpulse.events import LinkChanged, decode_link_changed, encode
from linkpulse.ids import new_event_id
from linkpulse.links import LinkRecord, decode_record, encode_record
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import LINKS_STREAM, link_subject, links_stream
from linkpulse.settings import ClicksSettings


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client on the test Redis."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's database, as the admin app has."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


class CountingJetStream:
    """JetStream that counts each publish by Nats-Msg-Id: shows what the relay sent, not only what was kept."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.sent: list[str] = []
        self.acks: list[PubAck] = []

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> PubAck:
        self.sent.append(kwargs["headers"]["Nats-Msg-Id"])
        ack = await self._js.publish(subject, payload, **kwargs)
        self.acks.append(ack)
        return ack


async def pending_event(db: asyncpg.Connection, code: str, op: str = "updated", version: int | None = None) -> str:
    """Insert an unpublished outbox row for `code`, as a request that crashed after commit leaves it."""
    link = await db.fetchrow("SELECT id, version FROM links WHERE code = $1", code)
    event = LinkChanged(id=new_event_id(), code=code, op=op, version=version or link["version"], ts=1)  # type: ignore[arg-type]
    await db.execute(
        "INSERT INTO link_events (id, link_id, code, op, version, payload) VALUES ($1, $2, $3, $4, $5, $6)",
        event.id,
        link["id"],
        code,
        op,
        event.version,
        encode(event),
    )
    return event.id


async def stream_ids(js: JetStreamContext) -> list[str]:
    """The Nats-Msg-Id of every message stored on LINKS, in order."""
    info = await js.stream_info(LINKS_STREAM)
    if not info.state.messages:
        return []
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(LINKS_STREAM, seq)
        assert msg.headers is not None
        ids.append(msg.headers["Nats-Msg-Id"])
    return [i for i in ids if i]


async def test_relay_publishes_pending_rows_once_and_marks_them(
    pool: asyncpg.Pool,
    db: asyncpg.Connection,
    js: JetStreamContext,
    cache: redis.asyncio.Redis,
    make_link: MakeLink,
) -> None:
    # Two links, three pending events (oldest first), none published yet.
    await make_link("r1", "https://example.com/one")
    await make_link("r2", "https://example.com/two", version=3)
    ids = [await pending_event(db, "r1", "created"), await pending_event(db, "r2", "created", 1)]
    ids.append(await pending_event(db, "r2", "updated", 3))
    counting = CountingJetStream(js)
    relay = OutboxRelay(pool, RecordWriter(cache, 60), counting, interval=1.0, min_age=0)  # type: ignore[arg-type]

    assert await relay.run_once() == 3
    # Each event once on the stream, in outbox order, under its subject, with its payload.
    assert counting.sent == ids and await stream_ids(js) == ids
    last = await js.get_last_msg(LINKS_STREAM, link_subject("r2"))
    assert last.data is not None and decode_link_changed(last.data).id == ids[2]
    assert await db.fetchval("SELECT count(*) FROM link_events WHERE published_at IS NULL") == 0
    # Redis holds each link as its row is now (version 3 for r2, whatever the older event said).
    r2 = decode_record(await cache.get("link:r2"))
    assert (r2.url, r2.version) == ("https://example.com/two", 3)
    assert decode_record(await cache.get("link:r1")).url == "https://example.com/one"
    # Nothing left: a second pass publishes nothing.
    assert await relay.run_once() == 0
    assert counting.sent == ids


async def test_a_republished_event_is_a_duplicate_and_stored_once(
    pool: asyncpg.Pool, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis, make_link: MakeLink
) -> None:
    # A crash after the publish but before published_at was set: the relay publishes it again.
    await make_link("dup")
    event_id = await pending_event(db, "dup", "created")
    payload = await db.fetchval("SELECT payload FROM link_events WHERE id = $1", event_id)
    first = await publish_with_id(js, link_subject("dup"), payload, event_id)
    assert first.duplicate is not True
    counting = CountingJetStream(js)
    relay = OutboxRelay(pool, RecordWriter(cache, 60), counting, interval=1.0, min_age=0)  # type: ignore[arg-type]
    assert await relay.run_once() == 1
    assert counting.sent == [event_id] and counting.acks[0].duplicate is True
    assert await stream_ids(js) == [event_id]


async def test_young_rows_are_left_to_the_request_that_wrote_them(
    pool: asyncpg.Pool, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis, make_link: MakeLink
) -> None:
    await make_link("young")
    await pending_event(db, "young", "created")
    relay = OutboxRelay(pool, RecordWriter(cache, 60), js, interval=1.0, min_age=60)
    assert await relay.run_once() == 0
    await db.execute("UPDATE link_events SET created_at = now() - interval '61 seconds'")
    assert await relay.run_once() == 1


async def test_an_event_waits_for_redis_then_goes_out_without_it_after_the_patience(
    pool: asyncpg.Pool, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis, make_link: MakeLink
) -> None:
    await make_link("nored")
    event_id = await pending_event(db, "nored", "created")
    down = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")  # refuses at once
    try:
        # While Redis cannot take the record, the event waits: published now, pods would evict
        # and cache the old record from Redis again.
        patient = OutboxRelay(pool, RecordWriter(down, 60), js, interval=1.0, min_age=0, redis_patience=60)
        assert await patient.run_once() == 0
        assert await stream_ids(js) == []
        # Past the patience it goes out anyway: pods that cannot reach Redis either read Postgres.
        impatient = OutboxRelay(pool, RecordWriter(down, 60), js, interval=1.0, min_age=0, redis_patience=0)
        assert await impatient.run_once() == 1
        assert await stream_ids(js) == [event_id]
    finally:
        await down.aclose()


async def test_an_event_waiting_for_redis_goes_out_once_redis_takes_the_record(
    pool: asyncpg.Pool, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis, make_link: MakeLink
) -> None:
    await make_link("back", "https://example.com/current")
    event_id = await pending_event(db, "back", "created")
    down = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0")
    try:
        assert await OutboxRelay(pool, RecordWriter(down, 60), js, interval=1.0, min_age=0).run_once() == 0
    finally:
        await down.aclose()
    # Redis is reachable again (the next pass, here a relay on the working client).
    assert await OutboxRelay(pool, RecordWriter(cache, 60), js, interval=1.0, min_age=0).run_once() == 1
    assert decode_record(await cache.get("link:back")).url == "https://example.com/current"
    assert await stream_ids(js) == [event_id]


async def test_two_relays_never_handle_the_same_row(
    database_url: str, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis, make_link: MakeLink
) -> None:
    # 40 pending rows, two relays (two pools, as two admin pods) in small batches at the same time.
    for i in range(40):
        await make_link(f"p{i}")
    ids = [await pending_event(db, f"p{i}", "created") for i in range(40)]
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=2) for _ in range(2)]
    try:
        spies = [CountingJetStream(js) for _ in pools]
        relays = [
            OutboxRelay(p, RecordWriter(cache, 60), spy, interval=1.0, min_age=0, batch=5)  # type: ignore[arg-type]
            for p, spy in zip(pools, spies, strict=True)
        ]

        async def drain(relay: OutboxRelay) -> int:
            total = 0
            while n := await relay.run_once():
                total += n
            return total

        counts = await asyncio.gather(*(drain(r) for r in relays))
    finally:
        for p in pools:
            await p.close()
    sent = spies[0].sent + spies[1].sent
    # Every row was sent by exactly one relay, and none was a duplicate.
    assert sorted(sent) == sorted(ids) and sum(counts) == 40
    assert not any(ack.duplicate for spy in spies for ack in spy.acks)
    assert sorted(await stream_ids(js)) == sorted(ids)


async def test_nats_outage_keeps_rows_pending_until_the_stream_is_back(
    pool: asyncpg.Pool,
    db: asyncpg.Connection,
    js: JetStreamContext,
    cache: redis.asyncio.Redis,
    make_link: MakeLink,
    clicks_settings: ClicksSettings,
) -> None:
    await make_link("out")
    event_id = await pending_event(db, "out", "created")
    relay = OutboxRelay(pool, RecordWriter(cache, 60), js, interval=1.0, min_age=0)
    # Without the LINKS stream nothing acknowledges a publish.
    await js.delete_stream(LINKS_STREAM)
    assert await relay.run_once() == 0
    assert await db.fetchval("SELECT published_at FROM link_events WHERE id = $1", event_id) is None
    await js.add_stream(links_stream(clicks_settings))
    assert await relay.run_once() == 1
    assert await stream_ids(js) == [event_id]


async def test_the_running_app_relays_a_create_whose_publish_failed(
    admin_settings: AdminSettings,
    admin_key: str,
    db: asyncpg.Connection,
    nats_url: str,
    clicks_settings: ClicksSettings,
) -> None:
    # A NATS outage during the request (the stream is gone), then NATS is back: the app's own relay
    # (started by its lifespan, passing every 0.1 s here) publishes the event within a few seconds.
    fast = msgspec.structs.replace(
        admin_settings, admin=msgspec.structs.replace(admin_settings.admin, relay_interval=0.1)
    )
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        await js.delete_stream(LINKS_STREAM)
        async with AsyncTestClient(app=create_app(fast)) as client:
            response = await client.post(
                "/api/v1/links",
                json={"url": "https://example.com/late", "code": "late"},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            assert response.status_code == 201, response.text
            event_id = str(await db.fetchval("SELECT id FROM link_events WHERE code = 'late'"))
            assert await db.fetchval("SELECT published_at FROM link_events WHERE code = 'late'") is None
            await js.add_stream(links_stream(clicks_settings))

            async def published() -> bool:
                return bool(await db.fetchval("SELECT published_at IS NOT NULL FROM link_events WHERE code = 'late'"))

            # The relay leaves rows younger than 2 s to their request, then takes them.
            await eventually(published, "relay publish", timeout=10)
        assert await stream_ids(js) == [event_id]
    finally:
        await nc.close()


async def test_relay_passes_once_at_start_and_stops_promptly_when_asked(
    pool: asyncpg.Pool, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis, make_link: MakeLink
) -> None:
    await make_link("start")
    await pending_event(db, "start", "created")
    relay = OutboxRelay(pool, RecordWriter(cache, 60), js, interval=3600.0, min_age=0)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    async def published() -> bool:
        return bool(await db.fetchval("SELECT published_at IS NOT NULL FROM link_events"))

    # The first pass runs at once, not after the (hour-long) interval...
    await eventually(published, "the startup pass", timeout=5)
    stop.set()
    # ...and the loop waits on the stop event, so it ends at once too.
    await asyncio.wait_for(task, timeout=5)


async def test_record_writer_never_replaces_a_newer_version(cache: redis.asyncio.Redis) -> None:
    writer = RecordWriter(cache, 60)

    def rec(version: int, url: str) -> LinkRecord:
        return LinkRecord(id=1, code="v", url=url, version=version, expires_at=None, max_clicks=None)

    assert await writer.write(rec(3, "https://example.com/3")) is True
    # An older version (a slow request, or the relay behind a newer change) is refused.
    assert await writer.write(rec(2, "https://example.com/2")) is False
    assert decode_record(await cache.get("link:v")).url == "https://example.com/3"
    # The same version rewrites (refreshing the TTL); a newer one replaces it.
    assert await writer.write(rec(3, "https://example.com/3")) is True
    assert await writer.write(rec(4, "https://example.com/4")) is True
    assert decode_record(await cache.get("link:v")).version == 4
    assert 0 < await cache.ttl("link:v") <= 60
    # A value that is not a record is replaced.
    await cache.set("link:v", b"garbage")
    assert await writer.write(rec(1, "https://example.com/1")) is True
    # A record written by a redirect pod (with every optional field set) is compared as well.
    full = LinkRecord(id=1, code="v", url="u", deleted=True, expires_at=5, max_clicks=9, forward_query=True, version=7)
    await cache.set("link:v", encode_record(full))
    assert await writer.write(rec(6, "https://example.com/6")) is False
