"""Tracing from the OTEL_* variables: off by default, console and OTLP/HTTP exporters, sampling, service names."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBasedTraceIdRatio
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from linkpulse.telemetry import LinkedRootSampler, Tracing, check_tracing_env, tracer_provider_from_env, tracing_summary

MakeTracing = Callable[..., Tracing]


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable from the machine running the tests; each test sets its own."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def from_env(otel_env: pytest.MonkeyPatch) -> Iterator[MakeTracing]:
    """`Tracing.from_env` with the given variables; every provider made is shut down after the test."""
    made: list[Tracing] = []

    def make(service: str = "linkpulse-ingest", **env: str) -> Tracing:
        for name, value in env.items():
            otel_env.setenv(name, value)
        tracing = Tracing.from_env(service)
        made.append(tracing)
        return tracing

    yield make
    for tracing in made:
        if tracing.provider is not None:
            tracing.provider.shutdown()


def emit(tracing: Tracing, name: str = "probe") -> None:
    """Record one span and flush it to the exporters."""
    tracer = tracing.tracer("test")
    assert tracer is not None
    tracer.start_span(name).end()
    assert tracing.provider is not None
    tracing.provider.force_flush()


def test_nothing_set_means_tracing_is_off(from_env: MakeTracing) -> None:
    tracing = from_env()
    assert tracing.provider is None and not tracing.enabled
    # Off: no tracer, no middleware, nothing for the request path to call.
    assert tracing.tracer("x") is None
    assert tracing.server_plugins() == []
    assert tracing.root_ratio is None


def test_console_exporter_prints_each_span_with_the_service_name(
    from_env: MakeTracing, capsys: pytest.CaptureFixture[str]
) -> None:
    tracing = from_env("linkpulse-ingest", OTEL_TRACES_EXPORTER="console", OTEL_TRACES_SAMPLER="always_on")
    emit(tracing, "probe")
    (span,) = (json.loads(line) for line in capsys.readouterr().out.splitlines())  # one line, like the logs
    assert span["name"] == "probe"
    assert span["resource"]["attributes"]["service.name"] == "linkpulse-ingest"


def test_exporter_none_means_off_even_with_an_endpoint_and_prints_nothing(
    from_env: MakeTracing, capsys: pytest.CaptureFixture[str]
) -> None:
    tracing = from_env(OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert tracing.provider is None
    assert capsys.readouterr().out == ""


def test_sdk_disabled_means_off(from_env: MakeTracing) -> None:
    assert from_env(OTEL_SDK_DISABLED="true", OTEL_TRACES_EXPORTER="console").provider is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "opentelemetry-exporter-otlp-proto-grpc",
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "unsupported protocol"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "unsupported exporter 'zipkin'"),
    ],
)
def test_an_exporter_that_cannot_work_stops_the_start(
    otel_env: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        otel_env.setenv(name, value)
    # Both where a service's main() checks before serving, and where the app factory builds the provider.
    with pytest.raises(ValueError, match=message):
        check_tracing_env()
    with pytest.raises(ValueError, match=message):
        tracer_provider_from_env("linkpulse-redirect")


@pytest.mark.parametrize(
    ("service", "env", "ratio"),
    [
        ("linkpulse-redirect", {}, 0.01),
        ("linkpulse-admin", {}, 1.0),
        ("linkpulse-redirect", {"OTEL_TRACES_SAMPLER_ARG": "0.25"}, 0.25),
        ("linkpulse-redirect", {"OTEL_TRACES_SAMPLER_ARG": "lots"}, 0.01),
        ("linkpulse-admin", {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, 0.5),
        ("linkpulse-admin", {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, 0.0),
        # Samplers that are not parent-based ratios: the request gate lets the sampler see every request.
        ("linkpulse-admin", {"OTEL_TRACES_SAMPLER": "always_on"}, None),
        ("linkpulse-admin", {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, None),
    ],
)
def test_the_root_ratio_comes_from_the_sampler_variables_or_the_services_default(
    from_env: MakeTracing, service: str, env: dict[str, str], ratio: float | None
) -> None:
    tracing = from_env(service, OTEL_TRACES_EXPORTER="console", **env)
    assert tracing.root_ratio == ratio
    assert tracing.provider is not None
    assert tracing.provider.sampler.get_description().startswith("LinkedRootSampler{")


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, "linkpulse-admin"),
        ({"OTEL_SERVICE_NAME": "edge-admin"}, "edge-admin"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=eu-admin,deployment.environment=prod"}, "eu-admin"),
    ],
)
def test_the_service_name_defaults_per_service_and_the_variables_override_it(
    from_env: MakeTracing, env: dict[str, str], name: str
) -> None:
    tracing = from_env("linkpulse-admin", OTEL_TRACES_EXPORTER="console", **env)
    assert tracing.provider is not None
    assert tracing.provider.resource.attributes["service.name"] == name


def _context(sampled: bool, span_id: int = 7) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id=0xABC, span_id=span_id, is_remote=True, trace_flags=flags)


def test_a_root_span_linked_to_a_sampled_span_is_sampled_whatever_the_ratio() -> None:
    sampler = LinkedRootSampler(ParentBasedTraceIdRatio(0.0))

    def decide(links: list[Link]) -> Decision:
        return sampler.should_sample(None, 1, "process", SpanKind.CONSUMER, links=links).decision

    assert decide([Link(_context(False)), Link(_context(True, 8))]) is Decision.RECORD_AND_SAMPLE
    assert decide([Link(_context(False))]) is Decision.DROP
    assert decide([]) is Decision.DROP


def test_a_client_span_outside_any_trace_is_dropped_and_one_inside_follows_its_parent() -> None:
    sampler = LinkedRootSampler(ParentBasedTraceIdRatio(1.0))
    assert sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT).decision is Decision.DROP
    for sampled, decision in ((True, Decision.RECORD_AND_SAMPLE), (False, Decision.DROP)):
        parent = trace.set_span_in_context(NonRecordingSpan(_context(sampled)))
        assert sampler.should_sample(parent, 1, "SELECT", SpanKind.CLIENT).decision is decision


def test_an_explicit_provider_is_used_as_given() -> None:
    provider = TracerProvider(sampler=ALWAYS_ON)
    tracing = Tracing(provider)
    # A sampler this module did not build: no gate ratio, every request goes to the sampler.
    assert tracing.enabled and tracing.root_ratio is None and len(tracing.server_plugins()) == 1
    provider.shutdown()


def test_the_summary_says_how_to_turn_tracing_on_or_where_traces_go() -> None:
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=" in tracing_summary({})
    assert "OTEL_TRACES_SAMPLER_ARG=" in tracing_summary({"OTEL_TRACES_EXPORTER": "none"})
    on = tracing_summary({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_TRACES_SAMPLER_ARG": "0.1"})
    assert on == "otlp → http://otel:4318; sampler parentbased_traceidratio (0.1)"
