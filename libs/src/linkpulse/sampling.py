"""Sampling: the SDK sampler `OTEL_TRACES_SAMPLER` names, built here, with the policy the request gate draws by.

The request gate (`linkpulse.web.server_spans`) decides which requests are traced before Litestar's
OpenTelemetry middleware runs, so it must decide as the sampler would. Building the sampler here from the
variable's name, with the SDK's classes, gives both from one place: the sampler, and the `SamplingPolicy`
(root ratio, and whether a caller's sampled flag is followed) that the gate reproduces it with. Nothing has
to be read back out of a sampler's private parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from linkpulse.web.server_spans import chosen_by_gate

__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "LinkedRootSampler", "SamplingPolicy", "sampling_from_env"]

log = structlog.get_logger(__name__)

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
"""The SDK's sampler names (`OTEL_TRACES_SAMPLER`), each built here as the SDK builds it."""
DEFAULT_SAMPLER = "parentbased_traceidratio"
"""When `OTEL_TRACES_SAMPLER` is unset: a caller's traceparent decides, otherwise the service's own ratio."""


@dataclass(frozen=True, slots=True)
class SamplingPolicy:
    """What a sampler built here decides for a server span, in the two facts the request gate draws with."""

    ratio: float
    """The root ratio: the share of requests without a caller's trace context that are traced (always_on 1,
    always_off 0, traceidratio its argument)."""
    parent_based: bool
    """True: a caller's traceparent decides by its sampled flag (parentbased_*). False: the flag is ignored;
    always_on traces such a request anyway, always_off never, traceidratio by the caller's trace id."""


def sampling_from_env(environ: Mapping[str, str], default_ratio: float) -> tuple[Sampler, SamplingPolicy]:
    """The sampler `OTEL_TRACES_SAMPLER` (and `_ARG`) name, and its policy.

    Args:
        environ: the process environment.
        default_ratio: the service's ratio, for a ratio sampler without a valid `OTEL_TRACES_SAMPLER_ARG`.

    Raises:
        ValueError: a sampler name the SDK does not define (the SDK would warn and sample every request
            of a new trace instead; a start that names the variable is clearer).
    """
    name = (environ.get("OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).strip().lower()
    if name not in SAMPLERS:
        raise ValueError(f"OTEL_TRACES_SAMPLER: unsupported sampler {name!r} (use {', '.join(SAMPLERS)})")
    parent_based = name.startswith("parentbased_")
    root_name = name.removeprefix("parentbased_")
    root: Sampler
    if root_name == "traceidratio":
        ratio = _ratio_arg(environ, default_ratio)
        root = TraceIdRatioBased(ratio)
    elif root_name == "always_on":
        ratio, root = 1.0, ALWAYS_ON
    else:
        ratio, root = 0.0, ALWAYS_OFF
    return (ParentBased(root) if parent_based else root), SamplingPolicy(ratio, parent_based)


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


def _ratio_arg(environ: Mapping[str, str], default_ratio: float) -> float:
    """`OTEL_TRACES_SAMPLER_ARG` as a ratio in [0, 1]; unset or invalid, the service's default.

    The SDK takes 1.0 there, which on the redirect would trace every request of a mistyped setting.
    """
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if not arg:
        return default_ratio
    try:
        ratio = float(arg)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:  # NaN fails this too
        log.warning("telemetry.bad_sampler_arg", OTEL_TRACES_SAMPLER_ARG=arg, ratio=default_ratio)
        return default_ratio
    return ratio
