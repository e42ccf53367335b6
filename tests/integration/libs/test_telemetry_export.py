"""Tracing's OTLP/HTTP export against a stand-in collector on a local port."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from linkpulse.telemetry import Tracing


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A stand-in OTLP/HTTP collector on a free local port: (its URL, the (path, content type) of each POST)."""
    received: list[tuple[str, str]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_an_endpoint_alone_sends_spans_as_otlp_over_http(
    monkeypatch: pytest.MonkeyPatch, collector: tuple[str, list[tuple[str, str]]]
) -> None:
    url, received = collector
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    tracing = Tracing.from_env("linkpulse-redirect")
    tracer, provider = tracing.tracer("test"), tracing.provider
    assert tracer is not None and provider is not None
    tracer.start_span("probe").end()
    provider.force_flush()
    provider.shutdown()
    # http/protobuf (the SDK's own default for "otlp" would be gRPC, which needs grpcio).
    assert received == [("/v1/traces", "application/x-protobuf")]
