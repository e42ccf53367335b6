"""The hot path: `GET|HEAD /{code}` answers from the lookup chain and queues the click, never awaiting it."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, route
from litestar.datastructures import State
from litestar.params import FromPath

from linkpulse.events import ClickEvent
from linkpulse.ids import new_event_id
from linkpulse.links import status_of
from linkpulse.redirect.lookup import LookupUnavailable
from linkpulse.redirect.visitor import anonymize_ip, first_language
from linkpulse.validation import CODE_PATTERN

__all__ = ["redirect"]

_CACHE_CONTROL = "private, max-age=90"
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

    location = link.url
    query = request.scope["query_string"]
    if link.forward_query and query:
        location = f"{location}{'&' if '?' in location else '?'}{query.decode('latin-1')}"

    if request.method == "GET":
        if used is not None:
            state.budget.record(link.id)
        headers = request.headers
        peer = request.client.host if request.client else ""
        proxies = state.proxies
        ip = proxies.client_ip(peer, headers.get("x-forwarded-for"))
        country = headers.get(state.country_header, "") if proxies.trusts(peer) else ""
        event_id = new_event_id()
        tracing = state.click_tracing
        state.publisher.submit(
            ClickEvent(
                id=event_id,
                code=code,
                link_id=link.id,
                ts=now_ms,
                ip=anonymize_ip(ip) if state.anonymize_ip else ip,
                ua=headers.get("user-agent", "")[:512],
                referrer=headers.get("referer", "")[:1024],
                lang=first_language(headers.get("accept-language", "")),
                country=country[:2].upper(),
                traceparent=tracing.click(code, event_id) if tracing is not None else "",
            )
        )
    if not location.isascii():
        # A header is bytes: a path like /straße or /日本 goes out as its UTF-8 percent-encoding, as
        # browsers send it, not as latin-1 bytes (or a failure to encode them).
        location = quote(location, safe=_URI_SAFE)
    return Response(
        content=None,
        status_code=link.redirect_type,
        headers={"location": location, "cache-control": _CACHE_CONTROL},
    )
