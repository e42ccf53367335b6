"""The Litestar door: the `GET|HEAD /{code}` route, for every request to a code the hot doors did not answer.

It takes what needs I/O or a body: a code the process cache does not hold (looked up through the chain,
once: a miss the inline or ASGI door already looked at goes straight past the cache), a click-limited link
(its count read), a 404 or 410 (a `{status, detail}` body), and any request drawn for tracing. It decides
with `decision.decide`, like the hot doors, and queues the click of a GET, never awaiting it.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, route
from litestar.params import FromPath

from linkpulse.bots import is_bot
from linkpulse.redirect.cache import MISS
from linkpulse.redirect.core import FOUND_KEY, NOT_LOOKED, core_of
from linkpulse.redirect.decision import NOT_FOUND, UNAVAILABLE, Redirect, Refusal, code_of, decide
from linkpulse.redirect.lookup import LookupUnavailable

__all__ = ["redirect"]


def _refused(refusal: Refusal) -> Response[Any]:
    return Response({"status": refusal.status, "detail": refusal.detail}, status_code=refusal.status)


@route("/{code:str}", http_method=["GET", "HEAD"], include_in_schema=False)
async def redirect(code: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
    """Redirect to the link's target; a GET also records one click, a HEAD of a click-limited link gets no Location."""
    core = core_of(request.app)
    if core is None:  # the lifespan has not started, or has ended
        return _refused(UNAVAILABLE)
    if code_of(f"/{code}") is None:
        return _refused(NOT_FOUND)
    lookup = core.lookup
    found = request.scope.get(FOUND_KEY, NOT_LOOKED)
    try:
        if found is NOT_LOOKED:
            found = await lookup.get(code)
        elif found is MISS:  # a door in front found nothing in the cache: no second look there
            found = await lookup.fetch(code)
        else:
            lookup.count_local_hit()
    except LookupUnavailable:
        return _refused(UNAVAILABLE)
    limited = found is not None and found.max_clicks is not None  # type: ignore[attr-defined]
    used = await core.budget.used(found.id) if limited else None  # type: ignore[attr-defined]
    now_ms = time.time_ns() // 1_000_000
    is_get = request.method == "GET"
    decision = decide(found, now_ms, request.scope["query_string"], is_get, used)
    if not isinstance(decision, Redirect):
        return _refused(decision or NOT_FOUND)  # never SLOW here: the record and its count are known
    if is_get:
        peer = request.client.host if request.client else ""
        click = core.clicks.make(code, found.id, now_ms, peer, request.headers.get)  # type: ignore[attr-defined]
        # A limit counts human clicks (ingest stores bots' apart), so a link preview cannot use it up.
        if limited and not is_bot(click.ua):
            core.budget.record(found.id)  # type: ignore[attr-defined]
        core.publisher.submit(click)
    headers = {"cache-control": decision.cache_control}
    if decision.location is not None:
        headers["location"] = decision.location
    # b"", not None: Litestar would serialise None as a JSON "null" body.
    return Response(content=b"", status_code=decision.status, headers=headers)
