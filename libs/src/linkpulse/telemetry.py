"""Tracing setup: an OpenTelemetry SDK provider built from the standard `OTEL_*` variables, or none at all.

Tracing is off unless an exporter is named (`OTEL_TRACES_EXPORTER=otlp|console`) or an OTLP endpoint is
given (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, which imply `otlp`). Off means
no provider, no middleware and no instrumentation: a redirect then pays nothing for tracing.

The SDK reads most of these variables itself, from `os.environ` (endpoint, headers, timeout, batch
processor limits, span limits, `OTEL_RESOURCE_ATTRIBUTES`), so unlike `LINKPULSE_*` settings they
are not passed in as a mapping. Providers are never installed as the global one: every tracer and
instrumentation here takes its provider explicitly, so tests can run several in one process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from litestar.plugins import InitPluginProtocol
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Tracer

from linkpulse.sampling import DEFAULT_SAMPLER, LinkedRootSampler, SamplingPolicy, sampling_from_env
from linkpulse.web.server_spans import ServerSpans

__all__ = ["DEFAULT_RATIOS", "OTEL_VARIABLES", "STABLE_CONVENTIONS", "Tracing", "check_tracing_env", "tracing_summary"]

DEFAULT_RATIOS = {"linkpulse-redirect": 0.01, "linkpulse-ingest": 0.01, "linkpulse-admin": 1.0}
"""Root sampling ratio per service when `OTEL_TRACES_SAMPLER_ARG` is unset (or invalid) for a ratio sampler, the
default one included: 1% of redirects (the hot path), every admin change. Ingest batches that carry a sampled
click are always recorded (LinkedRootSampler); 1% of the others."""

OTEL_VARIABLES = frozenset({
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SEMCONV_STABILITY_OPT_IN",
})  # fmt: skip
"""The standard variables tracing reads here (itself or through the SDK) that a deployment is meant to set;
the chart's environment test holds the chart to them, as it holds `LINKPULSE_*` to the settings classes."""

STABLE_CONVENTIONS = "http,database"
"""`OTEL_SEMCONV_STABILITY_OPT_IN` when unset: the stable HTTP and database attribute names (`http.request.method`,
`url.path`, `db.query.text`, ...), where the instrumentations would otherwise still emit the old ones."""

_OTLP_NAMES = {"otlp", "otlp_proto_http", "otlp_proto_grpc"}


def check_tracing_env() -> None:
    """Raise ValueError (naming the variable) when the `OTEL_*` variables ask for an exporter or sampler we lack.

    For a service's `main()`, before its server starts: the app factory would fail the same way, less readably.
    """
    names = _exporter_names(os.environ)
    for name in names:
        _exporter_factory(name, os.environ)
    if names:
        sampling_from_env(os.environ, 1.0)


