"""Tracing fixtures: an in-memory span exporter that can be awaited, and the services in-process sharing it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from tests.polling import eventually

from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.worker import IngestWorker
from linkpulse.redirect.app import create_app
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.sampling import LinkedRootSampler, SamplingPolicy
from linkpulse.telemetry import Tracing

RunApp = Callable[..., AbstractAsyncContextManager[AsyncTestClient[Any]]]

PERSONAL = frozenset({
    "client.address", "client.port", "http.client_ip", "user_agent.original", "http.user_agent", "net.peer.ip",
    "net.peer.port", "network.peer.address", "network.peer.port",
})  # fmt: skip
"""What would say who the client is: never on a span (the stable names, and the old ones)."""


def assert_stable_http(span: ReadableSpan, method: str, path: str, status: int, route: str) -> None:
    """`span` is a server span with the stable HTTP attribute names and nothing of the client."""
    attributes = dict(span.attributes or {})
    expected = {"http.request.method": method, "url.path": path, "http.response.status_code": status}
    expected["http.route"] = route
    assert {name: attributes.get(name) for name in expected} == expected
    assert not {"http.method", "http.target", "http.status_code"} & set(attributes)  # the old names
    assert not PERSONAL & set(attributes), attributes
    assert "url.query" not in attributes  # a forwarded query may hold a token or an address


class SpanLog(SpanProcessor):
    """Counts spans as they start and wakes waiters as they end (the exporter keeps the finished ones)."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter
        self.started = 0
        self._ended = asyncio.Event()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        # Spans end on the event loop's thread here (the tests run no other), so setting the event is safe.
        self._ended.set()

    @property
    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    async def wait_for(self, found: Callable[[Sequence[ReadableSpan]], Any], timeout: float = 15.0) -> Any:
        """Wait until `found(finished spans)` is truthy, woken by each span that ends; return its value."""
        what = f"spans: {found.__name__}"
        return await eventually(lambda: found(self.spans), what, timeout=timeout, wake=self._ended)


def traced(ratio: float) -> tuple[Tracing, SpanLog]:
    """Tracing as a service builds it (parent-based ratio behind LinkedRootSampler) into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=LinkedRootSampler(ParentBasedTraceIdRatio(ratio)))
    log = SpanLog(exporter)
    provider.add_span_processor(log)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, SamplingPolicy(ratio, parent_based=True)), log


@pytest.fixture
def span_log() -> Iterator[tuple[Tracing, SpanLog]]:
    """Everything sampled (root ratio 1), finished spans kept in memory."""
    tracing, log = traced(1.0)
    yield tracing, log
    assert tracing.provider is not None
    tracing.provider.shutdown()


@pytest.fixture
def redirect_env(service_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Redirect settings for this test's servers, with a short linger so clicks leave quickly."""
    return {
        **service_env,
        "LINKPULSE_PUBLISHER_SPILL_DIR": str(tmp_path / "spill"),
        "LINKPULSE_PUBLISHER_LINGER": "0.001",
    }


@pytest.fixture
def run_redirect(redirect_env: dict[str, str]) -> RunApp:
    """The redirect app with its lifespan running, traced by the given Tracing."""

    @asynccontextmanager
    async def run(tracing: Tracing) -> AsyncIterator[AsyncTestClient[Any]]:
        app = create_app(RedirectSettings.from_env(redirect_env), tracing)
        async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
            yield client

    return run


@pytest.fixture
def run_ingest(service_env: dict[str, str]) -> Callable[[Tracing], AbstractAsyncContextManager[IngestWorker]]:
    """An IngestWorker as a task of this loop for the body of an `async with`, traced by the given Tracing."""

    @asynccontextmanager
    async def run(tracing: Tracing) -> AsyncIterator[IngestWorker]:
        settings = IngestSettings.from_env({**service_env, "LINKPULSE_INGEST_MAX_WAIT": "0.1"})
        worker = IngestWorker(settings, tracing)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)

    return run


@pytest.fixture
async def nats_js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """JetStream on this test's (freshly emptied) streams, for publishing envelopes directly."""
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()
