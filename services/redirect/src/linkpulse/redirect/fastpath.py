"""The hot path as raw ASGI: a cached, live link answered before Litestar's handler pipeline.

Litestar's pipeline (routing, parameter parsing, a Request and a Response object) costs more than the
redirect itself: measured here it allows about 10-14k requests/s on 2 cores, a raw ASGI answer about
twice that (docs/performance.md). So the one request that matters for speed, a GET or HEAD of a code
the process cache holds, live and without a click limit, is answered here; everything else (a miss,
a 404 or 410, a link with a click limit, the operational routes, any other method, any traced
request) goes on to Litestar unchanged, so the rules stay in one place (`routes.py`) and this module
only short-circuits their most common outcome. Both build the Location and the click the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from linkpulse.links import status_of
from linkpulse.redirect.routes import CACHE_CONTROL, click_event, location_of
from linkpulse.validation import CODE_PATTERN

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["FastRedirect", "install"]

_CACHE_CONTROL = CACHE_CONTROL.encode()
_BODY = {"type": "http.response.body", "body": b"", "more_body": False}
ROUTE = "/{code}"
"""The route template the fast answers are counted under, as Litestar's router would name them."""


class FastRedirect:
    """Raw ASGI in front of Litestar's handler: answers cached live redirects, passes everything else on."""

    __slots__ = ("app", "litestar", "reserved")

    def __init__(self, app: ASGIApp, litestar: Litestar, reserved: Iterable[str]) -> None:
        self.app = app
        self.litestar = litestar
        self.reserved = frozenset(reserved)
        """Single-segment paths of other routes (`healthz`, `metrics`, ...): valid codes, never short links."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        state = self.litestar.state
        code = scope["path"][1:]
        # Traced requests take the full pipeline, which makes their spans (tracing is off by default).
        link = None
        if state.click_tracing is None and code not in self.reserved and CODE_PATTERN.fullmatch(code):
            link = state.lookup.cached(code)
        now_ms = time.time_ns() // 1_000_000
        if link is None or link.max_clicks is not None or status_of(link, now_ms) == "gone":
            await self.app(scope, receive, send)
            return
        location = location_of(link, scope["query_string"])
        if scope["method"] == "GET":
            # reversed: the first of repeated headers wins, as with Litestar's `headers.get`.
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(scope["headers"])}
            client = scope.get("client")
            state.publisher.submit(click_event(state, code, link.id, now_ms, client[0] if client else "", headers.get))
        # The request metrics (which wrap this) label the answer by the route it stands for.
        scope["path_template"] = ROUTE
        await send(
            {
                "type": "http.response.start",
                "status": link.redirect_type,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"cache-control", _CACHE_CONTROL),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send(_BODY)


def install(app: Litestar) -> None:
    """Put the fast path in front of `app`'s ASGI handler (at startup, once the handler exists; idempotent).

    Call it before the request metrics wrap the handler, so they count fast answers too.
    """
    if isinstance(app.asgi_handler, FastRedirect):
        return
    reserved = {route.path.strip("/") for route in app.routes if route.path.count("/") == 1 and "{" not in route.path}
    app.asgi_handler = FastRedirect(app.asgi_handler, app, reserved)
