"""With sampling off, the redirect path makes no span and no traceparent: not even a non-recording one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from tests.conftest import MakeLink
from tests.integration.tracing.conftest import RunApp, traced

from linkpulse.events import decode_click_batch
from linkpulse.redirect.asgi_door import AsgiDoor
from linkpulse.sampling import LinkedRootSampler
from linkpulse.telemetry import Tracing

BURST = 50


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts every span object (recording or not), sampler question and traceparent made in this process."""
    made: Counter[str] = Counter()

    def counting(cls: type, name: str, what: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            made[what] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counting(sdk_trace.Span, "__init__", "spans")
    counting(trace.NonRecordingSpan, "__init__", "spans")
    counting(LinkedRootSampler, "should_sample", "sampler questions")
    counting(TraceContextTextMapPropagator, "inject", "traceparents")
    return made


class ClickWatch:
    """A core NATS subscription to `clicks.*`, started before the requests: every published envelope arrives."""

    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, str], list[str]]] = []
        self._arrived = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        self.messages.append((dict(msg.headers or {}), [e.traceparent for e in decode_click_batch(msg.data).events]))
        self._arrived.set()

    async def until(self, clicks: int) -> list[tuple[dict[str, str], list[str]]]:
        """The messages seen once they hold `clicks` events (headers, and each event's traceparent)."""
        async with asyncio.timeout(15):
            while sum(len(events) for _, events in self.messages) < clicks:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages


@pytest.fixture
async def clicks(nats_url: str) -> AsyncIterator[ClickWatch]:
    """Watches what the publisher sends to CLICKS."""
    nc = await nats.connect(nats_url)
    watch = ClickWatch()
    await nc.subscribe("clicks.*", cb=watch.on_msg)
    await nc.flush()
    yield watch
    await nc.close()


@pytest.mark.parametrize("ratio", [None, 0.0], ids=["tracing off", "parent-based ratio 0"])
async def test_a_burst_of_redirects_with_sampling_off_makes_no_span(
    ratio: float | None, made: Counter[str], run_redirect: RunApp, make_link: MakeLink, clicks: ClickWatch
) -> None:
    await make_link("quiet1")
    tracing, log = traced(ratio) if ratio is not None else (Tracing(), None)
    async with run_redirect(tracing) as client:
        # 1. A burst: the first request misses the process cache (Redis, then Postgres), the rest hit it.
        for _ in range(BURST):
            assert (await client.get("/quiet1", follow_redirects=False)).status_code == 302
        messages = await clicks.until(BURST)
    # 2. Not one span object was made (the middleware was bypassed, the client instrumentation suppressed),
    #    no sampler was asked, and no traceparent string was formatted.
    assert made == Counter()
    if log is not None:
        assert log.started == 0 and not log.spans
    # 3. So nothing travels: no traceparent in any event, nor in any message header.
    assert all(tp == "" for _, events in messages for tp in events)
    assert all("traceparent" not in headers for headers, _ in messages)


async def test_the_same_burst_with_sampling_on_does_make_spans(
    made: Counter[str], run_redirect: RunApp, make_link: MakeLink, clicks: ClickWatch
) -> None:
    # The counterpart that shows the counters above can see spans at all.
    await make_link("loud1")
    tracing, log = traced(1.0)
    async with run_redirect(tracing) as client:
        for _ in range(3):
            assert (await client.get("/loud1", follow_redirects=False)).status_code == 302
        messages = await clicks.until(3)
    assert made["spans"] >= 6 and made["traceparents"] >= 3
    assert log.started >= 6
    assert all(tp.startswith("00-") for _, events in messages for tp in events)
    assert any("traceparent" in headers for headers, _ in messages)


SAMPLED_PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@pytest.mark.parametrize(
    ("ratio", "headers", "past_fast_path"),
    [(0.0, {}, ["/fast1"]), (1.0, {}, ["/fast1"] * 5), (0.0, SAMPLED_PARENT, ["/fast1"] * 5)],
    ids=["ratio 0: only the first miss", "ratio 1: every request", "ratio 0, sampled caller: every request"],
)
async def test_the_fast_path_answers_every_request_sampling_leaves_untraced(
    ratio: float, headers: dict[str, str], past_fast_path: list[str], run_redirect: RunApp, make_link: MakeLink
) -> None:
    await make_link("fast1")
    tracing, log = traced(ratio)
    async with run_redirect(tracing) as client:
        # What gets past the fast path (into Litestar's route, where the tracing gate sits) is counted.
        fast = client.app.asgi_handler.app
        assert isinstance(fast, AsgiDoor)
        behind, reached = fast.app, []

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            reached.append(scope["path"])
            await behind(scope, receive, send)

        fast.app = counting
        for _ in range(5):
            assert (await client.get("/fast1", headers=headers, follow_redirects=False)).status_code == 302
    # Tracing on, yet a request not drawn for tracing is answered before Litestar, as with tracing off;
    # one drawn (by the ratio, or by its caller's sampled traceparent) takes the route and gets its span.
    assert reached == past_fast_path
    server_spans = [s for s in log.spans if s.name == "GET /{code}"]
    assert len(server_spans) == (0 if ratio == 0.0 and not headers else 5)
