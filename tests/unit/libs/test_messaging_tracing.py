"""Trace context through messages: traceparents, `create` spans only under sampled spans, capped batch links."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry.trace import SpanKind

from linkpulse.messaging.tracing import (
    batch_links,
    context_from,
    create_span,
    current_traceparent,
    header_traceparent,
    span_context_of,
    traceparent_of,
)

TP = "00-0af7651916cd43dd8448eb211c80319c-{:016x}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Finished spans of the `tracer` fixture."""
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    """A tracer that samples everything it is asked to, into `exporter`."""
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


def test_a_traceparent_round_trips_and_garbage_is_none() -> None:
    context = span_context_of(TP.format(0xB7AD6B7169203331))
    assert context is not None and context.span_id == 0xB7AD6B7169203331 and context.is_remote
    assert traceparent_of(trace.NonRecordingSpan(context)) == TP.format(0xB7AD6B7169203331)
    for bad in ("", "00-xyz", "00-00000000000000000000000000000000-0000000000000000-01"):
        assert span_context_of(bad) is None and context_from(bad) is None


def test_create_span_makes_nothing_outside_a_sampled_span(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    assert create_span(tracer, "clicks.1", "clicks.*", {}) == ""
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("off")
    with unsampled.start_as_current_span("request"):
        assert create_span(tracer, "clicks.1", "clicks.*", {}) == ""
        assert current_traceparent() == ""
    assert exporter.get_finished_spans() == ()


def test_create_span_under_a_sampled_span_is_a_producer_child_whose_traceparent_travels(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("request") as request:
        assert current_traceparent() == traceparent_of(request)
        traceparent = create_span(tracer, "clicks.1", "clicks.*", {"linkpulse.link.code": "abc"}, partition=1)
    create = next(s for s in exporter.get_finished_spans() if s.name == "create clicks.*")
    assert create.kind is SpanKind.PRODUCER
    assert create.parent is not None and create.parent.span_id == request.get_span_context().span_id
    assert traceparent == traceparent_of(trace.NonRecordingSpan(create.context))
    assert create.attributes is not None
    assert dict(create.attributes) == {
        "messaging.system": "nats",
        "messaging.operation.name": "create",
        "messaging.operation.type": "create",
        "messaging.destination.name": "clicks.1",
        "messaging.destination.template": "clicks.*",
        "messaging.destination.partition.id": "1",
        "linkpulse.link.code": "abc",
    }


def test_batch_links_dedupe_skip_garbage_and_count_what_the_cap_leaves_out() -> None:
    traceparents = [TP.format(1), "", TP.format(1), "garbage", TP.format(2), TP.format(3), TP.format(3), TP.format(4)]
    links, dropped = batch_links(traceparents, limit=2)
    assert [link.context.span_id for link in links] == [1, 2]
    # "garbage" took no link (invalid); 3 and 4 are the distinct ones past the cap.
    assert dropped == 2
    links, dropped = batch_links(traceparents)
    assert [link.context.span_id for link in links] == [1, 2, 3, 4] and dropped == 0


def test_header_traceparent_reads_a_messages_headers() -> None:
    assert header_traceparent(None) == "" and header_traceparent({"Nats-Msg-Id": "x"}) == ""
    assert header_traceparent({"traceparent": TP.format(5)}) == TP.format(5)
