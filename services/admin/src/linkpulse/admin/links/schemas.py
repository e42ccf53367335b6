"""Link bodies: what a client may send (`LinkCreate`, `LinkUpdate`), what the API answers (`Link`, `LinkPage`)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from linkpulse.links import RedirectType
from linkpulse.validation import InvalidInput

__all__ = [
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_TITLE_CHARS",
    "Cursor",
    "Link",
    "LinkCreate",
    "LinkPage",
    "LinkUpdate",
    "RedirectType",
    "decode_cursor",
    "encode_cursor",
]

MAX_TAGS = 20
MAX_TAG_CHARS = 64
MAX_TITLE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_CHARS, description="A label to filter by.")]
Url = Annotated[str, msgspec.Meta(description="Target, http or https, at most 2048 bytes.")]
Expiry = Annotated[datetime, msgspec.Meta(tz=True, description="After this, answered 410.")]
MaxClicks = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1, description="Answered 410 past it.")]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)]
Title = Annotated[str, msgspec.Meta(max_length=MAX_TITLE_CHARS)]


def _checked_tags(tags: list[str]) -> list[str]:
    # msgspec turns a ValueError raised in __post_init__ into a ValidationError, so these are 422 too.
    if any(_CONTROL.search(t) for t in tags):
        raise ValueError("tags must not contain control characters")
    # Tags are a set to filter by; keep the first spelling of each.
    return list(dict.fromkeys(tags))


def _check_title(title: str | None) -> None:
    if title is not None and _CONTROL.search(title):
        raise ValueError("title must not contain control characters")


class LinkCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new short link. Only `url` is required."""

    url: Url
    code: Annotated[str, msgspec.Meta(description="Custom code, [A-Za-z0-9_-]{1,64}; random if absent.")] | None = None
    redirect_type: RedirectType = 302
    expires_at: Expiry | None = None
    max_clicks: MaxClicks | None = None
    tags: Tags = msgspec.field(default_factory=list)
    title: Title | None = None
    forward_query: bool = False
    """Append the short URL's query string to the target."""

    def __post_init__(self) -> None:
        self.tags = _checked_tags(self.tags)
        _check_title(self.title)


class LinkUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A change to a link: only the fields sent change; `null` clears `expires_at`, `max_clicks` and `title`."""

    url: Url | UnsetType = UNSET
    redirect_type: RedirectType | UnsetType = UNSET
    expires_at: Expiry | UnsetType | None = UNSET
    max_clicks: MaxClicks | UnsetType | None = UNSET
    tags: Tags | UnsetType = UNSET
    """Replaces the whole list."""
    title: Title | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET
    """False answers 410 until it is set back to true."""
    forward_query: bool | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.tags is not UNSET:
            self.tags = _checked_tags(self.tags)
        if self.title is not UNSET:
            _check_title(self.title)

    def changes(self) -> dict[str, Any]:
        """Column → new value for every field the client sent."""
        return {name: value for name in self.__struct_fields__ if (value := getattr(self, name)) is not UNSET}


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


class LinkPage(msgspec.Struct, kw_only=True):
    """One page of links, newest first."""

    items: list[Link]
    next_cursor: str | None
    """Pass as `cursor` for the next page; null on the last page."""


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    """Where a page ended: the (created_at, id) of its last link; pages continue strictly below it."""

    created_at_us: int
    id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]

    @property
    def created_at(self) -> datetime:
        """The position's timestamp; microseconds, as Postgres keeps it, so the comparison is exact."""
        return _EPOCH + timedelta(microseconds=self.created_at_us)


_cursor_decoder = msgspec.json.Decoder(Cursor)


def encode_cursor(created_at: datetime, link_id: int) -> str:
    """The opaque cursor after a link: base64url (no padding) of `[created_at µs, id]`."""
    raw = msgspec.json.encode(Cursor((created_at - _EPOCH) // timedelta(microseconds=1), link_id))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Cursor:
    """Inverse of encode_cursor; InvalidInput (422) for anything it did not make."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        decoded = _cursor_decoder.decode(raw)
        _ = decoded.created_at  # a position outside datetime's range raises OverflowError
    except (ValueError, msgspec.DecodeError, OverflowError):
        # binascii.Error is a ValueError; so is a non-ASCII cursor.
        raise InvalidInput("cursor is not valid: pass a `next_cursor` from a previous page") from None
    return decoded
