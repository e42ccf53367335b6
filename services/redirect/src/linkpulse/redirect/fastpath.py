"""The hot path: a cached, live link answered before Litestar's handler pipeline.

Litestar's pipeline (routing, parameter parsing, a Request and a Response object) costs more than the
redirect itself: measured here it allows about 10-14k requests/s on 2 cores, a raw ASGI answer about
twice that (docs/performance.md). So the one request that matters for speed, a GET or HEAD of a code
the process cache holds, live and without a click limit, is answered by `HotRedirects`; everything
else (a miss, a 404 or 410, a link with a click limit, the operational routes, any other method, a
request drawn for tracing) goes on to Litestar unchanged, so the rules stay in one place (`routes.py`) and this
module only short-circuits their most common outcome. Both build the Location and the click the same way.

Two front doors use it: `FastRedirect`, raw ASGI in front of Litestar (any ASGI server), and
`linkpulse.redirect.protocol`, which asks it from inside uvicorn's HTTP parser callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from linkpulse.links import status_of
from linkpulse.redirect.clicks import HeaderGetter
from linkpulse.redirect.location import location_of
from linkpulse.redirect.routes import CACHE_CONTROL
from linkpulse.validation import CODE_PATTERN
from linkpulse.web.server_spans import SAMPLING_KEY, sampling_decision

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.datastructures import State
    from litestar.types import ASGIApp, Receive, Scope, Send

    from linkpulse.redirect.clicks import ClickMaker
    from linkpulse.redirect.lookup import LinkLookup
    from linkpulse.redirect.publisher import ClickPublisher

__all__ = ["ROUTE", "FastRedirect", "HotRedirects", "RawHeaders", "install"]

_CACHE_CONTROL = CACHE_CONTROL.encode()
_BODY = {"type": "http.response.body", "body": b"", "more_body": False}
_RAW_NAMES: dict[str, bytes] = {}
"""Header names as bytes, encoded once: a click reads the same few on every request."""
ROUTE = "/{code}"
"""The route template the fast answers are counted under, as Litestar's router would name them."""


class RawHeaders:
    """`get(name, default)` over raw headers (lowercase names as bytes, as ASGI and uvicorn hold them).

    Decodes only the few headers a click reads, and only for the requests answered: the first value wins,
    as with Litestar's `headers.get`.
    """

    __slots__ = ("items",)

    def __init__(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self.items = items

    def get(self, name: str, default: str) -> str:
        key = _RAW_NAMES.get(name)
        if key is None:
            key = _RAW_NAMES[name] = name.encode("latin-1")
        for header, value in self.items:
            if header == key:
                return value.decode("latin-1")
        return default


class HotRedirects:
    """Answers a GET or HEAD of a cached, live, unlimited link, queueing its click; declines anything else.

    It holds what it uses (made by the app's lifespan, which runs before `install`) rather than
    Litestar's `State`, whose every attribute read costs about 0.35 µs (see `ClickMaker`).
    """

    __slots__ = ("clicks", "lookup", "publisher", "reserved", "trace_ratio")

    def __init__(self, state: State, reserved: Iterable[str]) -> None:
        self.lookup: LinkLookup = state.lookup
        self.publisher: ClickPublisher = state.publisher
        self.clicks: ClickMaker = state.clicks
        self.trace_ratio: float | None = None if self.clicks.tracing is None else state.trace_ratio
        """The root sampling ratio; None while tracing is off."""
        self.reserved = frozenset(reserved)
        """Single-segment paths of other routes (`healthz`, `metrics`, ...): valid codes, never short links."""

    def sampling(self, headers: Iterable[tuple[bytes, bytes]]) -> bool | None:
        """The request's tracing decision (`sampling_decision`); None, not traced, whenever tracing is off.

        A front door draws it once, before `answer`, and leaves it in the scope under SAMPLING_KEY for the
        tracing gate: a request not drawn (nearly all, at the default ratio) is answered here with no span
        at all, so sampling costs the hot path one `random()`; one drawn takes Litestar's route, which traces it.
        """
        ratio = self.trace_ratio
        return None if ratio is None else sampling_decision(headers, ratio)

    def answer(self, is_get: bool, path: str, query: bytes, peer: str, header: HeaderGetter) -> tuple[int, str] | None:
        """(status, Location) when this request is a hot redirect (its click queued if a GET), else None.

        Only for a request `sampling` did not draw for tracing: its click then carries no traceparent.

        Args:
            is_get: GET (records a click) rather than HEAD; other methods never reach here.
            path: the decoded request path, `/code`.
            query: the raw query string.
            peer: the direct peer's address.
            header: `header(lowercase_name, default)`, the first value of a request header.
        """
        code = path[1:]
        if code in self.reserved or not CODE_PATTERN.fullmatch(code):
            return None
        lookup = self.lookup
        link = lookup.cached(code)
        if link is None or link.max_clicks is not None:
            return None
        now_ms = time.time_ns() // 1_000_000
        if status_of(link, now_ms) == "gone":
            return None
        lookup.count_local_hit()
        if is_get:
            self.publisher.submit(self.clicks.make(code, link.id, now_ms, peer, header))
        return link.redirect_type, location_of(link, query)


class FastRedirect:
    """Raw ASGI in front of Litestar's handler: answers hot redirects, passes everything else on."""

    __slots__ = ("app", "hot")

    def __init__(self, app: ASGIApp, hot: HotRedirects) -> None:
        self.app = app
        self.hot = hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or (method != "GET" and method != "HEAD"):
            await self.app(scope, receive, send)
            return
        if SAMPLING_KEY not in scope:  # not drawn yet by the protocol in front
            scope[SAMPLING_KEY] = self.hot.sampling(scope["headers"])  # type: ignore[literal-required]
        if scope[SAMPLING_KEY] is not None:  # type: ignore[literal-required]
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        answer = self.hot.answer(method == "GET", scope["path"], scope["query_string"],
                                 client[0] if client else "", RawHeaders(scope["headers"]).get)  # fmt: skip
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, location = answer
        # The request metrics (which wrap this) label the answer by the route it stands for.
        scope["path_template"] = ROUTE
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"cache-control", _CACHE_CONTROL),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send(_BODY)


def install(app: Litestar) -> None:
    """Put the fast path in front of `app`'s ASGI handler and on `app.state.hot_redirects` (startup; idempotent).

    Call it after the lifespan has put the lookup, publisher and click maker on the state (Litestar runs
    `on_startup` hooks after the lifespans), and before the request metrics wrap the handler, so they
    count fast answers too.
    """
    if isinstance(app.asgi_handler, FastRedirect):
        return
    reserved = {route.path.strip("/") for route in app.routes if route.path.count("/") == 1 and "{" not in route.path}
    hot = HotRedirects(app.state, reserved)
    app.state.hot_redirects = hot
    app.asgi_handler = FastRedirect(app.asgi_handler, hot)
