"""The link record as redirect pods cache it, and the rule that turns it into an answer."""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from linkpulse.validation import stored_target_problem

__all__ = [
    "REDIRECT_TYPES",
    "LinkRecord",
    "RedirectType",
    "decode_record",
    "encode_record",
    "record_problem",
    "redis_key",
    "status_of",
]

RedirectType = Literal[301, 302, 307, 308]
"""A redirect status a link may answer with (the API's type of `redirect_type`)."""
REDIRECT_TYPES: tuple[int, ...] = get_args(RedirectType)
"""The same statuses as values: what a stored record's `redirect_type` must be."""


class LinkRecord(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """What a redirect needs to answer; array_like keeps the Redis value and the cache entry small."""

    id: int
    code: str
    url: str
    redirect_type: int = 302
    active: bool = True
    deleted: bool = False
    expires_at: int | None = None
    """Epoch milliseconds, or None for never."""
    max_clicks: int | None = None
    forward_query: bool = False
    version: int = 1


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LinkRecord)


def encode_record(record: LinkRecord) -> bytes:
    """Bytes stored in Redis under `link:<code>`."""
    return _encoder.encode(record)


def decode_record(data: bytes) -> LinkRecord:
    """Inverse of encode_record."""
    return _decoder.decode(data)


def record_problem(record: LinkRecord, code: str) -> str | None:
    """Why a record read from Redis or Postgres must not answer `code`, or None when it may.

    A store can hold what the admin API never wrote (a hand edit, a stale format, a Redis others can
    write to): such a record is a miss, never a Location.
    """
    if record.code != code:
        return "record is of another code"
    if record.redirect_type not in REDIRECT_TYPES:
        return f"redirect type {record.redirect_type} is not a redirect"
    return stored_target_problem(record.url)


def redis_key(code: str) -> str:
    """The Redis key of a link record."""
    return f"link:{code}"


def status_of(record: LinkRecord, now_ms: int, clicks: int | None = None) -> Literal["live", "gone"]:
    """`gone` (answered 410) when disabled, deleted, expired or over its click limit."""
    if record.deleted or not record.active:
        return "gone"
    if record.expires_at is not None and now_ms >= record.expires_at:
        return "gone"
    if record.max_clicks is not None and clicks is not None and clicks >= record.max_clicks:
        return "gone"
    return "live"
