"""The raw ASGI fast path answers a cached live link exactly as the Litestar route does, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from tests.conftest import MakeLink
from tests.integration.redirect.test_redirect import published_clicks

from linkpulse.redirect.asgi_door import AsgiDoor
from linkpulse.web.request_metrics import REQUEST_METRICS, RequestMetricsMiddleware

VISITOR = {
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "accept-language": "de-DE,de;q=0.9",
    "referer": "https://news.example/a",
    "x-forwarded-for": "203.0.113.77",
    "cf-ipcountry": "de",
}


class CountingApp:
    """What the fast path hands on to (Litestar's handler), counting the requests that reach it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
async def fast(redirect_client: AsyncTestClient[Any]) -> CountingApp:
    """The app's fast path, with what lies behind it counted (installed at startup, under the request metrics)."""
    app = redirect_client.app
    assert isinstance(app.asgi_handler, RequestMetricsMiddleware)
    fast_path = app.asgi_handler.app
    assert isinstance(fast_path, AsgiDoor)
    counting = CountingApp(fast_path.app)
    fast_path.app = counting
    return counting


def requests_counted(route: str, method: str, status: int) -> int:
    """linkpulse_http_requests of one (route, method, status) in this process, now."""
    for family in REQUEST_METRICS.collect():
        if family.name == "linkpulse_http_requests":
            for sample in family.samples:
                if sample.labels == {"route": route, "method": method, "status": str(status)}:
                    return int(sample.value)
    return 0


async def test_a_cached_link_is_answered_by_the_fast_path_as_the_route_answers_it(
    redirect_client: AsyncTestClient[Any], fast: CountingApp, make_link: MakeLink, nats_url: str
) -> None:
    await make_link("fp1", "https://example.com/päth?x=1", redirect_type=307, forward_query=True)
    before = requests_counted("/{code}", "GET", 307)
    # 1. The first GET misses the process cache: Litestar's route answers and caches the link.
    first = await redirect_client.get("/fp1?utm=a", headers=VISITOR, follow_redirects=False)
    assert fast.paths == ["/fp1"]
    # 2. The second is answered before Litestar, with the same status and headers.
    second = await redirect_client.get("/fp1?utm=a", headers=VISITOR, follow_redirects=False)
    assert fast.paths == ["/fp1"]
    assert second.status_code == first.status_code == 307
    assert second.headers["location"] == first.headers["location"] == "https://example.com/p%C3%A4th?x=1&utm=a"
    assert second.headers["cache-control"] == first.headers["cache-control"] == "private, max-age=90"
    assert second.content == b""
    # 3. HEAD redirects too, and records no click.
    head = await redirect_client.head("/fp1", follow_redirects=False)
    assert head.status_code == 307 and fast.paths == ["/fp1"]
    # Each answer counted under the route template, whichever path answered it.
    assert requests_counted("/{code}", "GET", 307) == before + 2

    clicks = [event for _, event in await published_clicks(nats_url)]
    assert len(clicks) == 2 and clicks[0].id != clicks[1].id
    strip = {"id": None, "ts": None}
    fields = [{f: getattr(c, f) for f in c.__struct_fields__ if f not in strip} for c in clicks]
    assert fields[0] == fields[1]
    # (The test client's peer is no IP, so neither path trusts its forwarded headers: ip None, no country.)
    assert fields[1]["ip"] is None and fields[1]["country"] == "" and fields[1]["lang"] == "de-DE"
    assert fields[1]["referrer"] == "https://news.example/a" and fields[1]["ua"] == VISITOR["user-agent"]


async def test_limited_gone_unknown_and_operational_paths_go_through_litestar(
    redirect_client: AsyncTestClient[Any], fast: CountingApp, make_link: MakeLink
) -> None:
    await make_link("fplim", max_clicks=100)
    await make_link("fpoff", active=False)
    for _ in range(2):
        assert (await redirect_client.get("/fplim", follow_redirects=False)).status_code == 302
        assert (await redirect_client.get("/fpoff", follow_redirects=False)).status_code == 410
        assert (await redirect_client.get("/fpnone", follow_redirects=False)).status_code == 404
        assert (await redirect_client.get("/healthz")).status_code == 200
    # A click limit is counted by the route's budget; every one of these took the full pipeline.
    assert fast.paths == ["/fplim", "/fpoff", "/fpnone", "/healthz"] * 2
    assert (await redirect_client.post("/fplim")).status_code == 405
