"""The ASGI door: raw ASGI in front of Litestar's handler, for hot requests the inline door has not seen.

It takes a GET or HEAD that reaches the app unmarked: under any ASGI server other than uvicorn with
`inline_door.RedirectProtocol`, and under that one the requests the inline door hands on without looking
(pipelined behind another, a percent-encoded path). It answers a hot one (`RedirectCore.answer`) as raw
ASGI messages, without Litestar's pipeline (routing, parameter parsing, a Request and a Response: measured
here about twice the cost of the answer itself, docs/performance.md); anything else goes on to Litestar
with what the cache held under FOUND_KEY. A request the inline door already looked at (marked with
FOUND_KEY) or drawn for tracing goes on untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from linkpulse.redirect.core import FOUND_KEY, ROUTE, core_of
from linkpulse.redirect.decision import Redirect
from linkpulse.web.server_spans import SAMPLING_KEY

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["AsgiDoor", "install"]

_BODY = {"type": "http.response.body", "body": b"", "more_body": False}


class AsgiDoor:
    """Answers hot redirects as raw ASGI; passes everything else on to `app` (Litestar's handler)."""

    __slots__ = ("app", "litestar")

    def __init__(self, app: ASGIApp, litestar: Litestar) -> None:
        self.app = app
        self.litestar = litestar
        """The app whose core (`core_of`) answers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        core = core_of(self.litestar)
        if (
            core is None
            or scope["type"] != "http"
            or (method != "GET" and method != "HEAD")
            or FOUND_KEY in scope  # the inline door looked and declined: not hot
        ):
            await self.app(scope, receive, send)
            return
        if SAMPLING_KEY not in scope:  # not drawn yet by the inline door
            scope[SAMPLING_KEY] = core.sampling(scope["headers"])  # type: ignore[literal-required]
        if scope[SAMPLING_KEY] is not None:  # type: ignore[literal-required]
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        answer = core.answer(method == "GET", scope["path"], scope["query_string"], client[0] if client else "",
                             scope["headers"])  # fmt: skip
        if answer.__class__ is not Redirect:
            scope[FOUND_KEY] = answer  # type: ignore[literal-required]
            await self.app(scope, receive, send)
            return
        # The request metrics (which wrap this) label the answer by the route it stands for.
        scope["path_template"] = ROUTE
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,  # type: ignore[attr-defined]
                "headers": [
                    (b"location", answer.location.encode("latin-1")),  # type: ignore[attr-defined]
                    (b"cache-control", answer.cache_control.encode("latin-1")),  # type: ignore[attr-defined]
                    (b"content-length", b"0"),
                ],
            }
        )
        await send(_BODY)


def install(app: Litestar) -> None:
    """Put the ASGI door in front of `app`'s handler; `create_app` calls it once the app is built.

    Litestar builds its handler in its constructor, so the door is in place before any startup hook, and
    the request metrics that `ServicePlugin` wraps around the handler at startup count its answers too.
    """
    app.asgi_handler = AsgiDoor(app.asgi_handler, app)
