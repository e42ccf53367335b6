"""Events list answers: one stored click with its enriched fields (`Click`), and a page of them (`ClickPage`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from uuid import UUID

import msgspec

__all__ = ["CLICK_FIELDS", "Click", "ClickPage"]


def _text(description: str) -> msgspec.Meta:
    return msgspec.Meta(description=f'{description} "" when unknown.')


class Click(msgspec.Struct, kw_only=True):
    """One stored click, as ingest enriched it (never its IP address, nor its visitor key)."""

    id: Annotated[UUID, msgspec.Meta(description="The click's event id (UUIDv7), minted at redirect time.")]
    ts: Annotated[datetime, msgspec.Meta(description="When the redirect answered (UTC, millisecond precision).")]
    bot: Annotated[
        bool, msgspec.Meta(description="Classified as a bot or link preview, so counted apart from the humans.")
    ]
    country: Annotated[str, _text("ISO 3166-1 alpha-2: a trusted proxy's country header, else the GeoIP database.")]
    region: Annotated[str, _text("ISO 3166-2 (`DE-BY`), from the GeoIP database.")]
    city: Annotated[str, _text("English name and region (`Munich, DE-BY`), from the GeoIP database.")]
    asn: Annotated[str, _text("Network, `AS<number> <organisation>`, when an ASN database is mounted.")]
    referrer: Annotated[
        str, _text("The Referer the browser sent, its origin and path only (the redirect keeps no query).")
    ]
    referrer_host: Annotated[str, _text("The referrer's host without `www.`, as the referrers top list counts it.")]
    lang: Annotated[str, _text("The first Accept-Language tag, as the browser sent it.")]
    browser: Annotated[str, _text("Browser family (`Firefox`), from the user agent.")]
    os: Annotated[str, _text("Operating system family (`Android`), from the user agent.")]
    device: Annotated[str, msgspec.Meta(description="desktop, mobile, tablet or other, from the user agent.")]
    ua: Annotated[str, _text("The User-Agent header as stored.")]


CLICK_FIELDS: Final[tuple[str, ...]] = tuple(f.encode_name for f in msgspec.structs.fields(Click))
"""The fields of a Click in order: the JSON keys and the columns of the events CSV."""


class ClickPage(msgspec.Struct, kw_only=True):
    """One page of a link's clicks, newest first."""

    events: Annotated[list[Click], msgspec.Meta(description="At most `limit` clicks, by time then id, newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Pass as `cursor` for the next (older) page; null on the last page."),
    ]
