"""The Location of a redirect: the one place that makes it, header-safe, for every door."""

from __future__ import annotations

from urllib.parse import quote, unquote_plus

from linkpulse.links import LinkRecord

__all__ = ["location_of", "with_query"]

# Printable ASCII goes out as stored (`%0d%0a` stays three characters each, never a line break).
_URI_SAFE = "".join(map(chr, range(0x21, 0x7F)))


def location_of(link: LinkRecord, query: bytes) -> str:
    """The Location of a redirect: the target, with the request's query string when the link forwards it.

    What it returns holds only bytes 0x21-0x7E, whatever the record or the request hold: anything else
    (a control byte, a space, DEL, non-ASCII) goes out percent-encoded, so no door can write a line break
    or a raw byte into the header. A path like /straße or /日本 goes out as its UTF-8 percent-encoding, as
    browsers send it; a query byte that is not UTF-8 as itself (`%FF`).

    It runs for every hot redirect, so the common case (nothing to encode) costs three C-level scans.
    """
    location = link.url
    if query and link.forward_query:
        location = with_query(location, query.decode("utf-8", "surrogateescape"))
    # isprintable() is False for every control character (C0, DEL, C1); with isascii() that leaves 0x20-0x7E.
    if location.isascii() and location.isprintable() and " " not in location:
        return location
    return quote(location, safe=_URI_SAFE, errors="surrogateescape")


def with_query(target: str, query: str) -> str:
    """`target` with a request's query string forwarded into it: `/a?x=1#f` + `u=2` → `/a?x=1&u=2#f`.

    The fragment stays last. A key the target already has is not forwarded: the target's value wins, so
    a visitor cannot override or repeat what the link's owner set (its `utm_source`, say). Keys are
    compared percent-decoded (`a%5B%5D` is `a[]`); the request's other pairs keep their order, and a `#`
    in them stays data (`%23`), never a second fragment.

    Args:
        target: the link's target URL.
        query: the request's raw query string, without the `?`.
    """
    base, hash_mark, fragment = target.partition("#")
    own = base.partition("?")[2]
    taken = {_key(pair) for pair in own.split("&") if pair} if own else set()
    pairs = [pair for pair in query.replace("#", "%23").split("&") if pair and _key(pair) not in taken]
    if not pairs:
        return target
    if "?" not in base:
        joiner = "?"
    elif base.endswith(("?", "&")):
        joiner = ""
    else:
        joiner = "&"
    return f"{base}{joiner}{'&'.join(pairs)}{hash_mark}{fragment}"


def _key(pair: str) -> str:
    return unquote_plus(pair.partition("=")[0])
