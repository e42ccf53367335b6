"""One click followed through its trace: redirect server span → create → send → ingest batch → insert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from tests.conftest import TEST_SHARDS, MakeLink
from tests.integration.tracing.conftest import RunApp, SpanLog, assert_stable_http

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


MESSAGING_PROCESS = (
    "messaging.system",
    "messaging.operation.name",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.destination.partition.id",
    "messaging.consumer.group.name",
    "messaging.batch.message_count",
    "server.address",
    "server.port",
)


def stored_batch(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in named(spans, "process clicks.*") if (s.attributes or {}).get("linkpulse.ingest.inserted")]


async def test_a_click_is_followed_from_the_redirect_to_its_insert(
    span_log: tuple[Tracing, SpanLog],
    run_redirect: RunApp,
    run_ingest: Any,
    make_link: MakeLink,
    db: asyncpg.Connection,
    nats_url: str,
) -> None:
    tracing, log = span_log
    await make_link("traced1", "https://example.com/t")
    shard = shard_for("traced1", TEST_SHARDS)

    # 1. The redirect app and an ingest worker run in this process, recording into one exporter.
    async with run_ingest(tracing), run_redirect(tracing) as client:
        resp = await client.get("/traced1?token=s3cret", follow_redirects=False)
        assert resp.status_code == 302
        # 2. Wait for the batch that stored the click (woken by each span that ends, not by polling).
        [batch] = await log.wait_for(stored_batch)
    spans = log.spans
    event_id = str(await db.fetchval("SELECT id FROM click_events WHERE code = 'traced1'"))

    # 3. The server span, named by route template, never by the code itself.
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.name == "GET /{code}"
    assert_stable_http(server, "GET", "/traced1", 302, "/{code}")
    # The lookup's Redis read and Postgres query (a cold cache) are its children, named by the stable
    # database conventions (OTEL_SEMCONV_STABILITY_OPT_IN=database, tracing's default).
    below_server = children(spans, server)
    assert any(s.name == "GET" and (s.attributes or {}).get("db.system.name") == "redis" for s in below_server)
    assert any(s.name == "SELECT" and (s.attributes or {}).get("db.system.name") == "postgresql" for s in below_server)
    nats = urlsplit(nats_url)
    server_address = {"server.address": nats.hostname, "server.port": nats.port}

    # 4. The click's producer span is a child of the server span and says which link and shard.
    [create] = named(spans, "create clicks.*")
    assert create.kind is SpanKind.PRODUCER
    assert create.parent is not None and create.parent.span_id == server.context.span_id
    assert create.context.trace_id == server.context.trace_id
    assert create.attributes is not None
    assert create.attributes["linkpulse.link.code"] == "traced1"
    assert create.attributes["messaging.message.id"] == event_id
    assert create.attributes["messaging.destination.name"] == f"clicks.{shard}"
    assert create.attributes["messaging.destination.partition.id"] == str(shard)

    # 5. The envelope's publish links to it (the envelope's traceparent went out in its NATS header).
    [publish] = named(spans, "publish clicks.*")
    assert publish.kind is SpanKind.PRODUCER and linked(publish, create)
    assert publish.attributes is not None
    assert dict(publish.attributes) == {
        "messaging.system": "nats",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": f"clicks.{shard}",
        "messaging.destination.template": "clicks.*",
        "messaging.destination.partition.id": str(shard),
        **server_address,
        "messaging.message.id": publish.attributes["messaging.message.id"],  # the envelope's own id
        "linkpulse.clicks": 1,
        "linkpulse.links_dropped": 0,
    }

    # 6. The ingest batch span links to the click's producer span and to the envelope's.
    assert batch.kind is SpanKind.CONSUMER
    assert linked(batch, create) and linked(batch, publish)
    assert batch.attributes is not None
    assert {k: batch.attributes[k] for k in MESSAGING_PROCESS} == {
        "messaging.system": "nats",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": f"clicks.{shard}",
        "messaging.destination.partition.id": str(shard),
        "messaging.consumer.group.name": f"ingest-{shard}",
        "messaging.batch.message_count": 1,
        **server_address,
    }
    assert batch.attributes["linkpulse.ingest.events"] == 1
    assert batch.attributes["linkpulse.ingest.inserted"] == 1
    assert batch.attributes["linkpulse.ingest.duplicates"] == 0
    assert batch.attributes["linkpulse.links_dropped"] == 0

    # 7. The insert into click_events is a child of the batch span, in the batch's own trace.
    inserts = [
        s
        for s in children(spans, batch)
        if "INSERT INTO click_events" in str((s.attributes or {}).get("db.query.text"))
    ]
    assert len(inserts) == 1
    assert inserts[0].context.trace_id == batch.context.trace_id
