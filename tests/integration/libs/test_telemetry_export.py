"""Tracing's OTLP/HTTP export against a stand-in collector on a local port."""

from __future__ import annotations

import os

import pytest
from tests.otlp import otlp_receiver

from linkpulse.telemetry import Tracing


def test_an_endpoint_alone_sends_spans_as_otlp_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    with otlp_receiver() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
        tracing = Tracing.from_env("linkpulse-redirect")
        tracer, provider = tracing.tracer("test"), tracing.provider
        assert tracer is not None and provider is not None
        tracer.start_span("probe").end()
        provider.force_flush()
        provider.shutdown()
    # http/protobuf (the SDK's own default for "otlp" would be gRPC, which needs grpcio).
    assert collector.posts == [("/v1/traces", "application/x-protobuf")]
    [probe] = collector.spans
    assert (probe.name, probe.service) == ("probe", "linkpulse-redirect")
