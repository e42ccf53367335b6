"""The hot path: `GET|HEAD /{code}` answers from the lookup chain and queues the click, never awaiting it."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, route
from litestar.datastructures import State
from litestar.params import FromPath

from linkpulse.bots import is_bot
from linkpulse.links import status_of
from linkpulse.redirect.location import location_of
from linkpulse.redirect.lookup import LookupUnavailable
from linkpulse.validation import CODE_PATTERN

__all__ = ["CACHE_CONTROL", "redirect"]

CACHE_CONTROL = "private, max-age=90"


def _plain(status: int, detail: str) -> Response[dict[str, Any]]:
    return Response({"status": status, "detail": detail}, status_code=status)


@route("/{code:str}", http_method=["GET", "HEAD"], include_in_schema=False)
async def redirect(code: FromPath[str], request: Request[Any, Any, State]) -> Response[Any]:
    """Redirect to the link's target; a GET also records one click, a HEAD of a click-limited link gets no Location."""
    state = request.app.state
    if not CODE_PATTERN.fullmatch(code):
        return _plain(404, "no such link")
    try:
        link = await state.lookup.get(code)
    except LookupUnavailable:
        return _plain(503, "link store unavailable, retry shortly")
    if link is None:
        return _plain(404, "no such link")
    now_ms = time.time_ns() // 1_000_000
    used = await state.budget.used(link.id) if link.max_clicks is not None else None
    if status_of(link, now_ms, used) == "gone":
        return _plain(410, "link is no longer active")

    if request.method == "GET":
        peer = request.client.host if request.client else ""
        click = state.clicks.make(code, link.id, now_ms, peer, request.headers.get)
        # A limit counts human clicks (ingest stores bots' apart), so a link preview cannot use it up.
        if used is not None and not is_bot(click.ua):
            state.budget.record(link.id)
        state.publisher.submit(click)
    elif used is not None:
        # A HEAD is no click, so it must not show a click-limited target: a one-time link would otherwise
        # show it to any number of HEADs and still redirect its one GET. It gets the status a GET would get
        # now (a link checker still sees a live redirect, or 410), without the target, and no cache keeps it.
        return Response(content=b"", status_code=link.redirect_type, headers={"cache-control": "no-store"})
    location = location_of(link, request.scope["query_string"])
    # b"", not None: Litestar would serialise None as a JSON "null" body.
    return Response(
        content=b"",
        status_code=link.redirect_type,
        headers={"location": location, "cache-control": CACHE_CONTROL},
    )
