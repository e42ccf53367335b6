"""The bench's ground truth: click events published to CLICKS, rows stored, and how far ingest is behind."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from linkpulse.events import DecodeError, decode_click_batch
from linkpulse.messaging.streams import CLICKS_STREAM, CLICKS_SUBJECTS, ingest_durable

__all__ = [
    "Published",
    "Stored",
    "ingest_backlog",
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
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        return (await nc.jetstream().stream_info(CLICKS_STREAM)).state.last_seq
    finally:
        await nc.close()


async def settled_last_seq(nats_url: str, quiet: float = 0.5, timeout: float = 30.0) -> int:
    """The last sequence of CLICKS once it stops moving for `quiet` seconds (the publishers' queues are out).

    The redirect's queue is in its own processes; the stream is the only place that shows it has emptied.
    """
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        last = (await js.stream_info(CLICKS_STREAM)).state.last_seq
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet)  # polling with a deadline: nothing announces "no more publishes"
            now = (await js.stream_info(CLICKS_STREAM)).state.last_seq
            if now == last:
                break
            last = now
        return last
    finally:
        await nc.close()


async def published_events(nats_url: str, after_seq: int = 0, *, batch: int = 100) -> Published:
    """Read the messages of CLICKS after `after_seq` once (an ephemeral consumer, no acks); count their events.

    `batch` messages a fetch: an envelope holds up to 256 clicks (about 64 KB), and a fetch far past
    the client's buffer makes the server drop the connection as a slow consumer.

    Every answered GET redirect publishes exactly one event, so `distinct` is the server's own count of
    redirects answered: the load tool's count misses the requests in flight when it stopped.
    """
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(CLICKS_STREAM)).state.last_seq - after_seq
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after_seq + 1,
            inactive_threshold=60.0,
        )
        sub = await js.pull_subscribe(CLICKS_SUBJECTS, stream=CLICKS_STREAM, config=config)
        ids: set[str] = set()
        messages = events = 0
        while messages < total:
            try:
                msgs = await sub.fetch(batch, timeout=5)
            except TimeoutError:
                break  # nothing more arrives: the count says what was there
            for msg in msgs:
                messages += 1
                try:
                    envelope = decode_click_batch(msg.data)
                except DecodeError:
                    continue  # not an envelope: ingest dead-letters it, and so it is no click
                events += len(envelope.events)
                ids.update(event.id for event in envelope.events)
        await sub.unsubscribe()
        return Published(messages=messages, events=events, distinct=len(ids))
    finally:
        await nc.close()


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


async def ingest_backlog(nats_url: str, shards: int) -> int:
    """Messages the ingest consumers have not acked yet: not yet delivered plus delivered and in hand."""
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        infos = await asyncio.gather(*(js.consumer_info(CLICKS_STREAM, ingest_durable(s)) for s in range(shards)))
        return sum((i.num_pending or 0) + (i.num_ack_pending or 0) for i in infos)
    finally:
        await nc.close()


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
