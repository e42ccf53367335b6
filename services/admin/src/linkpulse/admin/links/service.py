"""Link storage and its side effects: SQL with the outbox row, Redis write-through, LinkChanged publish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats.errors
import structlog
from nats.js import JetStreamContext
from redis.asyncio import Redis
from redis.exceptions import RedisError

from linkpulse.admin.links.schemas import Link, LinkCreate
from linkpulse.admin.settings import AdminOptions
from linkpulse.events import LinkChanged, encode
from linkpulse.ids import new_code, new_event_id
from linkpulse.links import LinkRecord, encode_record, redis_key
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import link_subject
from linkpulse.validation import InvalidInput, validate_code, validate_url

__all__ = ["CodeTaken", "InvalidInput", "LinkService"]

# 62**7 codes: a collision is rare, five in a row means something else is wrong.
_CODE_ATTEMPTS = 5
# The event waits in the outbox if NATS is slow; a request should not wait long for it.
_PUBLISH_TIMEOUT = 1.0
_CODE_CONSTRAINT = "links_code_key"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_LINK_COLUMNS = (
    "l.id, l.code, l.url, l.redirect_type, l.active, l.expires_at, l.max_clicks, l.tags, l.title,"
    " l.forward_query, l.created_at, l.updated_at, l.version"
)

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
        self._redis = redis
        self._js = js
        self._options = options
        self._redis_ttl = redis_ttl

    async def create(self, data: LinkCreate) -> Link:
        """Store a new link with its `created` event in one transaction, then cache and announce it.

        Raises:
            InvalidInput: the URL, code or expiry is not acceptable (422).
            CodeTaken: the custom code is in use (409).
        """
        url = validate_url(data.url, self._options.hosts())
        if data.code is not None:
            validate_code(data.code)
        if data.expires_at is not None and data.expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at must be in the future")
        for _ in range(_CODE_ATTEMPTS):
            code = data.code if data.code is not None else _random_code()
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
        await self._after_commit(_record(row), event)
        return self._link(row, clicks=0, bot_clicks=0)

    async def get(self, code: str) -> Link | None:
        """The live (not deleted) link with its click totals, or None."""
        row = await self._pool.fetchrow(
            f"""SELECT {_LINK_COLUMNS}, coalesce(t.clicks, 0) AS clicks, coalesce(t.bot_clicks, 0) AS bot_clicks
                FROM links l LEFT JOIN link_totals t ON t.link_id = l.id
                WHERE l.code = $1 AND l.deleted_at IS NULL""",
            code,
        )
        if row is None:
            return None
        return self._link(row, clicks=row["clicks"], bot_clicks=row["bot_clicks"])

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
            event = LinkChanged(
                id=new_event_id(), code=code, op="created", version=row["version"], ts=_ms(row["updated_at"])
            )
            await conn.execute(
                """INSERT INTO link_events (id, link_id, code, op, version, payload)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                event.id,
                row["id"],
                code,
                event.op,
                event.version,
                encode(event),
            )
        return row, event

    async def _after_commit(self, record: LinkRecord, event: LinkChanged) -> None:
        """Write Redis through and publish the event; failures are logged, the link is stored either way."""
        try:
            await self._redis.set(redis_key(record.code), encode_record(record), ex=self._redis_ttl)
        except RedisError as exc:
            # Redirects fall back to Postgres and refill Redis; the LinkChanged evicts stale copies.
            log.warning("link.redis_write_failed", code=record.code, error=str(exc) or type(exc).__name__)
        try:
            await publish_with_id(
                self._js, link_subject(record.code), encode(event), event.id, timeout=_PUBLISH_TIMEOUT
            )
        except (nats.errors.Error, TimeoutError) as exc:
            # The outbox row stays pending; the relay publishes it with the same Nats-Msg-Id.
            log.warning(
                "link.publish_failed", code=record.code, event_id=event.id, error=str(exc) or type(exc).__name__
            )
            return
        try:
            await self._pool.execute("UPDATE link_events SET published_at = now() WHERE id = $1", event.id)
        except (asyncpg.PostgresError, OSError) as exc:
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


def _random_code() -> str:
    # A random code could spell a reserved word ("healthz" is 7 characters); draw again if so.
    while True:
        code = new_code()
        try:
            return validate_code(code)
        except InvalidInput:
            continue


def _record(row: Any) -> LinkRecord:
    """The cached form of a link row, as redirect pods read it."""
    return LinkRecord(
        id=row["id"],
        code=row["code"],
        url=row["url"],
        redirect_type=row["redirect_type"],
        active=row["active"],
        expires_at=_ms(row["expires_at"]) if row["expires_at"] is not None else None,
        max_clicks=row["max_clicks"],
        forward_query=row["forward_query"],
        version=row["version"],
    )


def _ms(ts: datetime) -> int:
    # Integer arithmetic: a float timestamp can land one millisecond short.
    return (ts - _EPOCH) // timedelta(milliseconds=1)
