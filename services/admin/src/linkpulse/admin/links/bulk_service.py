"""Bulk link storage: all-or-nothing inserts with their outbox rows, batched side effects, CSV export in pages."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from linkpulse.admin.links.bulk import (
    EXPORT_COLUMNS,
    BulkRejected,
    BulkRow,
    RowError,
    Upload,
    export_row,
    validate_rows,
)
from linkpulse.admin.links.service import created_event, link_record, random_code
from linkpulse.admin.outbox import RecordWriter
from linkpulse.admin.settings import AdminOptions
from linkpulse.db.errors import UNAVAILABLE
from linkpulse.events import LinkChanged, encode
from linkpulse.messaging.link_events import publish_link_changed
from linkpulse.messaging.types import JetStreamContext

__all__ = ["BulkCreated", "BulkItem", "LinkBulkService"]

# A random code collides about once in 3.5e12 draws; five rounds in a row means something else is wrong.
_CODE_ATTEMPTS = 5
# Side effects go in slices: one Redis pipeline, or this many publishes awaiting their acks at once.
_SLICE = 500
# Each publish waits this long for its ack; unpublished events wait in the outbox for the relay.
_PUBLISH_TIMEOUT = 2.0
# Advisory lock key serialising bulk inserts across admin pods ("lpbulk" in ASCII).
_BULK_LOCK = int.from_bytes(b"lpbulk", "big")
# Links per page of the export (one statement each), and the size of a chunk of the response.
_EXPORT_BATCH = 500
_CHUNK_CHARS = 64 * 1024

# One statement for every row: unnest turns the column arrays back into rows. Tags travel as one
# JSON array per row, since a Postgres array of arrays must be rectangular. ON CONFLICT DO NOTHING
# lets a random code that lost a race be drawn again without aborting the transaction.
_INSERT_LINKS = """
INSERT INTO links AS l (code, url, redirect_type, expires_at, max_clicks, tags, title, forward_query, active)
SELECT r.code, r.url, r.redirect_type, r.expires_at, r.max_clicks,
       ARRAY(SELECT t.value FROM jsonb_array_elements_text(r.tags::jsonb) WITH ORDINALITY AS t(value, n)
             ORDER BY t.n),
       r.title, r.forward_query, r.active
FROM unnest($1::text[], $2::text[], $3::smallint[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[],
            $8::boolean[], $9::boolean[])
     WITH ORDINALITY AS r(code, url, redirect_type, expires_at, max_clicks, tags, title, forward_query, active, n)
ORDER BY r.n
ON CONFLICT (code) DO NOTHING
RETURNING l.id, l.code, l.url, l.redirect_type, l.active, l.expires_at, l.max_clicks, l.forward_query,
          l.updated_at, l.version
"""
_INSERT_EVENTS = """
INSERT INTO link_events (id, link_id, code, op, version, payload)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bytea[])
"""
# One page of the export: the links after the last id sent, each page its own short statement.
_EXPORT_PAGE = """
SELECT l.id, l.code, l.url, l.redirect_type, l.active, l.expires_at, l.max_clicks, l.tags, l.title,
       l.forward_query, l.created_at, coalesce(t.clicks, 0) AS clicks, coalesce(t.bot_clicks, 0) AS bot_clicks
