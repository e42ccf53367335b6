"""The redirect's decision for one request, pure (no I/O, no clock): a 30x, a 404, a 410, or "needs the slow path".

Every door asks `decide`, so each rule is written once: which paths are codes (`code_of`, with the reserved
paths of other routes), when a link is gone (`linkpulse.links.status_of`), what a HEAD of a click-limited
link gets, the Location (`location.py`, its helper) and the Cache-Control of a redirect. A door supplies
what it knows (what the process cache holds, the time, the click count when it has read one) and does the
I/O the answer needs: looking up a code the cache does not hold (`SLOW`), reading a limited link's count,
queueing the click, writing the response.
"""

from __future__ import annotations

import msgspec

from linkpulse.links import LinkRecord, status_of
from linkpulse.redirect.cache import MISS
from linkpulse.redirect.location import location_of
from linkpulse.validation import CODE_PATTERN, RESERVED_CODES

__all__ = [
    "CACHE_CONTROL",
    "GONE",
    "LIMITED_HEAD_CACHE_CONTROL",
    "NOT_FOUND",
    "RESERVED",
    "SLOW",
    "UNAVAILABLE",
    "Decision",
    "Redirect",
    "Refusal",
    "code_of",
    "decide",
]

CACHE_CONTROL = "private, max-age=90"
"""Cache-Control of a redirect: browsers may keep it briefly, shared caches never (a change reaches visitors soon)."""
LIMITED_HEAD_CACHE_CONTROL = "no-store"
"""Cache-Control of a HEAD of a click-limited link: an answer that depends on a count must not be kept."""
RESERVED = RESERVED_CODES
"""Paths the services answer themselves (`/healthz`, `/metrics`, ...): valid codes, never a link's path."""


# Structs without GC tracking: made for every hot redirect, in C, about a quarter of a NamedTuple's cost.
class Redirect(msgspec.Struct, frozen=True, gc=False):
    """A 30x. `location` is None only for a HEAD of a click-limited link (see `decide`)."""

    status: int
    location: str | None
    cache_control: str


class Refusal(msgspec.Struct, frozen=True, gc=False):
    """A 4xx or 5xx, with the reason the `{status, detail}` body gives."""

    status: int
    detail: str


NOT_FOUND = Refusal(404, "no such link")
GONE = Refusal(410, "link is no longer active")
UNAVAILABLE = Refusal(503, "link store unavailable, retry shortly")
"""Not decided here (the lookup could not answer), but worded here with the other refusals."""
SLOW = None
"""What `decide` returns when the answer needs I/O first: the lookup of a code the cache does not hold, or
a limited link's click count."""

Decision = Redirect | Refusal | None


def code_of(path: str) -> str | None:
    """The code a request path (`/code`, decoded) names, or None when no door should look it up.

    None for a path that cannot be a code (404 without a lookup) and for another route's path (RESERVED).
    """
    code = path[1:]
    if code in RESERVED or not CODE_PATTERN.fullmatch(code):
        return None
    return code


def decide(
    found: LinkRecord | object | None, now_ms: int, query: bytes, is_get: bool, used: int | None = None
) -> Decision:
    """The answer to a GET or HEAD of a code, from what is known of its link.

    Args:
        found: the link's record, None for a code known not to exist, or `cache.MISS` (not known yet).
        now_ms: the time of the request, epoch milliseconds.
        query: the request's raw query string (forwarded when the link asks for it).
        is_get: GET rather than HEAD.
        used: clicks a click-limited link has used; None when not read (then such a link is `SLOW`).

    Returns:
        A `Redirect`, `NOT_FOUND`, `GONE`, or `SLOW` when a lookup or a click count must come first.
    """
    if found.__class__ is not LinkRecord:
        return SLOW if found is MISS else NOT_FOUND
    link: LinkRecord = found  # type: ignore[assignment]
    limited = link.max_clicks is not None
    if limited and used is None:
        return SLOW
    if status_of(link, now_ms, used) == "gone":
        return GONE
    if limited and not is_get:
        # A HEAD is no click, so it must not show a click-limited target: a one-time link would otherwise
        # show it to any number of HEADs and still redirect its one GET. It gets the status a GET would get
        # now (a link checker still sees a live redirect, or 410), without the target, and no cache keeps it.
        return Redirect(link.redirect_type, None, LIMITED_HEAD_CACHE_CONTROL)
    return Redirect(link.redirect_type, location_of(link, query), CACHE_CONTROL)
