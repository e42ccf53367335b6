"""Fixtures for the ingest worker: settings for this test's servers, clients and publishing helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from linkpulse.events import ClickBatch, ClickEvent, encode
from linkpulse.ids import new_event_id, shard_for
from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.store import prepare_connection
from linkpulse.ingest.worker import IngestWorker
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import CLICKS_STREAM, click_subject, ingest_durable
from linkpulse.settings import ClicksSettings

RunWorker = Callable[..., AbstractAsyncContextManager[IngestWorker]]


@pytest.fixture
def ingest_env(service_env: dict[str, str]) -> dict[str, str]:
    """Ingest variables for this test's servers; short waits so workers stop and retry quickly."""
    return {
        **service_env,
        "LINKPULSE_INGEST_MAX_WAIT": "0.1",
        "LINKPULSE_INGEST_RETRY_DELAY": "0.1",
        "LINKPULSE_DATABASE_POOL_MAX": "8",
    }


@pytest.fixture
async def ingest_db(db: asyncpg.Connection) -> asyncpg.Connection:
    """`db` prepared as the ingest pool prepares each connection (its staging table): for `write_batch`."""
    await prepare_connection(db)
    return db


@pytest.fixture
def ingest_settings(ingest_env: dict[str, str]) -> IngestSettings:
    """Settings for an in-process worker."""
    return IngestSettings.from_env(ingest_env)


@pytest.fixture
def run_worker(ingest_env: dict[str, str]) -> RunWorker:
    """Run an IngestWorker as an asyncio task for the body of an `async with`; stop it on exit.

    Extra `LINKPULSE_*` variables may be passed as keyword arguments (`LINKPULSE_INGEST_BATCH_SIZE="2"`).
    """

    @asynccontextmanager
    async def run(**env: str) -> AsyncIterator[IngestWorker]:
        worker = IngestWorker(IngestSettings.from_env({**ingest_env, **env}))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)

    return run


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    """A plain NATS client on this test's (freshly emptied) streams."""
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    """JetStream context of the test client."""
    return nc.jetstream()


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


def click(code: str, link_id: int, ts: int | None = None, **fields: Any) -> ClickEvent:
    """A click event with a fresh id, from desktop Chrome unless `ua` says otherwise; `ts` defaults to now."""
    fields.setdefault("ua", CHROME)
    return ClickEvent(id=new_event_id(), code=code, link_id=link_id, ts=ts or int(time.time() * 1000), **fields)


async def publish(
    js: JetStreamContext, events: Sequence[ClickEvent], shards: int, *, envelope_id: str | None = None
) -> PubAck:
    """Publish events of one shard as one envelope, its id as Nats-Msg-Id (as the redirect publisher does)."""
    shard_set = {shard_for(e.code, shards) for e in events}
    assert len(shard_set) == 1, "an envelope holds events of one shard"
    envelope = ClickBatch(id=envelope_id or new_event_id(), events=list(events))
    return await publish_with_id(js, click_subject(shard_set.pop()), encode(envelope), envelope.id)


async def consumers_idle(js: JetStreamContext, settings: ClicksSettings) -> bool:
    """True when every shard's consumer has nothing left to deliver and nothing awaiting an ack."""
    for shard in range(settings.shards):
        info = await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def stored(db: asyncpg.Connection, js: JetStreamContext, settings: ClicksSettings, events: int) -> bool:
    """True once `events` rows are in click_events and every message is acked."""
    count = await db.fetchval("SELECT count(*) FROM click_events")
    assert count <= events, f"{count} rows for {events} events"
    return count == events and await consumers_idle(js, settings)
