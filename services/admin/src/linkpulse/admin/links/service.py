"""Link storage and its side effects: SQL with the outbox row, Redis write-through, LinkChanged publish."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from linkpulse.admin.links.schemas import Cursor, Link, LinkCreate, LinkPage, LinkUpdate, encode_cursor
from linkpulse.admin.outbox import RecordWriter
from linkpulse.admin.settings import AdminOptions
from linkpulse.db.errors import UNAVAILABLE
from linkpulse.db.link_records import epoch_ms, link_record
from linkpulse.events import LinkChanged, encode
from linkpulse.ids import new_code, new_event_id
from linkpulse.links import LinkRecord
from linkpulse.messaging.errors import PUBLISH_ERRORS
from linkpulse.messaging.link_events import publish_link_changed
from linkpulse.messaging.tracing import current_traceparent
from linkpulse.messaging.types import JetStreamContext
from linkpulse.validation import InvalidInput, could_be_code, validate_code, validate_expiry

__all__ = [
    "CodeTaken",
    "InvalidInput",
    "LinkService",
    "created_event",
    "link_record",
    "random_code",
]

# 62**7 codes: a collision is rare, five in a row means something else is wrong.
_CODE_ATTEMPTS = 5
# The event waits in the outbox if NATS is slow; a request should not wait long for it.
_PUBLISH_TIMEOUT = 1.0
_CODE_CONSTRAINT = "links_code_key"

_LINK_COLUMNS = (
    "l.id, l.code, l.url, l.redirect_type, l.active, l.expires_at, l.max_clicks, l.tags, l.title,"
    " l.forward_query, l.created_at, l.updated_at, l.version, l.deleted_at"
)
_TOTALS = "coalesce(t.clicks, 0) AS clicks, coalesce(t.bot_clicks, 0) AS bot_clicks"
# What a PATCH may set, by LinkUpdate field; only these names ever reach the SQL text.
_UPDATABLE = frozenset(LinkUpdate.__struct_fields__)

log = structlog.get_logger(__name__)


class CodeTaken(Exception):
    """The custom code belongs to another link (answered 409)."""


class LinkService:
    """Everything the API does to links; handlers call it and never build SQL."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: Redis,
        js: JetStreamContext,
        *,
        options: AdminOptions,
        redis_ttl: int,
    ) -> None:
        """Bind the service to the app's resources.

        Args:
            pool: Postgres, where links and the outbox live.
            redis: the cache redirect pods read first.
            js: JetStream, for LinkChanged events.
            options: public URL (for `short_url`) and the hosts that serve short links.
            redis_ttl: seconds a written-through record lives in Redis.
        """
        self._pool = pool
        self._records = RecordWriter(redis, redis_ttl)
        self._js = js
        self._options = options

    async def create(self, data: LinkCreate) -> Link:
        """Store a new link with its `created` event in one transaction, then cache and announce it.

        Raises:
            InvalidInput: the URL, code or expiry is not acceptable (422).
            CodeTaken: the custom code is in use (409).
        """
        url = self._options.validate_target(data.url)
        if data.code is not None:
            validate_code(data.code)
        if data.expires_at is not None:
            validate_expiry(data.expires_at)
        for _ in range(_CODE_ATTEMPTS):
            code = data.code if data.code is not None else random_code()
            try:
                row, event = await self._insert(code, url, data)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != _CODE_CONSTRAINT:
                    raise
                if data.code is not None:
                    raise CodeTaken(f"code {code!r} is already taken") from None
                continue
            break
        else:
            raise RuntimeError(f"no free random code after {_CODE_ATTEMPTS} attempts")
        await self._after_commit(link_record(row), event)
        return self._link(row, clicks=0, bot_clicks=0)

    async def get(self, code: str) -> Link | None:
        """The live (not deleted) link with its click totals, or None."""
        if not could_be_code(code):
            return None
        row = await self._pool.fetchrow(
            f"""SELECT {_LINK_COLUMNS}, {_TOTALS}
                FROM links l LEFT JOIN link_totals t ON t.link_id = l.id
                WHERE l.code = $1 AND l.deleted_at IS NULL""",
            code,
        )
        if row is None:
            return None
        return self._link(row, clicks=row["clicks"], bot_clicks=row["bot_clicks"])

    async def search(
        self, *, limit: int, after: Cursor | None = None, q: str | None = None, tag: str | None = None
    ) -> LinkPage:
        """Live links newest first, `limit` per page, continuing strictly below `after`.

        Keyset pagination on (created_at, id): a page never repeats or skips a link, however many
        are created meanwhile (new ones sort above the first page). `q` is a case-insensitive
        substring of the code, URL or title (trigram indexes serve it where pg_trgm exists); `tag`
        matches one element of `tags` (GIN index).
        """
        args: list[Any] = []

        def param(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        where = ["l.deleted_at IS NULL"]
        if after is not None:
            where.append(f"(l.created_at, l.id) < ({param(after.created_at)}, {param(after.id)})")
        if q:
            pattern = param(f"%{_escape_like(q)}%")
            where.append(f"(l.code ILIKE {pattern} OR l.url ILIKE {pattern} OR l.title ILIKE {pattern})")
        if tag:
            where.append(f"l.tags @> ARRAY[{param(tag)}]::text[]")
        # One row more than the page tells whether another page follows.
        rows = await self._pool.fetch(
            f"""SELECT {_LINK_COLUMNS}, {_TOTALS}
                FROM links l LEFT JOIN link_totals t ON t.link_id = l.id
                WHERE {" AND ".join(where)}
                ORDER BY l.created_at DESC, l.id DESC
                LIMIT {param(limit + 1)}""",
            *args,
        )
        items = [self._link(r, clicks=r["clicks"], bot_clicks=r["bot_clicks"]) for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return LinkPage(items=items, next_cursor=encode_cursor(last["created_at"], last["id"]) if last else None)

    async def update(self, code: str, data: LinkUpdate) -> Link | None:
        """Apply the fields sent, bump `version`, write the `updated` event; None when no live link has `code`.

        Raises:
            InvalidInput: nothing to change, or a value create would refuse too (422).
        """
        changes = data.changes()
        if not changes:
            raise InvalidInput("nothing to change: send at least one field")
        if "url" in changes:
            changes["url"] = self._options.validate_target(changes["url"])
        if changes.get("expires_at") is not None:
            validate_expiry(changes["expires_at"])
        assert changes.keys() <= _UPDATABLE
        if not could_be_code(code):
            return None
        values = list(changes.values())
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=2))
        return await self._change(
            "updated",
            f"""UPDATE links AS l SET {assignments}, version = l.version + 1, updated_at = now()
                WHERE l.code = $1 AND l.deleted_at IS NULL
                RETURNING {_LINK_COLUMNS}""",
            code,
            *values,
        )

    async def delete(self, code: str) -> bool:
        """Soft-delete: the row stays (its code stays taken, redirects answer 410); False when none is live."""
        if not could_be_code(code):
            return False
        deleted = await self._change(
            "deleted",
            f"""UPDATE links AS l SET deleted_at = now(), version = l.version + 1, updated_at = now()
                WHERE l.code = $1 AND l.deleted_at IS NULL
                RETURNING {_LINK_COLUMNS}""",
            code,
        )
        return deleted is not None

    async def _change(self, op: Literal["updated", "deleted"], sql: str, *args: Any) -> Link | None:
        # The changed row and its outbox row commit together, as on create.
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql, *args)
            if row is None:
                return None
            event = await _write_event(conn, row, op)
            totals = await conn.fetchrow("SELECT clicks, bot_clicks FROM link_totals WHERE link_id = $1", row["id"])
        await self._after_commit(link_record(row), event)
        clicks, bot_clicks = (totals["clicks"], totals["bot_clicks"]) if totals is not None else (0, 0)
        return self._link(row, clicks=clicks, bot_clicks=bot_clicks)

    async def _insert(self, code: str, url: str, data: LinkCreate) -> tuple[asyncpg.Record, LinkChanged]:
        # The link row and its outbox row commit together: an event is never lost, nor ever
        # announces a link that does not exist.
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""INSERT INTO links AS l
                        (code, url, redirect_type, expires_at, max_clicks, tags, title, forward_query)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    RETURNING {_LINK_COLUMNS}""",
                code,
                url,
                data.redirect_type,
                data.expires_at,
                data.max_clicks,
                data.tags,
                data.title,
                data.forward_query,
            )
            event = await _write_event(conn, row, "created")
        return row, event

    async def _after_commit(self, record: LinkRecord, event: LinkChanged) -> None:
        """Write Redis through, publish the event, mark it published; failures are logged, never raised.

        Whatever fails here, the change is stored and its outbox row stays pending until the relay
        (see `linkpulse.admin.outbox`) publishes it and rewrites Redis.
        """
        try:
            # Before the publish: a pod evicting on the event must find the new record in Redis.
            if not await self._records.write(record):
                log.info("link.redis_newer_version_kept", code=record.code, version=record.version)
        except RedisError as exc:
            # No publish either: pods would evict and cache the old record from Redis again. The
            # relay retries the write, then publishes (see outbox.py).
            log.warning(
                "link.redis_write_failed", code=record.code, event_id=event.id, error=str(exc) or type(exc).__name__
            )
            return
        try:
            await publish_link_changed(self._js, event, timeout=_PUBLISH_TIMEOUT)
        except PUBLISH_ERRORS as exc:
            # The outbox row stays pending; the relay publishes it with the same Nats-Msg-Id.
            log.warning(
                "link.publish_failed", code=record.code, event_id=event.id, error=str(exc) or type(exc).__name__
            )
            return
        try:
            await self._pool.execute("UPDATE link_events SET published_at = now() WHERE id = $1", event.id)
        except UNAVAILABLE as exc:
            # A republish by the relay is deduplicated by its Nats-Msg-Id or evicts a cache once more.
            log.warning("link.mark_published_failed", event_id=event.id, error=str(exc) or type(exc).__name__)

    def _link(self, row: asyncpg.Record, *, clicks: int, bot_clicks: int) -> Link:
        return Link(
            code=row["code"],
            url=row["url"],
            short_url=self._options.short_url(row["code"]),
            redirect_type=row["redirect_type"],
            active=row["active"],
            expires_at=row["expires_at"],
            max_clicks=row["max_clicks"],
            tags=list(row["tags"]),
            title=row["title"],
            forward_query=row["forward_query"],
            clicks=clicks,
            bot_clicks=bot_clicks,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )


def random_code() -> str:
    """A random 7-character base62 code that is not a reserved word."""
    # A random code could spell a reserved word ("healthz" is 7 characters); draw again if so.
    while True:
        code = new_code()
        try:
            return validate_code(code)
        except InvalidInput:
            continue


async def _write_event(
    conn: asyncpg.Connection, row: asyncpg.Record, op: Literal["created", "updated", "deleted"]
) -> LinkChanged:
    """Insert the outbox row of a change to `row`, inside the caller's transaction."""
    event = change_event(row, op)
    await conn.execute(
        "INSERT INTO link_events (id, link_id, code, op, version, payload) VALUES ($1, $2, $3, $4, $5, $6)",
        event.id,
        row["id"],
        event.code,
        event.op,
        event.version,
        encode(event),
    )
    return event


def change_event(row: Mapping[str, Any], op: Literal["created", "updated", "deleted"]) -> LinkChanged:
    """A new LinkChanged for the state of `row` after a change (a fresh event id each call).

    It carries the trace of the request making the change, when that is sampled: redirect pods evicting on
    it continue that trace, even when the outbox relay publishes it later.
    """
    return LinkChanged(
        id=new_event_id(),
        code=row["code"],
        op=op,
        version=row["version"],
        ts=epoch_ms(row["updated_at"]),
        traceparent=current_traceparent(),
    )


def created_event(row: Mapping[str, Any]) -> LinkChanged:
    """The `created` event of a newly inserted `links` row."""
    return change_event(row, "created")


def _escape_like(text: str) -> str:
    # `q` is a literal substring: its %, _ and \ must not act as LIKE wildcards.
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
