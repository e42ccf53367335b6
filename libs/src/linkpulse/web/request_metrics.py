"""HTTP request metrics: a count and a latency histogram per route template, method and status, for every service.

A traced request leaves its trace id in the ASGI scope (`TRACE_ID_KEY`, set by `linkpulse.web.server_spans`); the
histogram keeps the latest one per bucket as an exemplar, which the OpenMetrics exposition of /metrics shows
(Prometheus's text format has no exemplars) and Grafana links to the trace.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, Exemplar, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BUCKETS", "REQUEST_METRICS", "TRACE_ID_KEY", "RequestMetrics", "RequestMetricsMiddleware", "instrument"]

REQUESTS_NAME = "linkpulse_http_requests"
DURATION_NAME = "linkpulse_http_request_duration_seconds"
LABELS = ("route", "method", "status")
_REQUESTS_HELP = "HTTP requests answered, by route template, method and status."
_DURATION_HELP = (
    "Seconds from receiving a request to sending the last byte of its response, by route template, method and status."
)

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds in seconds; the low ones resolve a redirect answered from the process cache (~50-100 µs)."""

TRACE_ID_KEY = "linkpulse.trace_id"
"""Scope key of a sampled request's trace id (32 hex digits), put there by the server span; absent otherwise."""

UNMATCHED = "unmatched"
"""Route label of a request no route matched (a 404 or 405 from the router): never the raw path."""

# Any other method a client sends is folded into one label value, so it cannot grow the series.
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_OTHER_METHOD = "other"
_LE = (*(floatToGoString(b) for b in BUCKETS), "+Inf")


class _Series:
    """One (route, method, status): per-bucket counts (not cumulative), the sum of durations, exemplars if traced."""

    __slots__ = ("counts", "exemplars", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        # The latest traced request of each bucket; made by the first traced request of the series.
        self.exemplars: list[Exemplar | None] | None = None


class RequestMetrics(Collector):
    """Counts and latencies of answered requests, exposed as a counter and a histogram.

    Plain ints and floats instead of prometheus_client children: a child takes a lock per update
    (~0.8 µs for a counter plus a histogram), and this runs on every redirect. Updates and scrapes
    both happen on the event loop's thread, so nothing races; the counter and the histogram's
    `_count` come from the same numbers and always agree.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], _Series] = {}

    def observe(self, route: str, method: str, status: int, seconds: float, trace_id: str | None = None) -> None:
        """Record one answered request; `trace_id` (a sampled request's) becomes its bucket's exemplar."""
        key = (route, _METHODS.get(method, _OTHER_METHOD), status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        bucket = bisect_left(BUCKETS, seconds)
        series.counts[bucket] += 1
        series.total += seconds
        if trace_id is not None:
            if series.exemplars is None:
                series.exemplars = [None] * len(series.counts)
            series.exemplars[bucket] = Exemplar({"trace_id": trace_id}, seconds, time.time())

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        requests, duration = self._families()
        for (route, method, status), series in list(self._series.items()):
            labels = [route, method, str(status)]
            cumulative, buckets = 0, []
            exemplars = series.exemplars or [None] * len(series.counts)
            for le, count, exemplar in zip(_LE, series.counts, exemplars, strict=True):
                cumulative += count
                buckets.append((le, cumulative) if exemplar is None else (le, cumulative, exemplar))
            requests.add_metric(labels, cumulative)
            duration.add_metric(labels, buckets, series.total)
        return [requests, duration]

    def _families(self) -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(REQUESTS_NAME, _REQUESTS_HELP, labels=LABELS),
            HistogramMetricFamily(DURATION_NAME, _DURATION_HELP, labels=LABELS),
        )


REQUEST_METRICS = RequestMetrics()
"""The process's one collector: every app in the process adds to it, as to any prometheus_client metric."""
REGISTRY.register(REQUEST_METRICS)


class RequestMetricsMiddleware:
    """Raw ASGI wrapper around a whole app: times each HTTP request and records it by route template.

    It wraps the app's ASGI handler rather than joining Litestar's middleware list: that list runs per
    route, after routing, so it never sees a 404 for an unknown path or a 405, and its presence adds an
    exception-handler layer to every route.
    """

    __slots__ = ("app", "metrics")

    def __init__(self, app: ASGIApp, metrics: RequestMetrics = REQUEST_METRICS) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Unless the app sends a status, the server answers 500 (the app raised before responding).
        status = 500

        # A plain function returning send's awaitable: an `async def` here would add a coroutine per message.
        def send_status(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router stores the matched route's template (`/{code}`) in the scope; the raw path
            # would make one series per short code.
            self.metrics.observe(
                scope.get("path_template") or UNMATCHED,
                scope["method"],
                status,
                time.perf_counter() - started,
                scope.get(TRACE_ID_KEY),  # type: ignore[arg-type]
            )


def instrument(app: Litestar) -> None:
    """Wrap `app`'s ASGI handler in the request metrics (once, however often its lifespan runs)."""
    if not isinstance(app.asgi_handler, RequestMetricsMiddleware):
        app.asgi_handler = RequestMetricsMiddleware(app.asgi_handler)
