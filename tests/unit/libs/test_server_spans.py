"""Server spans: the gate traces by the caller's flag or the root ratio, and what it skips costs no span at all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBasedTraceIdRatio
from opentelemetry.trace import SpanKind
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from linkpulse.telemetry import LinkedRootSampler, Tracing
from linkpulse.web import ServicePlugin

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

seen: list[tuple[bool, bool]] = []


@get("/things/{thing_id:int}", sync_to_thread=False)
def thing(thing_id: FromPath[int]) -> dict[str, int]:
    # What the handler sees: a recording span, and whether client instrumentation (Redis, asyncpg) may trace.
    seen.append((trace.get_current_span().is_recording(), is_instrumentation_enabled()))
    return {"id": thing_id}


@get("/plain/{n:int}", sync_to_thread=False)
def plain(n: FromPath[int]) -> dict[str, int]:
    return {"n": n}


@asynccontextmanager
async def served(
    sampler: Any,
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], Callable[[], tuple[ReadableSpan, ...]]]]:
    """An app with the service plugin and tracing by `sampler`; yields a client and the finished spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Litestar([thing, plain], plugins=[ServicePlugin(), *Tracing(provider).server_plugins()], openapi_config=None)
    seen.clear()
    async with AsyncTestClient(app) as client:
        yield client, exporter.get_finished_spans
    provider.shutdown()


async def test_a_traced_request_has_one_server_span_named_by_its_route() -> None:
    async with served(LinkedRootSampler(ParentBasedTraceIdRatio(1.0))) as (client, spans):
        assert (await client.get("/things/42")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
    routed, unrouted = spans()
    assert routed.kind is SpanKind.SERVER and routed.name == "GET /things/{thing_id}"
    assert routed.attributes is not None and routed.attributes["http.route"] == "/things/{thing_id}"
    assert routed.attributes["http.status_code"] == 200
    # No route matched: the method alone, never the raw path.
    assert unrouted.name == "GET"
    assert seen == [(True, True)]


async def test_with_ratio_zero_a_request_gets_no_span_and_no_client_spans() -> None:
    async with served(LinkedRootSampler(ParentBasedTraceIdRatio(0.0))) as (client, spans):
        assert (await client.get("/things/1")).status_code == 200
    assert spans() == ()
    # Not even a non-recording span, and Redis/asyncpg instrumentation is suppressed inside.
    assert seen == [(False, False)]


async def test_a_callers_traceparent_decides_whatever_the_ratio() -> None:
    async with served(LinkedRootSampler(ParentBasedTraceIdRatio(0.0))) as (client, spans):
        await client.get("/things/1", headers={"traceparent": SAMPLED})
    [span] = spans()
    assert f"{span.context.trace_id:032x}" == SAMPLED.split("-")[1]
    assert span.parent is not None and span.parent.is_remote
    async with served(LinkedRootSampler(ParentBasedTraceIdRatio(1.0))) as (client, spans):
        await client.get("/things/1", headers={"traceparent": UNSAMPLED})
    assert spans() == ()


async def test_probes_and_metrics_are_never_traced() -> None:
    async with served(LinkedRootSampler(ParentBasedTraceIdRatio(1.0))) as (client, spans):
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
    assert spans() == ()


async def test_with_a_sampler_the_gate_cannot_read_every_request_goes_to_the_sampler() -> None:
    async with served(ALWAYS_ON) as (client, spans):
        await client.get("/things/1", headers={"traceparent": UNSAMPLED})
    # always_on ignores the caller's flag, and the gate leaves that to it.
    assert len(spans()) == 1


OPENMETRICS = {"accept": "application/openmetrics-text;version=1.0.0"}


def _exemplars(text: str, route: str) -> list[dict[str, str]]:
    """Exemplar labels on the latency buckets of `route` in an OpenMetrics scrape."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return [
        s.exemplar.labels
        for s in families["linkpulse_http_request_duration_seconds"].samples
        if s.labels.get("route") == route and s.exemplar is not None
    ]


async def test_a_traced_request_is_an_exemplar_of_the_latency_histogram_and_an_untraced_one_is_not() -> None:
    async with served(LinkedRootSampler(ParentBasedTraceIdRatio(0.0))) as (client, spans):
        await client.get("/things/5", headers={"traceparent": SAMPLED})  # traced: the caller sampled it
        await client.get("/plain/5")  # ratio 0: not traced
        scrape = (await client.get("/metrics", headers=OPENMETRICS)).text
    [span] = spans()
    assert {"trace_id": f"{span.context.trace_id:032x}"} in _exemplars(scrape, "/things/{thing_id}")
    assert _exemplars(scrape, "/plain/{n}") == []