def tracing_summary(environ: Mapping[str, str]) -> str:
    """One line for `linkpulse up`: where the services' traces go, or how to send them somewhere."""
    names = _exporter_names(environ)
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or not names:
        return (
            "off; to trace, set OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 (an OTLP/HTTP collector) "
            "and OTEL_TRACES_SAMPLER_ARG=1.0 (every request) before `linkpulse up`"
        )
    endpoint = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "the OTLP default endpoint"
    )
    where = ", ".join(f"{name} → {endpoint}" if name in _OTLP_NAMES else f"{name} → service logs" for name in names)
    sampler = (environ.get("OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).strip().lower()
    if not sampler.endswith("traceidratio"):
        return f"{where}; sampler {sampler}"
    ratio = environ.get("OTEL_TRACES_SAMPLER_ARG") or ", ".join(f"{s} {r:g}" for s, r in DEFAULT_RATIOS.items())
    return f"{where}; sampler {sampler} ({ratio})"


class Tracing:
    """One process's tracing: its provider (None: off), its sampler's policy, and the instrumentation that uses it."""

    def __init__(self, provider: TracerProvider | None = None, sampling: SamplingPolicy | None = None) -> None:
        """Trace with `provider`; `sampling` is the policy of its sampler (`linkpulse.sampling`), None if unknown.

        Without a policy, the request gate lets every request through to the sampler.
        """
        self.provider = provider
        self.sampling = sampling if provider is not None else None
        """How the request gate reproduces the sampler; None when off, or when the sampler was built elsewhere."""
        if provider is not None:
            # The instrumentations read it once, when the first of them is made: that is after this.
            os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", STABLE_CONVENTIONS)

    @classmethod
    def from_env(cls, service: str) -> Tracing:
        """Tracing as the `OTEL_*` variables say: off (no provider) unless they name an exporter or an endpoint.

        Args:
            service: `service.name` unless `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`)
                says otherwise; also picks the default sampling ratio (DEFAULT_RATIOS).

        Raises:
            ValueError: an exporter, OTLP protocol or sampler that is not supported (a misconfiguration should
                stop the start, not silently lose every trace).
        """
        environ = os.environ
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls()
        factories = [_exporter_factory(name, environ) for name in _exporter_names(environ)]
        if not factories:
            return cls()
        sampler, policy = sampling_from_env(environ, DEFAULT_RATIOS.get(service, 1.0))
        provider = TracerProvider(sampler=LinkedRootSampler(sampler), resource=_resource(service))
        for factory in factories:
            provider.add_span_processor(BatchSpanProcessor(factory()))
        return cls(provider, policy)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def tracer(self, name: str) -> Tracer | None:
        """A tracer of this provider, or None when tracing is off (callers skip all span work then)."""
        return self.provider.get_tracer(name) if self.provider is not None else None

    def server_plugins(self) -> list[InitPluginProtocol]:
        """Litestar plugins giving each traced HTTP request a server span (none when off; see ServerSpans)."""
        if self.provider is None:
            return []
        return [ServerSpans(self.provider, self.sampling)]

    def instrument_redis(self, client: Any) -> None:
        """Give `client`'s commands client spans (nothing when off)."""
        if self.provider is not None:
            RedisInstrumentor.instrument_client(client, tracer_provider=self.provider)

    @contextmanager
    def asyncpg_spans(self) -> Iterator[None]:
        """Trace asyncpg queries while inside; nothing when off.

        asyncpg is patched process-wide (its Connection has no per-instance hook), so nested users share
        the first provider, and the patch is removed when the last one leaves.
        """
        if self.provider is None:
            yield
            return
        _AsyncpgPatch.enter(self.provider)
        try:
            yield
        finally:
            _AsyncpgPatch.leave()

    async def flush(self, timeout: float = 5.0) -> None:
        """Export what is buffered, at shutdown; in a thread, as an unreachable collector can hold it `timeout` s."""
        if self.provider is not None:
            await asyncio.to_thread(self.provider.force_flush, int(timeout * 1000))


class _AsyncpgPatch:
    users = 0

    @classmethod
    def enter(cls, provider: TracerProvider) -> None:
        if cls.users == 0:
            AsyncPGInstrumentor().instrument(tracer_provider=provider)
        cls.users += 1

    @classmethod
    def leave(cls) -> None:
        cls.users -= 1
        if cls.users == 0:
            AsyncPGInstrumentor().uninstrument()


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    names = environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        # Nothing named: an endpoint alone means "send them there"; neither means tracing is off.
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        return ["otlp"] if endpoint else []
    return [n for n in (part.strip().lower() for part in names.split(",")) if n and n != "none"]


def _exporter_factory(name: str, environ: Mapping[str, str]) -> Callable[[], SpanExporter]:
    if name == "console":
        # sys.stdout when made, not the SDK's default argument (bound when it was imported); one span per line,
        # not the SDK's indented JSON, so the service's output stays one JSON object per line.
        return lambda: ConsoleSpanExporter(out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n")
    if name not in _OTLP_NAMES:
        raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r} (use otlp, console or none)")
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    # The SDK's own default for plain "otlp" is gRPC; http/protobuf needs no grpcio, so it is ours.
    grpc = name == "otlp_proto_grpc" or (name == "otlp" and protocol == "grpc")
    if grpc:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            raise ValueError(
                "OTLP over gRPC needs `pip install opentelemetry-exporter-otlp-proto-grpc`; "
                "or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (port 4318)"
            ) from None
        return GrpcExporter  # type: ignore[no-any-return]
    if protocol not in ("", "http/protobuf"):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r} (http/protobuf or grpc)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter


def _resource(service: str) -> Resource:
    resource = Resource.create()
    # Resource.create falls back to "unknown_service:<executable>" when the environment names none.
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    return resource
