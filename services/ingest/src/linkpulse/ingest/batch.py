"""From fetched messages to rows for `click_events` and dead letters for what cannot be decoded."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from linkpulse.events import (
    MAX_LANG,
    MAX_REFERRER,
    MAX_UA,
    VISITOR_KEY_LENGTH,
    ClickEvent,
    DecodeError,
    country_code,
    decode_click_batch,
)
from linkpulse.ingest.enrich import clean_text, enrich_user_agent, normalize_ip, referrer_host
from linkpulse.ingest.geoip import GeoLookup
from linkpulse.ingest.settings import GeoipSettings
from linkpulse.messaging.types import Msg

__all__ = [
    "MAX_TS",
    "MIN_TS",
    "NO_GEOIP",
    "ClickRow",
    "DeadLetter",
    "MessageRows",
    "PreparedBatch",
    "click_row",
    "dead_letter",
    "event_id",
    "prepare",
]

_BIGINT = 2**63
# Milliseconds of 0001-01-01 and 9999-12-31T23:59:59.999 UTC: the range ingest has always accepted (Python's
# datetime's), well inside Postgres's timestamptz.
MIN_TS = -62_135_596_800_000
MAX_TS = 253_402_300_799_999
# What the redirect mints (str of a UUID): taken as is. Any other spelling uuid.UUID accepts is rewritten
# to this one, so an event's id is the same text, and the same uuid, on every delivery.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ClickRow(NamedTuple):
    """One `click_events` row, in column order, as ingest stages it: `store.STAGE` is built from these fields."""

    id: str
    """The event id in canonical text form; cast to uuid in Postgres."""
    ts: int
    """Milliseconds since the epoch, UTC, exactly as the event carries them; Postgres makes the timestamptz."""
    link_id: int
    code: str
    ip: str | None
    ua: str
    referrer: str
    referrer_host: str
    lang: str
    country: str
    region: str
    """ISO 3166-2 ("DE-BY") from the GeoIP database; "" unknown."""
    city: str
    """English name and region ("Munich, DE-BY") from the GeoIP database; "" unknown."""
    asn: str
    """Network ("AS3320 Deutsche Telekom AG") from the ASN database; "" unknown."""
    browser: str
    os: str
    device: str
    is_bot: bool
    visitor: str | None
    """The click's visitor key as 32 hex characters (bytea in Postgres), None without a well-formed one."""


class DeadLetter(NamedTuple):
    """One `dead_letters` row: a message kept with its raw bytes because it could not be stored."""

    stream: str
    subject: str
    stream_seq: int
    msg_id: str | None
    deliveries: int
    payload: bytes
    error: str


class MessageRows(NamedTuple):
    """What one message turned into: its rows, or a dead letter (then `rows` is empty)."""

    msg: Msg
    rows: list[ClickRow]
    dead_letter: DeadLetter | None


@dataclass
class PreparedBatch:
    """A fetched batch ready for one transaction; every message in it is acked after the commit."""

    items: list[MessageRows] = field(default_factory=list)
    traceparents: list[str] = field(default_factory=list)
    """Trace contexts the clicks carry (only traced ones have one): the batch span links to them."""

    @property
    def rows(self) -> list[ClickRow]:
        return [row for item in self.items for row in item.rows]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [item.dead_letter for item in self.items if item.dead_letter is not None]


NO_GEOIP = GeoLookup(GeoipSettings())
"""No database: the country a trusted proxy's header gave, nothing else."""


def click_row(event: ClickEvent, geoip: GeoLookup = NO_GEOIP) -> ClickRow:
    """Enrich one event into a row; raise ValueError when a field cannot be stored as is."""
    if not -_BIGINT <= event.link_id < _BIGINT:
        raise ValueError(f"link_id {event.link_id} out of range")
    # Exact milliseconds from the event (never now()): (id, ts) must be equal on every redelivery.
    if not MIN_TS <= event.ts <= MAX_TS:
        raise ValueError(f"ts {event.ts} out of range")
    ua = clean_text(event.ua, MAX_UA)
    referrer = clean_text(event.referrer, MAX_REFERRER)
    agent = enrich_user_agent(ua)
    ip = normalize_ip(event.ip)
    country, region, city, asn = geoip.locate(ip, _country(event.country))
    # Positional, in ClickRow's field order: keywords cost a dict per click, a tenth of the whole row.
    return ClickRow(
        event_id(event.id),
        event.ts,
        event.link_id,
        clean_text(event.code, 64),
        ip,
        ua,
        referrer,
        referrer_host(referrer),
        clean_text(event.lang, MAX_LANG),
        country,
        region,
        city,
        asn,
        agent.browser,
        agent.os,
        agent.device,
        agent.is_bot,
        _visitor(event.visitor),
    )


# A few hundred spellings arrive at all: the rule runs once for each.
_country = lru_cache(maxsize=1024)(country_code)
_VISITOR_KEY = re.compile(f"[0-9a-f]{{{VISITOR_KEY_LENGTH}}}")


def _visitor(key: str) -> str | None:
    # Anything but the redirect's spelling is left out of the uniques rather than failing the click.
    return key if key and _VISITOR_KEY.fullmatch(key) else None


def event_id(value: str) -> str:
    """The id in canonical form; ValueError when it is no UUID.

    Building a uuid.UUID for every click cost more than the rest of its validation, and asyncpg then spent
    as long again encoding it: ids travel as text and Postgres casts them.
    """
    if _CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(value))


def dead_letter(msg: Msg, error: str) -> DeadLetter:
    """A dead letter for `msg`, keyed by its stream sequence so a redelivery is stored once."""
    meta = msg.metadata
    return DeadLetter(
        stream=meta.stream,
        subject=msg.subject,
        stream_seq=meta.sequence.stream,
        msg_id=(msg.headers or {}).get("Nats-Msg-Id"),
        deliveries=meta.num_delivered,
        payload=bytes(msg.data),
        error=error,
    )


def prepare(msgs: list[Msg], geoip: GeoLookup = NO_GEOIP) -> PreparedBatch:
    """Decode and enrich every message; a message that fails either becomes a dead letter, whole.

    `geoip` picks up a changed database file first (once a batch, so every click of it is located alike).

    Dead-lettering the whole envelope (not just its bad event) keeps the raw bytes intact for replay.
    """
    batch = PreparedBatch()
    geoip.refresh()
    for msg in msgs:
        try:
            envelope = decode_click_batch(msg.data)
            rows = [click_row(event, geoip) for event in envelope.events]
        except (DecodeError, ValueError) as exc:
            batch.items.append(MessageRows(msg, [], dead_letter(msg, f"{type(exc).__name__}: {exc}")))
        else:
            batch.items.append(MessageRows(msg, rows, None))
            batch.traceparents.extend(event.traceparent for event in envelope.events if event.traceparent)
    return batch
