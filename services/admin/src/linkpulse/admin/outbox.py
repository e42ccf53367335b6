"""The outbox: the version-safe Redis write every change makes after its commit, and the relay that publishes
the LinkChanged events no request managed to publish."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from linkpulse.backoff import Backoff, wait_or_stop
from linkpulse.db.link_records import SELECT_BY_IDS, link_record
from linkpulse.links import LinkRecord, encode_record, redis_key
from linkpulse.messaging.errors import PUBLISH_ERRORS
from linkpulse.messaging.link_events import publish_stored_link_changed
from linkpulse.messaging.types import JetStreamContext

__all__ = ["OutboxRelay", "RecordWriter"]

log = structlog.get_logger(__name__)

# The request that wrote an event publishes it within about a second (Redis timeout + publish
# timeout); the relay leaves younger rows to it rather than publish them twice.
MIN_AGE = 2.0
# An event waits this long for Redis to take the new record: publishing before that would let pods
# re-read the old record from Redis. After it, Redis is taken to be down for everyone, and pods
# that evict go to Postgres.
REDIS_PATIENCE = 30.0
BATCH = 100
PUBLISH_TIMEOUT = 2.0
# A failed pass (Postgres away) is retried after a jittered wait growing to this: admin pods that failed
# together must not all come back at the same instants.
RETRY_CAP = 30.0
# Position of `version` in the msgpack array a LinkRecord encodes to (Lua counts from 1).
_VERSION_INDEX = [f.name for f in msgspec.structs.fields(LinkRecord)].index("version") + 1
# Write only if what Redis holds is not newer: two writers racing (two requests, a request and the
# relay) can finish in any order, and an older record must never replace a newer one. A value that
# does not decode is overwritten.
_SET_UNLESS_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, cached = pcall(cmsgpack.unpack, current)
  if ok and type(cached) == 'table' then
    local version = tonumber(cached[tonumber(ARGV[3])])
    if version and version > tonumber(ARGV[2]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
return 1
"""


class RecordWriter:
    """Writes link records through to Redis, never replacing a newer version with an older one."""

    def __init__(self, redis: Redis, ttl: int) -> None:
        """Bind to a client; `ttl` is the seconds a record lives (writes refresh it)."""
        self._script = redis.register_script(_SET_UNLESS_NEWER)
        self._ttl = ttl

    async def write(self, record: LinkRecord) -> bool:
        """Store `record` under `link:<code>`; False when Redis already holds a newer version.

        Raises:
            RedisError: Redis did not answer (callers log it; redirects fall back to Postgres).
        """
        args = [encode_record(record), record.version, _VERSION_INDEX, self._ttl]
        return bool(await self._script(keys=[redis_key(record.code)], args=args))


class OutboxRelay:
    """Publishes `link_events` rows that no request managed to publish, and rewrites their Redis records.

    Each pass locks a batch with `FOR UPDATE SKIP LOCKED`, so several admin pods share the work
    without handling a row twice; a republish after a crash is harmless anyway, as the event id is
    the `Nats-Msg-Id` and JetStream drops the duplicate within its window. An event is published
    only once Redis holds its link's current record (or after `redis_patience`, see REDIS_PATIENCE).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        records: RecordWriter,
        js: JetStreamContext,
        *,
        interval: float,
        min_age: float = MIN_AGE,
        redis_patience: float = REDIS_PATIENCE,
        batch: int = BATCH,
    ) -> None:
        """Bind the relay to the app's resources.

        Args:
            pool: Postgres holding `links` and `link_events`.
            records: the Redis write-through.
            js: JetStream, for LinkChanged events.
            interval: seconds between passes.
            min_age: seconds a pending row must have waited, so the request that wrote it can finish first.
            redis_patience: seconds an event waits for a Redis write to succeed before it is published
                without one.
            batch: most rows per pass (and per transaction).
        """
        self._pool = pool
        self._records = records
        self._js = js
        self._interval = interval
        self._min_age = min_age
        self._redis_patience = redis_patience
        self._batch = batch

    async def run(self, stop: asyncio.Event) -> None:
        """Pass at once, then every `interval` seconds until `stop` is set.

        A failed pass is logged and retried after a backoff (from `interval` up to RETRY_CAP, full jitter).
        """
        backoff = Backoff(self._interval, max(self._interval, RETRY_CAP))
        while not stop.is_set():
            try:
                published = await self.run_once()
            except Exception as exc:  # Postgres down, say: keep the loop alive and try again
                log.warning("outbox.relay_failed", error=str(exc) or type(exc).__name__, retry_within=backoff.ceiling)
                await backoff.wait(stop)
                continue
            backoff.reset()
            if published < self._batch:  # else a backlog: carry on without waiting
                await wait_or_stop(stop, self._interval)

    async def run_once(self) -> int:
        """Publish one batch of pending events, oldest first; returns how many were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            events = await conn.fetch(
                """SELECT id, link_id, code, payload,
                          created_at <= now() - make_interval(secs => $3) AS redis_overdue
                   FROM link_events
                   WHERE published_at IS NULL AND created_at <= now() - make_interval(secs => $1)
                   ORDER BY created_at, id LIMIT $2
                   FOR UPDATE SKIP LOCKED""",
                self._min_age,
                self._batch,
                self._redis_patience,
            )
            if not events:
                return 0
            cached = await self._write_records(conn, {e["link_id"] for e in events})
            published = []
            for event in events:
                event_id = str(event["id"])
                if event["link_id"] not in cached and not event["redis_overdue"]:
                    # Redis still holds the old record: an event now would make redirect pods evict
                    # and cache that old record again. Retry Redis next pass.
                    continue
                try:
                    ack = await publish_stored_link_changed(
                        self._js, event["code"], bytes(event["payload"]), event_id, timeout=PUBLISH_TIMEOUT
                    )
                except PUBLISH_ERRORS as exc:
                    # NATS is away: the rest would time out too; this row and the rest wait for the next pass.
                    log.warning("outbox.publish_failed", event_id=event_id, error=str(exc) or type(exc).__name__)
                    break
                if event["link_id"] not in cached:
                    # Long enough: evict anyway (pods that cannot reach Redis either go to Postgres).
                    log.error("outbox.published_without_redis", event_id=event_id, code=event["code"])
                log.info("outbox.published", event_id=event_id, code=event["code"], duplicate=ack.duplicate)
                published.append(event["id"])
            if published:
                await conn.execute("UPDATE link_events SET published_at = now() WHERE id = ANY($1::uuid[])", published)
        return len(published)

    async def _write_records(self, conn: asyncpg.Connection, link_ids: set[int]) -> set[int]:
        """Rewrite Redis from each link's current row; the ids Redis now holds (at least) that version of.

        Redis goes first: a pod that evicts on the event must find the current record there.
        """
        rows = await conn.fetch(SELECT_BY_IDS, list(link_ids))
        cached = set()
        for row in rows:
            if not await self._write_record(link_record(row)):
                break  # Redis is away: each further attempt would only cost its timeout
            cached.add(row["id"])
        return cached

    async def _write_record(self, record: LinkRecord) -> bool:
        try:
            await self._records.write(record)
        except RedisError as exc:
            # Publishing still evicts local caches; pods then read Redis (if it is back) or Postgres.
            log.warning("outbox.redis_write_failed", code=record.code, error=str(exc) or type(exc).__name__)
            return False
        return True
