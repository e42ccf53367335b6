"""Micro-benchmark: what tracing costs a redirect, off vs parent-based ratio 0 vs 0.01 vs 1 (and 0 without the gate).

Not a test (nothing asserts a time): run it by hand and compare the medians.

    .venv/bin/python tests/bench/tracing.py [--calls 2000] [--rounds 31]

Each mode is its own redirect app (built by `create_app` with that tracing) answering GETs of a cached
link through the whole ASGI app (the OpenTelemetry middleware, routing, the handler, the click's
`create` span when sampled), with a no-op publisher; spans go through the batch processor to an exporter
that drops them, as an OTLP one would without the network. Time is this process's CPU time; every round
runs each mode once, in a rotating order, so drift hits all alike. The figure per mode is the median
over rounds, and its cost is the median of the per-round differences from "off". "ratio 0, no gate" is
Litestar's OpenTelemetry middleware meeting every request and the sampler dropping it: what the request gate
of `linkpulse.web.server_spans` saves.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

from linkpulse.links import LinkRecord
from linkpulse.redirect.app import create_app
from linkpulse.redirect.cache import LinkCache
from linkpulse.redirect.clicks import ClickMaker
from linkpulse.redirect.core import RedirectCore, keep_core
from linkpulse.redirect.lookup import LinkLookup
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.redirect.tracing import ClickTracing
from linkpulse.sampling import LinkedRootSampler, SamplingPolicy
from linkpulse.telemetry import Tracing
from linkpulse.web.proxies import TrustedProxies

_HEADERS = [(b"host", b"sho.rt"), (b"user-agent", b"bench/1.0"), (b"accept-language", b"en")]


class _NoPublisher:
    def submit(self, event: object) -> None:
        pass


class _DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    pass


def _scope() -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/bench1", "raw_path": b"/bench1", "root_path": "", "query_string": b"", "headers": _HEADERS,
        "client": ("10.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip


def _tracing(ratio: float | None, *, gate: bool = True) -> Tracing:
    if ratio is None:
        return Tracing()
    provider = TracerProvider(sampler=LinkedRootSampler(ParentBasedTraceIdRatio(ratio)))
    provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
    # Without its policy the gate cannot reproduce the sampler, so every request meets the middleware.
    return Tracing(provider, SamplingPolicy(ratio, parent_based=True) if gate else None)


def _app(tracing: Tracing) -> Any:
    app = create_app(RedirectSettings.from_env({}), tracing)
    cache = LinkCache(1000, 60.0, 1000, 5.0)
    cache.put("bench1", LinkRecord(id=1, code="bench1", url="https://example.com/landing"))
    # The lifespan (servers) is skipped: only the state the cached path reads is set.
    tracer = tracing.tracer("bench")
    click_tracing = ClickTracing(tracer, 16) if tracer is not None else None
    clicks = ClickMaker(TrustedProxies([]), "cf-ipcountry", anonymize=True, tracing=click_tracing)
    lookup = LinkLookup(cache, None, None, 60)  # type: ignore[arg-type]
    keep_core(app, RedirectCore(lookup, None, _NoPublisher(), clicks, tracing.sampling))  # type: ignore[arg-type]
    # The Litestar door alone (the ASGI door in front would answer this cached link): what tracing costs there.
    app.asgi_handler = app.asgi_handler.app
    return app


async def _run(app: Any, calls: int) -> float:
    """CPU microseconds per request, over `calls` sequential requests."""
    started = time.process_time()
    for _ in range(calls):
        await app(_scope(), _receive, _send)
    return (time.process_time() - started) / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    modes = {"off": None, "ratio 0": 0.0, "ratio 0.01": 0.01, "ratio 1": 1.0, "ratio 0, no gate": 0.0}
    tracings = {name: _tracing(ratio, gate="no gate" not in name) for name, ratio in modes.items()}
    apps = {name: _app(tracing) for name, tracing in tracings.items()}
    for app in apps.values():  # warm up routing caches
        await _run(app, 1000)
    times: dict[str, list[float]] = {name: [] for name in modes}
    names = list(modes)
    for i in range(rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            times[name].append(await _run(apps[name], calls))
    base = statistics.median(times["off"])
    print(f"{rounds} rounds of {calls} requests per mode, CPU µs per request (median):")
    for name in names:
        diffs = [t - o for t, o in zip(times[name], times["off"], strict=True)]
        cost = statistics.median(diffs)
        print(f"  {name:<16} {statistics.median(times[name]):7.2f}   {cost:+7.2f} vs off ({cost / base:+.0%})")
    for tracing in tracings.values():
        if tracing.provider is not None:
            tracing.provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="requests per mode per round")
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
