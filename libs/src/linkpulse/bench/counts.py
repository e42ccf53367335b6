"""The bench's ground truth: click events published to CLICKS, rows stored, and how far ingest is behind."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from linkpulse.events import DecodeError, decode_click_batch
from linkpulse.messaging.connect import jetstream_at
from linkpulse.messaging.inspect import clicks_after, clicks_last_seq, unacked_clicks

__all__ = [
    "Published",
    "Stored",
    "ingest_backlog",
    "placed_events",
    "published_events",
    "settled_last_seq",
    "stored_events",
    "stream_last_seq",
    "wait_stored",
]


@dataclass(frozen=True)
class Published:
    """What the stream holds: envelopes, the click events in them, and how many distinct event ids."""

    messages: int
    events: int
    distinct: int


@dataclass(frozen=True)
class Stored:
    """What Postgres holds: rows of click_events, distinct event ids among them, and the rollups' total."""

    rows: int
    distinct: int
    rollup_total: int

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct


async def stream_last_seq(nats_url: str) -> int:
    """The last sequence of CLICKS now: a run counts only what comes after it (the stack may be shared)."""
    async with jetstream_at(nats_url) as js:
        return await clicks_last_seq(js)


async def settled_last_seq(nats_url: str, quiet: float = 0.5, timeout: float = 30.0) -> int:
    """The last sequence of CLICKS once it stops moving for `quiet` seconds (the publishers' queues are out).

    The redirect's queue is in its own processes; the stream is the only place that shows it has emptied.
    """
    async with jetstream_at(nats_url) as js:
        deadline = time.monotonic() + timeout
        last = await clicks_last_seq(js)
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet)  # polling with a deadline: nothing announces "no more publishes"
            now = await clicks_last_seq(js)
            if now == last:
                break
            last = now
        return last


async def published_events(nats_url: str, after_seq: int = 0, *, batch: int = 100) -> Published:
    """Read the messages of CLICKS after `after_seq` once (an ephemeral consumer, no acks); count their events.

    `batch` messages a fetch: an envelope holds up to 256 clicks (about 64 KB), and a fetch far past
    the client's buffer makes the server drop the connection as a slow consumer.

    Every answered GET redirect publishes exactly one event, so `distinct` is the server's own count of
    redirects answered: the load tool's count misses the requests in flight when it stopped.
    """
    ids: set[str] = set()
    messages = events = 0
    async with jetstream_at(nats_url) as js:
        async for data in clicks_after(js, after_seq, batch=batch):
            messages += 1
            try:
                envelope = decode_click_batch(data)
            except DecodeError:
                continue  # not an envelope: ingest dead-letters it, and so it is no click
            events += len(envelope.events)
            ids.update(event.id for event in envelope.events)
    return Published(messages=messages, events=events, distinct=len(ids))


async def stored_events(database_url: str, link_ids: list[int]) -> Stored:
    """Rows of click_events of these links, their distinct ids, and the clicks their rollups add up to."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM click_events WHERE link_id = ANY($1::bigint[])) AS rows,"
            " (SELECT count(DISTINCT id) FROM click_events WHERE link_id = ANY($1::bigint[])) AS distinct_ids,"
            " (SELECT coalesce(sum(clicks + bot_clicks), 0)::bigint FROM link_totals WHERE link_id = ANY($1::bigint[]))"
            " AS rollup_total",
            link_ids,
        )
        assert row is not None
        return Stored(rows=row["rows"], distinct=row["distinct_ids"], rollup_total=row["rollup_total"])
    finally:
        await conn.close()


async def placed_events(database_url: str, link_ids: list[int]) -> int:
    """Clicks of these links that a GeoIP database placed in a city (the GeoIP-on half of an ingest comparison)."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM click_events WHERE link_id = ANY($1::bigint[]) AND city <> ''", link_ids
        )
    finally:
        await conn.close()


async def ingest_backlog(nats_url: str, shards: int) -> int:
    """Messages the ingest consumers have not acked yet: not yet delivered plus delivered and in hand."""
    async with jetstream_at(nats_url) as js:
        return await unacked_clicks(js, shards)


async def wait_stored(database_url: str, link_ids: list[int], expected: int, timeout: float) -> tuple[int, float]:
    """Poll until `expected` clicks are stored or `timeout` passes; returns (clicks, seconds it took).

    Polls the rollups' total, which ingest raises in the transaction that inserts the rows: as exact as
    counting click_events, and cheap enough to ask 20 times a second while ingest works.
    """
    conn = await asyncpg.connect(database_url)
    started = time.monotonic()
    try:
        while True:
            rows = await conn.fetchval(
                "SELECT coalesce(sum(clicks + bot_clicks), 0)::bigint FROM link_totals"
                " WHERE link_id = ANY($1::bigint[])",
                link_ids,
            )
            elapsed = time.monotonic() - started
            if rows >= expected or elapsed >= timeout:
                return rows, elapsed
            await asyncio.sleep(0.05)  # polling a count with a deadline: no event says "stored"
    finally:
        await conn.close()
