"""The hot path: `GET|HEAD /{code}` answers from the lookup chain and queues the click, never awaiting it."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, route
from litestar.datastructures import State
from litestar.params import FromPath

from linkpulse.links import LinkRecord, status_of
from linkpulse.redirect.lookup import LookupUnavailable
from linkpulse.validation import CODE_PATTERN

__all__ = ["CACHE_CONTROL", "location_of", "redirect"]

CACHE_CONTROL = "private, max-age=90"
# Printable ASCII goes out as stored (`%0d%0a` stays three characters each, never a line break).
_URI_SAFE = "".join(map(chr, range(0x21, 0x7F)))


def _plain(status: int, detail: str) -> Response[dict[str, Any]]:
    return Response({"status": status, "detail": detail}, status_code=status)


@route("/{code:str}", http_method=["GET", "HEAD"], include_in_schema=False)
async def redirect(code: FromPath[str], request: Request[Any, Any, State]) -> Response[Any]:
    """Redirect to the link's target; a GET also records one click event."""
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

    location = location_of(link, request.scope["query_string"])
    if request.method == "GET":
        if used is not None:
            state.budget.record(link.id)
        peer = request.client.host if request.client else ""
        state.publisher.submit(state.clicks.make(code, link.id, now_ms, peer, request.headers.get))
    # b"", not None: Litestar would serialise None as a JSON "null" body.
    return Response(
        content=b"",
        status_code=link.redirect_type,
        headers={"location": location, "cache-control": CACHE_CONTROL},
    )


def location_of(link: LinkRecord, query: bytes) -> str:
    """The Location of a redirect: the target, the query string appended when the link forwards it."""
    location = link.url
    if link.forward_query and query:
        location = f"{location}{'&' if '?' in location else '?'}{query.decode('latin-1')}"
    if not location.isascii():
        # A header is bytes: a path like /straße or /日本 goes out as its UTF-8 percent-encoding, as
        # browsers send it, not as latin-1 bytes (or a failure to encode them).
        location = quote(location, safe=_URI_SAFE)
    return location
