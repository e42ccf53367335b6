"""The inline protocol under a real uvicorn server: hot redirects answered from the parser, byte for byte right.

The redirect service runs uvicorn with `RedirectProtocol`; these tests do the same on a free port and
talk raw HTTP/1.x over sockets, so keep-alive, HTTP/1.0, pipelining and the bytes of each answer are
what a client really gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from litestar import Litestar
from tests.conftest import MakeLink, serving
from tests.integration.redirect.test_fast_path import requests_counted
from tests.integration.redirect.test_redirect import published_clicks

from linkpulse.localstack.process import free_port
from linkpulse.redirect.app import create_app
from linkpulse.redirect.asgi_door import AsgiDoor
from linkpulse.redirect.inline_door import RedirectProtocol
from linkpulse.redirect.settings import RedirectSettings
from linkpulse.web.request_metrics import RequestMetricsMiddleware

VISITOR = (
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0\r\n"
    b"Accept-Language: de-DE,de;q=0.9\r\n"
    b"Referer: https://news.example/a\r\n"
    b"X-Forwarded-For: 203.0.113.77\r\n"
    b"CF-IPCountry: de\r\n"
)


@dataclass
class Served:
    """A running server: its port, and the paths that reached Litestar (past both fast paths)."""

    port: int
    app: Litestar
    reached_litestar: list[str]
    scopes: list[dict[str, Any]]
    """The scopes of the requests that reached Litestar, as it got them."""

    async def exchange(self, raw: bytes, answers: int = 1) -> list[tuple[bytes, dict[str, str]]]:
        """Send `raw` on one new connection; read `answers` responses (status line; headers, the body as "body")."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            await writer.drain()
            out = []
            for _ in range(answers):
                out.append(await _read_response(reader))
            return out
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head[:-4].split(b"\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    headers["body"] = (await reader.readexactly(int(headers.get("content-length", "0")))).decode()
    return status, headers


@pytest.fixture
async def served(redirect_env: dict[str, str]) -> AsyncIterator[Served]:
    """The redirect app under uvicorn with RedirectProtocol, as `python -m linkpulse.redirect` runs it."""
    async with _serving(redirect_env) as running:
        yield running


@contextlib.asynccontextmanager
async def _serving(redirect_env: dict[str, str], **config: Any) -> AsyncIterator[Served]:
    """`served`, with uvicorn settings changed by `config`."""
    app = create_app(RedirectSettings.from_env(redirect_env))
    reached: list[str] = []
    scopes: list[dict[str, Any]] = []

    async def count_startup(app: Litestar) -> None:
        # Runs after the fast path and the metrics are installed: count what gets past both.
        metrics = app.asgi_handler
        assert isinstance(metrics, RequestMetricsMiddleware) and isinstance(metrics.app, AsgiDoor)
        behind = metrics.app.app

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                reached.append(scope["path"])
                scopes.append(dict(scope))
            await behind(scope, receive, send)

        metrics.app.app = counting

    app.on_startup.append(count_startup)
    port = free_port()
    # proxy_headers off as in linkpulse.web.server: forwarded headers are the app's to believe or not.
    uvicorn_config = uvicorn.Config(app, host="127.0.0.1", port=port, http=RedirectProtocol, lifespan="on",
                                    log_level="warning", access_log=False, server_header=False,
                                    proxy_headers=False, **config)  # fmt: skip
    async with serving(uvicorn_config):
        yield Served(port, app, reached, scopes)


async def _clicks(nats_url: str, count: int) -> list[Any]:
    """The click events in CLICKS once there are `count` (the publisher lingers a millisecond)."""
    deadline = time.monotonic() + 10
    while True:
        clicks = [event for _, event in await published_clicks(nats_url)]
        if len(clicks) >= count or time.monotonic() > deadline:
            return clicks
        await asyncio.sleep(0.05)  # polling the stream with a deadline: nothing announces a publish


async def test_a_cached_link_is_answered_inline_with_the_routes_status_headers_and_click(
    served: Served, make_link: MakeLink, nats_url: str
) -> None:
    await make_link("pr1", "https://example.com/päth?x=1", redirect_type=307, forward_query=True)
    before = requests_counted("/{code}", "GET", 307)
    get = b"GET /pr1?utm=a HTTP/1.1\r\nHost: sho.rt\r\n" + VISITOR + b"\r\n"
    # 1. The first GET misses the process cache: Litestar answers it and caches the link.
    [(status1, first)] = await served.exchange(get)
    assert served.reached_litestar == ["/pr1"]
    # 2. The second, on a connection of its own, is answered inline: Litestar never sees it.
    [(status2, second)] = await served.exchange(get)
    assert served.reached_litestar == ["/pr1"]
    assert status1 == status2 == b"HTTP/1.1 307 Temporary Redirect"
    assert second["location"] == first["location"] == "https://example.com/p%C3%A4th?x=1&utm=a"
    assert second["cache-control"] == first["cache-control"] == "private, max-age=90"
    assert second["content-length"] == first["content-length"] == "0" and second["body"] == first["body"] == ""
    assert "date" in second and "server" not in second
    # 3. HEAD redirects inline too and records no click.
    [(head_status, _)] = await served.exchange(b"HEAD /pr1 HTTP/1.1\r\nHost: sho.rt\r\n\r\n")
    assert head_status == status2 and served.reached_litestar == ["/pr1"]
    # Both GETs counted under the route template, whichever path answered.
    assert requests_counted("/{code}", "GET", 307) == before + 2

    clicks = await _clicks(nats_url, 2)
    assert len(clicks) == 2 and clicks[0].id != clicks[1].id
    fields = [{f: getattr(c, f) for f in c.__struct_fields__ if f not in {"id", "ts"}} for c in clicks]
    assert fields[0] == fields[1]
    # The peer (127.0.0.1) is a trusted proxy here: both paths believe its forwarded IP and country.
    assert fields[1]["ip"] == "203.0.113.0" and fields[1]["country"] == "DE" and fields[1]["lang"] == "de-DE"
    assert fields[1]["ua"].startswith("Mozilla/5.0") and fields[1]["referrer"] == "https://news.example/a"


async def test_keep_alive_pipelining_and_http_1_0_are_answered_in_order(
    served: Served, make_link: MakeLink, nats_url: str
) -> None:
    await make_link("pr2", "https://example.com/two")
    await make_link("pr3", "https://example.com/three", redirect_type=301)
    await served.exchange(b"GET /pr2 HTTP/1.1\r\nHost: a\r\n\r\n")  # caches pr2
    # 1. Pipelined in one write: a miss (Litestar, a task) then a hit (inline) then a 404. The hit must
    #    not overtake the miss: while a request is in progress the inline path stands aside.
    raw = b"".join(f"GET /{c} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for c in ("pr3", "pr2", "nope"))
    answers = await served.exchange(raw, answers=3)
    assert [a[0] for a in answers] == [b"HTTP/1.1 301 Moved Permanently", b"HTTP/1.1 302 Found",
                                       b"HTTP/1.1 404 Not Found"]  # fmt: skip
    assert [a[1].get("location") for a in answers] == ["https://example.com/three", "https://example.com/two", None]
    # 2. Keep-alive: several hot requests one after another on one connection, each answered.
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    for code in ("pr2", "pr3", "pr2"):
        writer.write(f"GET /{code} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        status, headers = await _read_response(reader)
        assert status.startswith(b"HTTP/1.1 30") and "connection" not in headers
    # A declined request after inline answers on the connection gets uvicorn's whole scope, built for it.
    writer.write(b"GET /nope2?q=1 HTTP/1.1\r\nHost: a\r\nX-Probe: yes\r\n\r\n")
    status, _ = await _read_response(reader)
    scope = served.scopes[-1]
    assert status == b"HTTP/1.1 404 Not Found" and (scope["method"], scope["path"], scope["query_string"]) == (
        "GET", "/nope2", b"q=1")  # fmt: skip
    assert (b"x-probe", b"yes") in scope["headers"] and scope["client"][0] == "127.0.0.1"
    assert {"asgi", "http_version", "server", "scheme", "root_path", "state", "raw_path"} <= scope.keys()
    # 3. HTTP/1.0 without keep-alive: answered inline, then the server closes the connection.
    writer.write(b"GET /pr2 HTTP/1.0\r\n\r\n")
    status, headers = await _read_response(reader)
    assert status == b"HTTP/1.1 302 Found" and headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    # pr3 and pr2 were cached by the time of the keep-alive run: only the first pr3 and the 404 reached Litestar.
    assert served.reached_litestar == ["/pr2", "/pr3", "/nope", "/nope2"]
    # Every GET that redirected published one click: 1 + 2 pipelined + 3 kept alive + 1 HTTP/1.0.
    assert len(await _clicks(nats_url, 7)) == 7


async def test_what_the_inline_path_declines_reaches_litestar(served: Served, make_link: MakeLink) -> None:
    await make_link("prlim", max_clicks=100)
    await make_link("proff", active=False)
    await make_link("AB", "https://example.com/ab")
    requests = [
        (b"GET /prlim HTTP/1.1\r\nHost: a\r\n\r\n", b"302"),
        (b"GET /proff HTTP/1.1\r\nHost: a\r\n\r\n", b"410"),
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", b"200"),
        (b"POST /AB HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"GET /AB HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", b"302"),
    ]
    for _ in range(2):
        for raw, status in requests:  # each on a connection of its own: nothing in progress before it
            [(answer, _)] = await served.exchange(raw)
            assert answer.split(b" ")[1] == status, raw
    # A click limit is counted by the route's budget, a gone link and a health check are Litestar's, a POST
    # is no redirect, an Expect: 100-continue is uvicorn's to answer: all went past the inline path, and
    # only the ASGI fast path (any server's) caught the second /AB.
    assert served.reached_litestar == ["/prlim", "/proff", "/healthz", "/AB", "/AB",
                                       "/prlim", "/proff", "/healthz", "/AB"]  # fmt: skip
    # A percent-encoded path is decoded by uvicorn and answered (here by the ASGI fast path).
    [(status, headers)] = await served.exchange(b"GET /%41B HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == b"HTTP/1.1 302 Found" and headers["location"] == "https://example.com/ab"


async def test_keep_alive_is_counted_from_the_last_inline_answer_and_spares_a_request_in_progress(
    redirect_env: dict[str, str], make_link: MakeLink
) -> None:
    # One timer per idle spell, checked when it fires (uvicorn re-arms one per response): what a client
    # sees must be uvicorn's keep-alive all the same. The sleeps are the idle time under test.
    keep_alive = 1.0
    get = b"GET /ka1 HTTP/1.1\r\nHost: a\r\n\r\n"
    async with _serving(redirect_env, timeout_keep_alive=keep_alive) as served:
        await make_link("ka1")
        await served.exchange(get)  # Litestar answers the miss and caches the link
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        loop = asyncio.get_running_loop()
        try:
            # 1. Answers 0.6 s apart: 1.2 s after the first, the connection is still open.
            for pause in (0.0, 0.6, 0.6):
                await asyncio.sleep(pause)
                writer.write(get)
                status, _ = await _read_response(reader)
                assert status == b"HTTP/1.1 302 Found"
            # 2. A request begun and left unfinished past the keep-alive is not cut off.
            writer.write(get[:20])
            await asyncio.sleep(keep_alive * 1.5)
            writer.write(get[20:])
            status, _ = await _read_response(reader)
            assert status == b"HTTP/1.1 302 Found"
            last_answer = loop.time()
            # 3. Idle, the connection is closed once the keep-alive has passed since the last answer.
            assert await asyncio.wait_for(reader.read(), keep_alive * 10) == b""
            assert loop.time() - last_answer >= keep_alive * 0.9
        finally:
            writer.close()
        assert served.reached_litestar == ["/ka1"]  # every answer on the kept-alive connection was inline
