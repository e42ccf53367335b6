"""Server spans: the gate traces by the caller's flag or the root ratio, and what it skips costs no span at all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar import Litestar, Request, get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from linkpulse.sampling import SAMPLERS, LinkedRootSampler, sampling_from_env
from linkpulse.telemetry import Tracing
from linkpulse.web import ServicePlugin

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

seen: list[tuple[bool, bool]] = []


@get("/things/{thing_id:int}", sync_to_thread=False)
def thing(thing_id: FromPath[int]) -> dict[str, int]:
    # What the handler sees: a recording span, and whether client instrumentation (Redis, asyncpg) may trace.
    seen.append((trace.get_current_span().is_recording(), is_instrumentation_enabled()))
    return {"id": thing_id}


@get("/who", sync_to_thread=False)
def who(request: Request[Any, Any, Any]) -> dict[str, str]:
    """What the app sees of the client, whatever the spans leave out."""
    host = request.client.host if request.client else ""
    return {"client": host, "user_agent": request.headers.get("user-agent", ""), "query": request.url.query}


def by_name(name: str = "parentbased_traceidratio", arg: str = "1", *, gate: bool = True) -> Tracing:
    """Tracing as a service builds it for `OTEL_TRACES_SAMPLER=name`; without its policy when not `gate`."""
    sampler, policy = sampling_from_env({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": arg}, 1.0)
    return Tracing(TracerProvider(sampler=LinkedRootSampler(sampler)), policy if gate else None)


@get("/plain/{n:int}", sync_to_thread=False)
def plain(n: FromPath[int]) -> dict[str, int]:
    return {"n": n}


@asynccontextmanager
async def served(
    tracing: Tracing,
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], Callable[[], tuple[ReadableSpan, ...]]]]:
    """An app with the service plugin and `tracing`; yields a client and the finished spans."""
    exporter = InMemorySpanExporter()
    provider = tracing.provider
    assert provider is not None
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Litestar([thing, who, plain], plugins=[ServicePlugin(), *tracing.server_plugins()], openapi_config=None)
    seen.clear()
    async with AsyncTestClient(app) as client:
        yield client, exporter.get_finished_spans
    provider.shutdown()


async def test_a_traced_request_has_one_server_span_named_by_its_route() -> None:
    async with served(by_name()) as (client, spans):
        assert (await client.get("/things/42")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
    routed, unrouted = spans()
    assert routed.kind is SpanKind.SERVER and routed.name == "GET /things/{thing_id}"
    assert routed.attributes is not None and routed.attributes["http.route"] == "/things/{thing_id}"
    # No route matched: the method alone, never the raw path.
    assert unrouted.name == "GET"
    assert seen == [(True, True)]


async def test_server_spans_carry_the_stable_http_names_and_nothing_of_the_client() -> None:
    headers = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0", "x-forwarded-for": "198.51.100.7"}
    async with served(by_name()) as (client, spans):
        assert (await client.get("/things/42?q=1", headers=headers)).status_code == 200
        # The app itself still sees the whole request: only the middleware's copy lacks them.
        seen_by_app = (await client.get("/who?token=s3cret", headers=headers)).json()
    assert seen_by_app == {"client": "testclient", "user_agent": headers["user-agent"], "query": "token=s3cret"}
    span, _ = spans()
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/things/42"
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.route"] == "/things/{thing_id}"
    assert not {"http.method", "http.target", "http.status_code", "http.url"} & set(attributes)  # the old names
    personal = {"client.address", "client.port", "http.client_ip", "user_agent.original", "http.user_agent",
                "net.peer.ip", "net.peer.port", "network.peer.address"}  # fmt: skip
    assert not personal & set(attributes), attributes
    assert "url.query" not in attributes
    assert not any(
        "Firefox" in str(v) or "198.51.100.7" in str(v) or "testclient" in str(v) for v in attributes.values()
    )


async def test_with_ratio_zero_a_request_gets_no_span_and_no_client_spans() -> None:
    async with served(by_name(arg="0")) as (client, spans):
        assert (await client.get("/things/1")).status_code == 200
    assert spans() == ()
    # Not even a non-recording span, and Redis/asyncpg instrumentation is suppressed inside.
    assert seen == [(False, False)]


async def test_a_callers_traceparent_decides_whatever_the_ratio() -> None:
    async with served(by_name(arg="0")) as (client, spans):
        await client.get("/things/1", headers={"traceparent": SAMPLED})
    [span] = spans()
    assert f"{span.context.trace_id:032x}" == SAMPLED.split("-")[1]
    assert span.parent is not None and span.parent.is_remote
    async with served(by_name()) as (client, spans):
        await client.get("/things/1", headers={"traceparent": UNSAMPLED})
    assert spans() == ()


async def test_probes_and_metrics_are_never_traced() -> None:
    async with served(by_name()) as (client, spans):
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
    assert spans() == ()


async def test_with_a_sampler_built_elsewhere_every_request_goes_to_the_sampler() -> None:
    async with served(Tracing(TracerProvider(sampler=ALWAYS_ON))) as (client, spans):
        await client.get("/things/1", headers={"traceparent": UNSAMPLED})
    # No policy: the gate cannot know always_on ignores the caller's flag, and leaves that to the sampler.
    assert len(spans()) == 1


# traceidratio decides by the trace id: this one's low 64 bits are 0.517 of their range. Without a caller, a
# ratio between 0 and 1 is a random draw (its share: test_sampling.py), so only 0 and 1 are compared then.
CASES = [
    (name, arg, caller)
    for name in SAMPLERS
    for arg in (["0", "0.5", "0.6", "1"] if name.endswith("traceidratio") else [""])
    for caller in ([SAMPLED, UNSAMPLED] if arg in ("0.5", "0.6") else [None, SAMPLED, UNSAMPLED])
]


@pytest.mark.parametrize(("name", "arg", "caller"), CASES)
async def test_the_gate_traces_exactly_what_the_sdk_sampler_alone_would(
    name: str, arg: str, caller: str | None
) -> None:
    headers = {"traceparent": caller} if caller else {}
    traced = []
    for gate in (True, False):  # with the gate's draw, then with the middleware and sampler deciding alone
        async with served(by_name(name, arg, gate=gate)) as (client, spans):
            assert (await client.get("/things/1", headers=headers)).status_code == 200
        # The caller's trace, or a new one (a random id, different each time).
        traced.append([f"{s.context.trace_id:032x}" if s.parent is not None else "new" for s in spans()])
    assert traced[0] == traced[1]


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
    async with served(by_name("parentbased_traceidratio", "0")) as (client, spans):
        await client.get("/things/5", headers={"traceparent": SAMPLED})  # traced: the caller sampled it
        await client.get("/plain/5")  # ratio 0: not traced
        scrape = (await client.get("/metrics", headers=OPENMETRICS)).text
    [span] = spans()
    assert {"trace_id": f"{span.context.trace_id:032x}"} in _exemplars(scrape, "/things/{thing_id}")
    assert _exemplars(scrape, "/plain/{n}") == []
