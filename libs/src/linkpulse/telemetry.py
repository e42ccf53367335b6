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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from litestar.plugins import InitPluginProtocol
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Tracer
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from linkpulse.web.server_spans import ServerSpans, chosen_by_gate

__all__ = [
    "DEFAULT_RATIOS",
    "OTEL_VARIABLES",
    "LinkedRootSampler",
    "Tracing",
    "check_tracing_env",
    "tracer_provider_from_env",
    "tracing_summary",
]

log = structlog.get_logger(__name__)

DEFAULT_RATIOS = {"linkpulse-redirect": 0.01, "linkpulse-ingest": 0.01, "linkpulse-admin": 1.0}
"""Root sampling ratio per service when `OTEL_TRACES_SAMPLER` is unset: 1% of redirects (the hot path), every
admin change. Ingest batches that carry a sampled click are always recorded (LinkedRootSampler); 1% of the others."""

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
})  # fmt: skip
"""The standard variables tracing reads here (itself or through the SDK) that a deployment is meant to set;
the chart's environment test holds the chart to them, as it holds `LINKPULSE_*` to the settings classes."""

_OTLP_NAMES = {"otlp", "otlp_proto_http", "otlp_proto_grpc"}


class LinkedRootSampler(Sampler):
    """A root span linked to a sampled span is sampled; everything else is decided by `base`.

    An ingest batch has no parent, only links to the clicks in it: this keeps a sampled click's trace
    going into the database however low the ingest's own ratio is. A server span the request gate has
    already chosen (see `linkpulse.web.server_spans`) is sampled too. A client span (a Redis command, a query)
    outside any trace is dropped: a background loop's queries (the outbox relay's, every second) alone
    would be noise.
    """

    def __init__(self, base: Sampler) -> None:
        self.base = base

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if not trace.get_current_span(parent_context).get_span_context().is_valid:
            if kind is SpanKind.SERVER and chosen_by_gate():
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            if links and any(link.context.trace_flags.sampled for link in links):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            if kind is SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
        return self.base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"LinkedRootSampler{{{self.base.get_description()}}}"


def tracer_provider_from_env(service: str) -> TracerProvider | None:
    """An SDK provider configured by the `OTEL_*` variables, or None when tracing is off.

    Args:
        service: `service.name` unless `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`)
            says otherwise; also picks the default sampling ratio (DEFAULT_RATIOS).

    Raises:
        ValueError: an exporter or OTLP protocol that is not supported (a misconfiguration should stop
            the start, not silently lose every trace).
    """
    environ = os.environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    factories = [_exporter_factory(name, environ) for name in _exporter_names(environ)]
    if not factories:
        return None
    provider = TracerProvider(
        sampler=LinkedRootSampler(_sampler(environ, DEFAULT_RATIOS.get(service, 1.0))), resource=_resource(service)
    )
    for factory in factories:
        provider.add_span_processor(BatchSpanProcessor(factory()))
    return provider


def check_tracing_env() -> None:
    """Raise ValueError (naming the variable) when the `OTEL_*` variables ask for an exporter that cannot work.

    For a service's `main()`, before its server starts: the app factory would fail the same way, less readably.
    """
    for name in _exporter_names(os.environ):
        _exporter_factory(name, os.environ)


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
    sampler = environ.get("OTEL_TRACES_SAMPLER") or "parentbased_traceidratio"
    ratio = environ.get("OTEL_TRACES_SAMPLER_ARG") or ", ".join(f"{s} {r:g}" for s, r in DEFAULT_RATIOS.items())
    return f"{where}; sampler {sampler} ({ratio})"


class Tracing:
    """One process's tracing: its provider (None: off) and the instrumentation that uses it."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider

    @classmethod
    def from_env(cls, service: str) -> Tracing:
        """Tracing as the `OTEL_*` variables say (see `tracer_provider_from_env`)."""
        return cls(tracer_provider_from_env(service))

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @property
    def root_ratio(self) -> float | None:
        """The share of requests without a trace context that get traced, when the sampler says it simply."""
        return _root_ratio(self.provider.sampler) if self.provider is not None else None

    def tracer(self, name: str) -> Tracer | None:
        """A tracer of this provider, or None when tracing is off (callers skip all span work then)."""
        return self.provider.get_tracer(name) if self.provider is not None else None

    def server_plugins(self) -> list[InitPluginProtocol]:
        """Litestar plugins giving each traced HTTP request a server span (none when off; see ServerSpans)."""
        if self.provider is None:
            return []
        return [ServerSpans(self.provider, self.root_ratio)]

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


def _root_ratio(sampler: Sampler) -> float | None:
    """The root sampling ratio of a LinkedRootSampler over a parent-based sampler; None for any other."""
    if not isinstance(sampler, LinkedRootSampler) or not isinstance(sampler.base, ParentBased):
        return None
    root = getattr(sampler.base, "_root", None)  # the SDK keeps it private; a test pins it
    if isinstance(root, TraceIdRatioBased):
        return root.rate
    return {id(ALWAYS_ON): 1.0, id(ALWAYS_OFF): 0.0}.get(id(root))


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


def _sampler(environ: Mapping[str, str], default_ratio: float) -> Sampler:
    if environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()
    # No sampler named: parent-based ratio sampling, at OTEL_TRACES_SAMPLER_ARG or the service's default.
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    ratio = default_ratio
    if arg:
        try:
            ratio = float(arg)
        except ValueError:
            log.warning("telemetry.bad_sampler_arg", OTEL_TRACES_SAMPLER_ARG=arg, ratio=ratio)
    return ParentBasedTraceIdRatio(ratio)


def _resource(service: str) -> Resource:
    resource = Resource.create()
    # Resource.create falls back to "unknown_service:<executable>" when the environment names none.
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    return resource
