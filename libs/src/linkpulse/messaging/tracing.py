"""Trace context through NATS: W3C `traceparent` in events and headers, and the messaging spans around them.

Span names follow the OpenTelemetry messaging conventions, `{operation} {subject template}` (`create clicks.*`):
- `create` (producer): one event made inside a sampled request; its traceparent travels in the event;
- `publish` (producer, operation type `send`): one NATS message carrying such events, linked to their `create`
  spans; its traceparent travels in the message's `traceparent` header;
- `process` (consumer): a consumed batch, linked to every producer context found in it.

Nothing here makes a span or a string unless the context it starts from is sampled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from linkpulse.messaging.types import Client

__all__ = [
    "MAX_LINKS",
    "TRACEPARENT",
    "batch_links",
    "context_from",
    "create_span",
    "current_traceparent",
    "header_traceparent",
    "messaging_attributes",
    "span_context_of",
    "traceparent_of",
]

TRACEPARENT = "traceparent"
"""The W3C header name, used as is for NATS headers."""
MAX_LINKS = 128
"""Links per batch span: the SDK's default span limit (OTEL_SPAN_LINK_COUNT_LIMIT), counted rather than silently cut."""

_propagator = TraceContextTextMapPropagator()
# The conventions' well-known operation type of each NATS operation we trace (a publish is a `send`).
_OPERATION_TYPES = {"create": "create", "publish": "send", "process": "process"}


def traceparent_of(span: Span) -> str:
    """The W3C traceparent of `span`; "" for an invalid one."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT, "")


def current_traceparent() -> str:
    """The traceparent of the current span when it is sampled, else "" (nothing to follow)."""
    span = trace.get_current_span()
    return traceparent_of(span) if span.get_span_context().trace_flags.sampled else ""


def context_from(traceparent: str) -> Context | None:
    """A context whose remote parent is `traceparent`; None when it is empty or malformed."""
    if not traceparent:
        return None
    context = _propagator.extract({TRACEPARENT: traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def span_context_of(traceparent: str) -> SpanContext | None:
    """The span context a traceparent names, or None."""
    context = context_from(traceparent)
    return trace.get_current_span(context).get_span_context() if context is not None else None


def messaging_attributes(
    operation: str,
    subject: str,
    template: str,
    *,
    partition: int | None = None,
    nc: Client | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Semantic-convention attributes of a NATS messaging span, plus `extra`.

    Args:
        operation: `create`, `publish` or `process` (`messaging.operation.name`, and the span name's first word).
        subject: the message's subject (`messaging.destination.name`).
        template: the subjects' wildcard form (`messaging.destination.template`).
        partition: the CLICKS shard, when there is one (`messaging.destination.partition.id`).
        nc: the connection, for the server it is connected to (`server.address`, `server.port`).
        extra: further attributes.
    """
    attributes: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.operation.name": operation,
        "messaging.operation.type": _OPERATION_TYPES[operation],
        "messaging.destination.name": subject,
        "messaging.destination.template": template,
    }
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    url = nc.connected_url if nc is not None else None
    if url is not None and url.hostname:
        attributes["server.address"] = url.hostname
        attributes["server.port"] = url.port or 4222  # NATS's default, when the URL names none
    attributes.update(extra)
    return attributes


def create_span(
    tracer: Tracer, subject: str, template: str, attributes: Mapping[str, Any], *, partition: int | None = None
) -> str:
    """Record a `create` span under the current span if that is sampled; return its traceparent, else "".

    The span ends at once: it marks the moment the event was made, and its context is what travels.
    """
    if not trace.get_current_span().get_span_context().trace_flags.sampled:
        return ""
    span = tracer.start_span(
        f"create {template}",
        kind=SpanKind.PRODUCER,
        attributes=messaging_attributes("create", subject, template, partition=partition, **attributes),
    )
    span.end()
    return traceparent_of(span)


def batch_links(traceparents: Iterable[str], limit: int = MAX_LINKS) -> tuple[list[Link], int]:
    """Links to the distinct, valid contexts among `traceparents`, at most `limit`; and how many were left out.

    Those past the limit are counted by distinct string without being parsed: a large batch costs no
    more than its first `limit` contexts.
    """
    links: list[Link] = []
    seen: set[str] = set()
    dropped = 0
    for traceparent in traceparents:
        if not traceparent or traceparent in seen:
            continue
        seen.add(traceparent)
        if len(links) >= limit:
            dropped += 1
            continue
        context = span_context_of(traceparent)
        if context is not None:
            links.append(Link(context))
    return links, dropped


def header_traceparent(headers: Mapping[str, str] | None) -> str:
    """The `traceparent` header of a NATS message, or ""."""
    return headers.get(TRACEPARENT, "") if headers else ""
