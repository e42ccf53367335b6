"""Event schemas: facts on the wire as versioned msgspec structs, JSON encoded; no I/O here."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "CLICK_BATCH_VERSION",
    "CLICK_EVENT_VERSION",
    "LINK_CHANGED_VERSION",
    "MAX_COUNTRY",
    "MAX_LANG",
    "MAX_REFERRER",
    "MAX_UA",
    "VISITOR_KEY_LENGTH",
    "ClickBatch",
    "ClickEvent",
    "DecodeError",
    "LinkChanged",
    "country_code",
    "decode_click_batch",
    "decode_link_changed",
    "encode",
    "upcast_click",
]

CLICK_EVENT_VERSION = 2
"""2 added `visitor`; a v1 click decodes as one without a visitor key. An ingest older than v2 dead-letters v2
clicks (kept, not counted): upgrade ingest before the redirects."""
CLICK_BATCH_VERSION = 1
LINK_CHANGED_VERSION = 1

# What a click keeps of the visitor's headers, in characters: the redirect cuts them when it makes the
# click, and ingest cuts again whatever reaches it. Real values are far shorter; the caps keep hostile
# headers from bloating rows, and keep no more of a person's browser than the stats use.
MAX_UA = 512
"""512: characters of the User-Agent kept (today's browsers send 100-200, bots' rarely pass 300)."""
MAX_REFERRER = 1024
"""1024: characters of the referrer kept, which is origin and path only (see the redirect's referrer.py)."""
MAX_LANG = 35
"""35: characters of the first Accept-Language tag kept (RFC 5646's longest tag to be supported)."""
MAX_COUNTRY = 2
"""2: a country is an ISO 3166-1 alpha-2 code or nothing (see `country_code`)."""
VISITOR_KEY_LENGTH = 32
"""32: hex characters of a visitor key, a 16-byte keyed BLAKE2b (docs/analytics.md, "Unique visitors")."""


def country_code(value: str) -> str:
    """ISO 3166-1 alpha-2 in upper case, or "" when missing or not a country (XX is "unknown", T1 Tor)."""
    if not value:
        return ""
    value = value.strip().upper()
    if len(value) != MAX_COUNTRY or not value.isascii() or not value.isalpha() or value == "XX":
        return ""
    return value


class DecodeError(ValueError):
    """A payload that is not a valid event of any known version."""


class ClickEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One answered GET redirect. `id` is a UUIDv7 minted at redirect time and never re-minted."""

    id: str
    code: str
    link_id: int
    ts: int
    """Epoch milliseconds at redirect time; the database key is `(id, ts)`, so it must never change."""
    v: int = CLICK_EVENT_VERSION
    ip: str | None = None
    ua: str = ""
    """The User-Agent, at most MAX_UA characters."""
    referrer: str = ""
    """The Referer's origin and path (no query, fragment or userinfo), at most MAX_REFERRER characters."""
    lang: str = ""
    """The first Accept-Language tag, at most MAX_LANG characters."""
    country: str = ""
    traceparent: str = ""
    visitor: str = ""
    """The visitor key (v2): VISITOR_KEY_LENGTH lowercase hex characters of a keyed hash of the full IP, user
    agent and link under that UTC day's salt, or "" (a v1 click, or none made); nothing else of the IP."""


class ClickBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope of clicks of one shard; its own `id` is the `Nats-Msg-Id`, the event ids stay the DB key."""

    id: str
    events: list[ClickEvent]
    v: int = CLICK_BATCH_VERSION


class LinkChanged(msgspec.Struct, frozen=True, kw_only=True):
    """A link was created, updated or deleted; redirect pods evict their cached copy on it."""

    id: str
    code: str
    op: Literal["created", "updated", "deleted"]
    version: int
    ts: int
    v: int = LINK_CHANGED_VERSION
    traceparent: str = ""


_encoder = msgspec.json.Encoder()
_raw_batch = msgspec.json.Decoder(dict[str, Any])
_batch_decoder = msgspec.json.Decoder(ClickBatch)
_link_changed_decoder = msgspec.json.Decoder(LinkChanged)


def encode(event: ClickEvent | ClickBatch | LinkChanged) -> bytes:
    """JSON bytes of an event, as sent on NATS."""
    return _encoder.encode(event)


def upcast_click(raw: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a raw click event dict to the current version, one step at a time.

    v1 → v2 added `visitor`: a v1 click has none ("", its default).
    """
    version = raw.get("v", 1)
    if not isinstance(version, int) or version < 1 or version > CLICK_EVENT_VERSION:
        raise DecodeError(f"unknown click event version {version!r}")
    if version == 1:
        raw = _upcast_click_v1_v2(raw)
    return raw


def _upcast_click_v1_v2(raw: dict[str, Any]) -> dict[str, Any]:
    # A v1 click carries no visitor key, and one it claims is not trusted: v1 had no such field.
    return {**raw, "v": 2, "visitor": ""}


def decode_click_batch(payload: bytes) -> ClickBatch:
    """Decode a click envelope, upcasting old event versions; raise DecodeError when it is not one."""
    try:
        # Fast path: current versions decode straight into structs.
        batch = _batch_decoder.decode(payload)
        if batch.v == CLICK_BATCH_VERSION and all(e.v == CLICK_EVENT_VERSION for e in batch.events):
            return batch
        raw = _raw_batch.decode(payload)
        if raw.get("v") != CLICK_BATCH_VERSION:
            raise DecodeError(f"unknown click batch version {raw.get('v')!r}")
        raw["events"] = [upcast_click(e) for e in raw.get("events", [])]
        return msgspec.convert(raw, ClickBatch)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(str(exc)) from None


def decode_link_changed(payload: bytes) -> LinkChanged:
    """Decode a LinkChanged event; raise DecodeError when it is not one."""
    try:
        return _link_changed_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(str(exc)) from None
