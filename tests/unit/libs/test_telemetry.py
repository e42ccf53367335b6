"""Tracing from the OTEL_* variables: off by default, console and OTLP/HTTP exporters, sampling, service names."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from linkpulse.sampling import SamplingPolicy
from linkpulse.telemetry import STABLE_CONVENTIONS, Tracing, check_tracing_env, tracing_summary

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
    assert tracing.sampling is None


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
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "xray"},
            "OTEL_TRACES_SAMPLER: unsupported sampler",
        ),
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
        Tracing.from_env("linkpulse-redirect")


@pytest.mark.parametrize(
    ("service", "env", "policy"),
    [
        ("linkpulse-redirect", {}, SamplingPolicy(0.01, parent_based=True)),
        ("linkpulse-admin", {}, SamplingPolicy(1.0, parent_based=True)),
        ("linkpulse-redirect", {"OTEL_TRACES_SAMPLER_ARG": "0.25"}, SamplingPolicy(0.25, parent_based=True)),
        ("linkpulse-redirect", {"OTEL_TRACES_SAMPLER": "always_on"}, SamplingPolicy(1.0, parent_based=False)),
    ],
)
def test_the_sampler_and_its_policy_come_from_the_sampler_variables_or_the_services_default(
    from_env: MakeTracing, service: str, env: dict[str, str], policy: SamplingPolicy
) -> None:
    # Each sampler name, one by one: tests/unit/libs/test_sampling.py.
    tracing = from_env(service, OTEL_TRACES_EXPORTER="console", **env)
    assert tracing.sampling == policy
    assert tracing.provider is not None
    assert tracing.provider.sampler.get_description().startswith("LinkedRootSampler{")


def test_tracing_on_asks_the_instrumentations_for_the_stable_conventions_unless_told(
    otel_env: pytest.MonkeyPatch,
) -> None:
    otel_env.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "")  # recorded, so that the test's own value is undone
    otel_env.delenv("OTEL_SEMCONV_STABILITY_OPT_IN")
    Tracing()  # off: the environment is left alone
    assert "OTEL_SEMCONV_STABILITY_OPT_IN" not in os.environ
    provider = TracerProvider()
    Tracing(provider)
    assert os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] == STABLE_CONVENTIONS == "http,database"
    otel_env.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http/dup")
    Tracing(provider)
    assert os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] == "http/dup"  # an operator's choice stands
    provider.shutdown()


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


def test_an_explicit_provider_is_used_as_given() -> None:
    provider = TracerProvider(sampler=ALWAYS_ON)
    tracing = Tracing(provider)
    # A sampler built elsewhere: no policy, so the gate lets every request through to the sampler.
    assert tracing.enabled and tracing.sampling is None and len(tracing.server_plugins()) == 1
    provider.shutdown()


def test_the_summary_says_how_to_turn_tracing_on_or_where_traces_go() -> None:
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=" in tracing_summary({})
    assert "OTEL_TRACES_SAMPLER_ARG=" in tracing_summary({"OTEL_TRACES_EXPORTER": "none"})
    on = tracing_summary({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_TRACES_SAMPLER_ARG": "0.1"})
    assert on == "otlp → http://otel:4318; sampler parentbased_traceidratio (0.1)"
    always = tracing_summary({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_TRACES_SAMPLER": "always_on"})
    assert always == "otlp → http://otel:4318; sampler always_on"
