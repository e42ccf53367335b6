"""Micro-benchmark: the redirect hot path in process, with and without the request-metrics middleware.

Not a test (nothing asserts a time): run it by hand and compare the medians.

    .venv/bin/python tests/bench/request_metrics.py [--calls 2000] [--rounds 41]

Each round drives `calls` GETs of a cached link through the app's ASGI handler (routing, the handler,
the response) with a no-op publisher, once without and once with the middleware, so what differs is the
middleware. Time is this process's CPU time (other processes on a shared machine do not count), and
rounds pair the two handlers so that drift hits both alike; the figure is the median of the per-round
differences.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from linkpulse.links import LinkRecord
from linkpulse.redirect.app import create_app
from linkpulse.redirect.cache import LinkCache
from linkpulse.redirect.clicks import ClickMaker
from linkpulse.redirect.core import RedirectCore, keep_core
from linkpulse.redirect.lookup import LinkLookup
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.web.proxies import TrustedProxies
from linkpulse.web.request_metrics import RequestMetrics, RequestMetricsMiddleware

_HEADERS = [(b"host", b"sho.rt"), (b"user-agent", b"bench/1.0"), (b"accept-language", b"en")]


class _NoPublisher:
    def submit(self, event: object) -> None:
        pass


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    pass


def _scope(app: Any) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/bench1", "raw_path": b"/bench1", "root_path": "", "query_string": b"", "headers": _HEADERS,
        "client": ("10.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {}, "app": app,
        "litestar_app": app,
    }  # fmt: skip


async def _run(app: Any, handler: Any, calls: int) -> float:
    """CPU microseconds per request, over `calls` sequential requests."""
    started = time.process_time()
    for _ in range(calls):
        await handler(_scope(app), _receive, _send)
    return (time.process_time() - started) / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    app = create_app(RedirectSettings.from_env({}))
    cache = LinkCache(1000, 60.0, 1000, 5.0)
    cache.put("bench1", LinkRecord(id=1, code="bench1", url="https://example.com/landing"))
    # The lifespan (servers) is skipped: only the state the cached path reads is set.
    clicks = ClickMaker(TrustedProxies([]), "cf-ipcountry", anonymize=True, tracing=None)
    lookup = LinkLookup(cache, None, None, 60)  # type: ignore[arg-type]
    keep_core(app, RedirectCore(lookup, None, _NoPublisher(), clicks, None))  # type: ignore[arg-type]
    bare = app.asgi_handler.app  # the Litestar door: behind the ASGI door, which would answer this cached link
    measured = RequestMetricsMiddleware(bare, RequestMetrics())  # a private collector: the process's stays clean
    for handler in (bare, measured):  # warm up routing caches and the series dict
        await _run(app, handler, 2000)
    without, with_ = [], []
    for i in range(rounds):
        # Alternate which goes first, so neither always runs on a warmer cache.
        first, second = (bare, measured) if i % 2 == 0 else (measured, bare)
        a, b = await _run(app, first, calls), await _run(app, second, calls)
        without.append(a if first is bare else b)
        with_.append(b if first is bare else a)
    diffs = [y - x for x, y in zip(without, with_, strict=True)]
    a, b, d = statistics.median(without), statistics.median(with_), statistics.median(diffs)
    q1, _, q3 = statistics.quantiles(diffs, n=4)
    print(f"{rounds} rounds of {calls} requests, CPU µs per request (median):")
    print(f"  without middleware {a:.2f}")
    print(f"  with middleware    {b:.2f}")
    print(f"  difference         {d:+.2f} (interquartile {q1:+.2f} .. {q3:+.2f}), {d / a:+.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="requests per handler per round")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
