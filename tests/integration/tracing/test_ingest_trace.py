"""Ingest batches: recorded when they carry a traced click (whatever ingest's own ratio), links capped and counted."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
from nats.js import JetStreamContext
from opentelemetry.sdk.trace import ReadableSpan
from tests.conftest import TEST_SHARDS, MakeLink
from tests.integration.ingest.conftest import click, publish
from tests.integration.tracing.conftest import traced
from tests.polling import eventually

from linkpulse.events import ClickBatch, encode
from linkpulse.ids import new_event_id, shard_for
from linkpulse.ingest.worker import IngestWorker
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import click_subject
from linkpulse.telemetry import Tracing

RunIngest = Callable[[Tracing], AbstractAsyncContextManager[IngestWorker]]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def batches(spans: Any) -> list[ReadableSpan]:
    return [s for s in spans if s.name == "process clicks.*"]


async def test_a_batch_with_traced_clicks_is_recorded_at_ratio_zero_with_its_links_capped(
    run_ingest: RunIngest, make_link: MakeLink, nats_js: JetStreamContext
) -> None:
    # Ingest's own root ratio is 0: only the traced clicks can make this batch worth a span.
    tracing, log = traced(0.0)
    link_id = await make_link("many1")
    # 1. One envelope of 130 clicks, each made in its own sampled request, sent by a traced publish.
    events = [click("many1", link_id, traceparent=f"00-{TRACE}-{i + 1:016x}-01") for i in range(130)]
    envelope = ClickBatch(id=new_event_id(), events=events)
    subject = click_subject(shard_for("many1", TEST_SHARDS))
    await publish_with_id(nats_js, subject, encode(envelope), envelope.id, traceparent=f"00-{TRACE}-{999:016x}-01")
    async with run_ingest(tracing):
        [batch] = await log.wait_for(batches)
    # 2. 131 producer contexts: the first 128 clicks are linked, the other two clicks and the envelope counted.
    assert [link.context.span_id for link in batch.links] == list(range(1, 129))
    assert batch.attributes is not None
    assert batch.attributes["linkpulse.links_dropped"] == 3
    assert batch.attributes["linkpulse.ingest.events"] == 130
    assert batch.attributes["linkpulse.ingest.inserted"] == 130
    # 3. Its queries are recorded under it (sampled through their parent).
    assert any(s.parent is not None and s.parent.span_id == batch.context.span_id for s in log.spans)
    assert tracing.provider is not None
    tracing.provider.shutdown()


async def test_a_batch_without_traced_clicks_at_ratio_zero_records_nothing(
    run_ingest: RunIngest, make_link: MakeLink, nats_js: JetStreamContext, db: asyncpg.Connection
) -> None:
    tracing, log = traced(0.0)
    link_id = await make_link("plain1")
    await publish(nats_js, [click("plain1", link_id) for _ in range(3)], TEST_SHARDS)
    async with run_ingest(tracing):
        await eventually(lambda: db.fetchval("SELECT count(*) = 3 FROM click_events"), "3 clicks stored")
    # Neither the batch nor its queries, nor the partition upkeep's (client spans outside any trace).
    assert log.started == 0 and not log.spans
    assert tracing.provider is not None
    tracing.provider.shutdown()