FROM links l LEFT JOIN link_totals t ON t.link_id = l.id
WHERE l.deleted_at IS NULL AND l.id > $1 {tag_filter}
ORDER BY l.id
LIMIT $2
"""

log = structlog.get_logger(__name__)
_tags_encoder = msgspec.json.Encoder()


class BulkItem(msgspec.Struct, frozen=True):
    """One created link, in upload order."""

    code: str
    url: str
    short_url: str


class BulkCreated(msgspec.Struct, frozen=True):
    """The answer to a bulk upload that was stored."""

    created: int
    items: list[BulkItem]


class _CodesTaken(Exception):
    """Custom codes that another writer took between the check and the insert."""

    def __init__(self, rows: list[BulkRow]) -> None:
        super().__init__(f"{len(rows)} codes taken concurrently")
        self.rows = rows


class LinkBulkService:
    """Bulk create and export; handlers call it and never build SQL."""

    def __init__(
        self, pool: asyncpg.Pool, redis: Redis, js: JetStreamContext, *, options: AdminOptions, redis_ttl: int
    ) -> None:
        """Bind the service to the app's resources (see LinkService for each one's role)."""
        self._pool = pool
        self._redis = redis
        self._js = js
        self._options = options
        self._redis_ttl = redis_ttl

    async def create(self, upload: Upload) -> BulkCreated:
        """Validate every row, then store all of them or none, each with its `created` outbox row.

        Raises:
            BulkRejected: at least one row is invalid or its code is taken; nothing was stored.
        """
        # 10,000 URLs take a moment of CPU to check: off the event loop, so other requests go on.
        rows, errors = await asyncio.to_thread(validate_rows, upload, self._options.validate_target)
        errors += await self._taken(rows)
        if errors:
            raise BulkRejected(errors, upload.total)
        if not rows:
            return BulkCreated(created=0, items=[])
        try:
            inserted, events = await self._insert(rows)
        except _CodesTaken as exc:
            raise BulkRejected([_taken_error(r) for r in exc.rows], upload.total) from None
        await self._after_commit(inserted, events)
        items = [BulkItem(code=r["code"], url=r["url"], short_url=self._options.short_url(r["code"])) for r in inserted]
        return BulkCreated(created=len(items), items=items)

    async def export(self, tag: str | None = None) -> AsyncIterator[str]:
        """CSV text of every live link (with `tag`, only those carrying it), header first, in chunks.

        Keyset pages by id, each one short statement on a pooled connection given back before the page
        is sent: a client that reads slowly (or not at all) holds no connection and no transaction, and
        memory stays flat however many links there are. So a long export is not one snapshot: a link
        created or deleted meanwhile may or may not be in it, and none is in it twice.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        sql = _EXPORT_PAGE.format(tag_filter="AND l.tags @> ARRAY[$3::text]" if tag is not None else "")
        args = [tag] if tag is not None else []
        after = 0
        while True:
            rows = await self._pool.fetch(sql, after, _EXPORT_BATCH, *args)
            for row in rows:
                writer.writerow(export_row(row, self._options.short_url(row["code"])))
                if buffer.tell() >= _CHUNK_CHARS:
                    yield _drain(buffer)
            if len(rows) < _EXPORT_BATCH:
                yield _drain(buffer)
                return
            after = rows[-1]["id"]

    async def _taken(self, rows: Sequence[BulkRow]) -> list[RowError]:
        # Deleted links count: a soft-deleted code stays taken (it answers 410).
        codes = [r.link.code for r in rows if r.link.code is not None]
        if not codes:
            return []
        taken = {r["code"] for r in await self._pool.fetch("SELECT code FROM links WHERE code = ANY($1)", codes)}
        return [_taken_error(r) for r in rows if r.link.code in taken]

    async def _insert(self, rows: list[BulkRow]) -> tuple[list[asyncpg.Record], list[LinkChanged]]:
        # Every link and every outbox row commit together, or none do.
        codes = _codes_for(rows)
        stored: dict[int, asyncpg.Record] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            # One bulk insert at a time: two uploads sharing codes in different orders would each
            # wait on the other's rows (a deadlock). Waiting here instead, the second then finds the
            # shared codes taken. Bulk uploads are rare; single creates never take this lock.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _BULK_LOCK)
            pending = list(range(len(rows)))
            for _ in range(_CODE_ATTEMPTS):
                returned = await conn.fetch(
                    _INSERT_LINKS, *_columns([rows[i] for i in pending], [codes[i] for i in pending])
                )
                by_code = {r["code"]: r for r in returned}
                missing = [i for i in pending if codes[i] not in by_code]
                stored.update((i, by_code[codes[i]]) for i in pending if codes[i] in by_code)
                if not missing:
                    break
                taken = [rows[i] for i in missing if rows[i].link.code is not None]
                if taken:
                    raise _CodesTaken(taken)  # rolls the transaction back
                used = set(codes)
                for i in missing:
                    codes[i] = _fresh_code(used)
                pending = missing
            else:
                raise RuntimeError(f"no free random codes after {_CODE_ATTEMPTS} attempts")
            inserted = [stored[i] for i in range(len(rows))]
            events = [created_event(r) for r in inserted]
            await conn.execute(
                _INSERT_EVENTS,
                [e.id for e in events],
                [r["id"] for r in inserted],
                [e.code for e in events],
                [e.op for e in events],
                [e.version for e in events],
                [encode(e) for e in events],
            )
        return inserted, events

    async def _after_commit(self, rows: list[asyncpg.Record], events: list[LinkChanged]) -> None:
        """Write Redis through and publish the events; failures are logged, the links are stored either way."""
        try:
            for start in range(0, len(rows), _SLICE):
                async with self._redis.pipeline(transaction=False) as pipe:
                    # The same version-safe write as single changes, queued on a pipeline: each
                    # `write` only adds an EVALSHA, and `execute` sends the slice in one round trip.
                    writer = RecordWriter(pipe, self._redis_ttl)
                    for row in rows[start : start + _SLICE]:
                        await writer.write(link_record(row))
                    await pipe.execute()
        except RedisError as exc:
            # Redirects fall back to Postgres and refill Redis; the relay rewrites what it publishes.
            log.warning("bulk.redis_write_failed", links=len(rows), error=str(exc) or type(exc).__name__)
        await self._publish(events)

    async def _publish(self, events: list[LinkChanged]) -> None:
        """Publish slice by slice, marking each slice published as soon as it is acked.

        Marking per slice keeps rows from looking forgotten to the relay (which takes rows pending
        for a couple of seconds) while later slices are still going out. The first failing slice
        stops the rest: NATS is away, and the relay publishes what is left.
        """
        for start in range(0, len(events), _SLICE):
            chunk = events[start : start + _SLICE]
            results = await asyncio.gather(
                *(publish_link_changed(self._js, e, timeout=_PUBLISH_TIMEOUT) for e in chunk), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            for failure in failures:
                if not isinstance(failure, Exception):
                    raise failure  # cancellation, not a publish error
            acked = [e.id for e, r in zip(chunk, results, strict=True) if not isinstance(r, BaseException)]
            await self._mark_published(acked)
            if failures:
                # The links are committed and their events wait in the outbox: a failure here is
                # logged, never answered as an error (a retried upload would find its codes taken).
                log.warning(
                    "bulk.publish_failed",
                    failed=len(failures),
                    pending=len(events) - start - len(chunk) + len(failures),
                    error=str(failures[0]),
                    error_type=type(failures[0]).__name__,
                )
                return

    async def _mark_published(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        try:
            await self._pool.execute(
                "UPDATE link_events SET published_at = now() WHERE id = ANY($1::uuid[])", event_ids
            )
        except UNAVAILABLE as exc:
            # The relay publishes them again; JetStream drops the duplicates by Nats-Msg-Id.
            log.warning("bulk.mark_published_failed", events=len(event_ids), error=str(exc) or type(exc).__name__)


def _codes_for(rows: Sequence[BulkRow]) -> list[str]:
    used = {r.link.code for r in rows if r.link.code is not None}
    return [r.link.code if r.link.code is not None else _fresh_code(used) for r in rows]


def _fresh_code(used: set[str]) -> str:
    # Unique within the upload; the database decides against the rest.
    while (code := random_code()) in used:
        pass
    used.add(code)
    return code


def _columns(rows: Sequence[BulkRow], codes: Sequence[str]) -> list[list[Any]]:
    links = [r.link for r in rows]
    return [
        list(codes),
        [r.url for r in rows],
        [link.redirect_type for link in links],
        [link.expires_at for link in links],
        [link.max_clicks for link in links],
        [_tags_encoder.encode(link.tags).decode() for link in links],
        [link.title for link in links],
        [link.forward_query for link in links],
        [link.active for link in links],
    ]


def _taken_error(row: BulkRow) -> RowError:
    return RowError(row.row, "code", f"code {row.link.code!r} is already taken")


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
