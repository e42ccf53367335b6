"""`OtlpReceiver`: a stand-in OTLP/HTTP collector on a local port that decodes the spans it is sent."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["OtlpReceiver", "ReceivedSpan", "otlp_receiver"]


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, as the collector saw it (ids as hex, as trace views show them)."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    start: int
    """Start time, ns since the epoch."""
    links: list[tuple[str, str]]
    attributes: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver:
    """What a stand-in collector received: each POST's (path, content type) and the spans in them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.posts: list[tuple[str, str]] = []
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

    def received(self, path: str, content_type: str, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = [
            ReceivedSpan(
                service=_service_name(resource_spans.resource.attributes),
                name=span.name,
                kind=span.kind,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                start=span.start_time_unix_nano,
                links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                attributes={kv.key: _value(kv.value) for kv in span.attributes},
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.posts.append((path, content_type))
            self.spans.extend(spans)

    def snapshot(self) -> list[ReceivedSpan]:
        """The spans received so far (a copy: the server thread appends)."""
        with self._lock:
            return list(self.spans)


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver on a free port of 127.0.0.1, its URL the one to give `OTEL_EXPORTER_OTLP_ENDPOINT`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.received(self.path, self.headers["Content-Type"], body)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = OtlpReceiver(f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def _service_name(attributes: Any) -> str:
    return next((kv.value.string_value for kv in attributes if kv.key == "service.name"), "")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "int_value", "bool_value", "double_value") else str(value)
