"""One click followed through its trace: redirect server span → create → send → ingest batch → insert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from tests.conftest import TEST_SHARDS, MakeLink
from tests.integration.tracing.conftest import RunApp, SpanLog

from linkpulse.ids import shard_for
from linkpulse.telemetry import Tracing


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def linked(span: ReadableSpan, target: ReadableSpan) -> bool:
    return any(
        link.context.trace_id == target.context.trace_id and link.context.span_id == target.context.span_id
        for link in span.links
    )


def stored_batch(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in named(spans, "process clicks.*") if (s.attributes or {}).get("linkpulse.ingest.inserted")]


async def test_a_click_is_followed_from_the_redirect_to_its_insert(
    span_log: tuple[Tracing, SpanLog],
    run_redirect: RunApp,
    run_ingest: Any,
    make_link: MakeLink,
    db: asyncpg.Connection,
) -> None:
    tracing, log = span_log
    await make_link("traced1", "https://example.com/t")
    shard = shard_for("traced1", TEST_SHARDS)

    # 1. The redirect app and an ingest worker run in this process, recording into one exporter.
    async with run_ingest(tracing), run_redirect(tracing) as client:
        resp = await client.get("/traced1", follow_redirects=False)
        assert resp.status_code == 302
        # 2. Wait for the batch that stored the click (woken by each span that ends, not by polling).
        [batch] = await log.wait_for(stored_batch)
    spans = log.spans
    event_id = str(await db.fetchval("SELECT id FROM click_events WHERE code = 'traced1'"))

    # 3. The server span, named by route template, never by the code itself.
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "GET /{code}"
    assert server.attributes is not None and server.attributes["http.route"] == "/{code}"
    # The lookup's Redis read and Postgres query (a cold cache) are its children.
    below_server = children(spans, server)
    assert any(s.name == "GET" and (s.attributes or {}).get("db.system") == "redis" for s in below_server)
    assert any(s.name == "SELECT" and (s.attributes or {}).get("db.system") == "postgresql" for s in below_server)

    # 4. The click's producer span is a child of the server span and says which link and shard.
    [create] = named(spans, "create clicks.*")
    assert create.kind is SpanKind.PRODUCER
    assert create.parent is not None and create.parent.span_id == server.context.span_id
    assert create.context.trace_id == server.context.trace_id
    assert create.attributes is not None
    assert create.attributes["linkpulse.link.code"] == "traced1"
    assert create.attributes["linkpulse.shard"] == shard
    assert create.attributes["messaging.message.id"] == event_id
    assert create.attributes["messaging.destination.name"] == f"clicks.{shard}"

    # 5. The envelope's publish links to it (the envelope's traceparent went out in its NATS header).
    [send] = named(spans, "send clicks.*")
    assert send.kind is SpanKind.PRODUCER and linked(send, create)
    assert send.attributes is not None and send.attributes["linkpulse.shard"] == shard

    # 6. The ingest batch span links to the click's producer span and to the envelope's.
    assert batch.kind is SpanKind.CONSUMER
    assert linked(batch, create) and linked(batch, send)
    assert batch.attributes is not None
    assert batch.attributes["linkpulse.shard"] == shard
    assert batch.attributes["messaging.batch.message_count"] == 1
    assert batch.attributes["linkpulse.ingest.events"] == 1
    assert batch.attributes["linkpulse.ingest.inserted"] == 1
    assert batch.attributes["linkpulse.ingest.duplicates"] == 0
    assert batch.attributes["linkpulse.links_dropped"] == 0

    # 7. The insert into click_events is a child of the batch span, in the batch's own trace.
    inserts = [
        s for s in children(spans, batch) if "INSERT INTO click_events" in str((s.attributes or {}).get("db.statement"))
    ]
    assert len(inserts) == 1
    assert inserts[0].context.trace_id == batch.context.trace_id
