"""Link bodies: what a client may send (`LinkCreate`) and what the API answers (`Link`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec

__all__ = ["MAX_TAGS", "MAX_TAG_CHARS", "MAX_TITLE_CHARS", "Link", "LinkCreate", "RedirectType"]

MAX_TAGS = 20
MAX_TAG_CHARS = 64
MAX_TITLE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

RedirectType = Literal[301, 302, 307, 308]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_CHARS, description="A label to filter by.")]


class LinkCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new short link. Only `url` is required."""

    url: Annotated[str, msgspec.Meta(description="Target, http or https, at most 2048 bytes.")]
    code: Annotated[str, msgspec.Meta(description="Custom code, [A-Za-z0-9_-]{1,64}; random if absent.")] | None = None
    redirect_type: RedirectType = 302
    expires_at: Annotated[datetime, msgspec.Meta(tz=True, description="After this, answered 410.")] | None = None
    max_clicks: Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1, description="Answered 410 past it.")] | None = None
    tags: Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)] = msgspec.field(default_factory=list)
    title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE_CHARS)] | None = None
    forward_query: bool = False
    """Append the short URL's query string to the target."""

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a ValidationError, so these come out as 422 too.
        if any(_CONTROL.search(t) for t in self.tags):
            raise ValueError("tags must not contain control characters")
        if self.title is not None and _CONTROL.search(self.title):
            raise ValueError("title must not contain control characters")
        # Tags are a set to filter by; keep the first spelling of each.
        self.tags = list(dict.fromkeys(self.tags))


class Link(msgspec.Struct, kw_only=True):
    """A short link as the API shows it."""

    code: str
    url: str
    short_url: str
    redirect_type: int
    active: bool
    expires_at: datetime | None
    max_clicks: int | None
    tags: list[str]
    title: str | None
    forward_query: bool
    clicks: int
    """Human clicks counted so far (bots apart, in `bot_clicks`)."""
    bot_clicks: int = 0
    created_at: datetime
    updated_at: datetime
    version: int
    """Bumped by every change; LinkChanged events and cached records carry it."""
