"""The ingest worker: one pull loop per CLICKS shard, storing each batch in one transaction before acking it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from itertools import chain

import asyncpg
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from structlog.typing import FilteringBoundLogger

from linkpulse.db.errors import is_data_error, is_unavailable
from linkpulse.db.pool import create_pool
from linkpulse.ingest import metrics
from linkpulse.ingest.batch import PreparedBatch, dead_letter, prepare
from linkpulse.ingest.enrich import warm_up
from linkpulse.ingest.retention import apply_retention
from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.store import StoreResult, ensure_partitions, prepare_connection, store_batch
from linkpulse.messaging.connect import connect
from linkpulse.messaging.streams import CLICKS_STREAM, CLICKS_SUBJECTS, click_subject, ingest_consumer, ingest_durable
from linkpulse.messaging.tracing import batch_links, header_traceparent, messaging_attributes
from linkpulse.telemetry import Tracing

__all__ = ["IngestWorker"]

log = structlog.get_logger(__name__)

MAX_BACKOFF = 10.0
"""Longest pause between Postgres retries: short enough that ingest resumes soon after a restart."""
IN_PROGRESS_PER_ACK_WAIT = 3
"""A held batch tells JetStream it is still being worked on three times per ack wait, well before it runs out."""
PARTITIONS_EVERY = 86400.0
"""Partition upkeep runs on start and then daily; it prepares three months ahead."""
RETENTION_EVERY = 3600.0
"""Retention runs on start and then hourly: a partition goes within the hour its last click expires."""

IDLE_IN_TRANSACTION = "10s"
"""Postgres ends an ingest transaction idle this long (see `_work`): far above a batch's own pauses."""


class IngestWorker:
    """Consumes every shard of CLICKS into Postgres; any number of workers can share the consumers."""

    def __init__(self, settings: IngestSettings, tracing: Tracing | None = None) -> None:
        """Configure a worker; `tracing` defaults to off (`python -m linkpulse.ingest` passes the OTEL_* one)."""
        self.settings = settings
        self.tuning = settings.ingest
        self._tracing = tracing or Tracing()
        self._tracer = self._tracing.tracer("linkpulse.ingest")
        self._pool: asyncpg.Pool | None = None
        self._nc: Client | None = None
        self._stop: asyncio.Event | None = None
        self._bound: set[int] = set()
        # Decoding and storing take a slot; fetched batches wait for one as raw bytes. A transaction
        # per shard at once (16) ran each one slower and held every decoded batch in memory at once.
        self._store_slots = asyncio.Semaphore(self.tuning.concurrent_stores)
        self._db_failing = False

    def ready(self) -> bool:
        """Ready: connected to NATS with every shard's consumer bound, and not stopping.

        Postgres is left out on purpose: while it is down the worker holds its batches and waits, which
        is its job; an unready pod would only stall a rolling update.
        """
        return (
            self._stop is not None
            and not self._stop.is_set()
            and self._nc is not None
            and self._nc.is_connected
            and len(self._bound) == self.settings.clicks.shards
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then finish the batch in hand, drain NATS and close the pool."""
        self._stop = stop
        warm_up()
        nc = await _until_stopped(connect(self.settings.nats, "linkpulse-ingest"), stop)
        if nc is None:
            return
        self._nc = nc
        try:
            with self._tracing.asyncpg_spans():
                await self._work(nc, stop)
        finally:
            # Drain flushes the acks still buffered in the client before closing.
            await _drain(nc)
            await self._tracing.flush()
            log.info("ingest.stopped")

    async def _work(self, nc: Client, stop: asyncio.Event) -> None:
        # min_size=0: the pool opens nothing now, so the worker starts while Postgres is down.
        # One connection per shard loop, so no batch waits for another shard's commit, and partition
        # upkeep's and retention's.
        self._pool = await create_pool(
            self.settings.database,
            min_size=0,
            max_size=self.settings.clicks.shards + 2,
            init=prepare_connection,
            # A batch's transaction is never idle for long; one that is belongs to a frozen or partitioned
            # process, and its row locks on the rollups would stall every other pod until its TCP died.
            # Postgres ends it; the process, if it wakes, retries with a fresh connection (ids dedupe).
            server_settings={"idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION},
        )
        try:
            js = nc.jetstream()
            if await self._ensure_consumers(js, stop):
                log.info("ingest.started", shards=self.settings.clicks.shards)
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._maintain_partitions(stop))
                    if self.tuning.retention_days:
                        tasks.create_task(self._apply_retention(stop))
                    for shard in range(self.settings.clicks.shards):
                        tasks.create_task(self._consume(js, shard, stop))
        finally:
            await self._pool.close()

    async def _ensure_consumers(self, js: JetStreamContext, stop: asyncio.Event) -> bool:
        # Only the consumers, never the stream: its limits belong to the streams job / `linkpulse up`.
        # add_consumer with an unchanged config is a no-op, so every pod may do it on start.
        delay = self.tuning.retry_delay
        while not stop.is_set():
            try:
                for shard in range(self.settings.clicks.shards):
                    await js.add_consumer(CLICKS_STREAM, ingest_consumer(shard, self.settings.clicks.ack_wait))
                return True
            except (nats.errors.Error, OSError) as exc:
                log.warning("ingest.consumers_unavailable", error=repr(exc), retry_in=delay)
                if await _wait(stop, delay):
                    break
                delay = min(delay * 2, MAX_BACKOFF)
        return False

    async def _maintain_partitions(self, stop: asyncio.Event) -> None:
        assert self._pool is not None
        pool, timeout = self._pool, self.settings.database.command_timeout
        # Not fatal when it fails: events outside prepared months land in the default partition.
        await self._periodically(stop, "partitions", PARTITIONS_EVERY, lambda: ensure_partitions(pool, timeout=timeout))

    async def _apply_retention(self, stop: asyncio.Event) -> None:
        assert self._pool is not None
        pool, timeout, days = self._pool, self.settings.database.command_timeout, self.tuning.retention_days
        await self._periodically(
            stop, "retention", RETENTION_EVERY, lambda: apply_retention(pool, days, timeout=timeout)
        )

    async def _periodically(
        self, stop: asyncio.Event, name: str, every: float, job: Callable[[], Awaitable[object]]
    ) -> None:
        """Run `job` now and every `every` seconds until stop; while Postgres is away, retry with backoff."""
        delay = self.tuning.retry_delay
        while not stop.is_set():
            try:
                await job()
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning(f"ingest.{name}_failed", error=repr(exc), retry_in=delay)
                timeout, delay = delay, min(delay * 2, MAX_BACKOFF)
            else:
                timeout, delay = every, self.tuning.retry_delay
            await _wait(stop, timeout)

    async def _consume(self, js: JetStreamContext, shard: int, stop: asyncio.Event) -> None:
        sub = await js.pull_subscribe_bind(durable=ingest_durable(shard), stream=CLICKS_STREAM)
        self._bound.add(shard)
        bound: FilteringBoundLogger = log.bind(shard=shard)
        handed_back = False
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(self.tuning.batch_size, timeout=self.tuning.max_wait)
                except TimeoutError:  # nats-py raises both its own and asyncio's here
                    continue  # idle
                except nats.errors.Error as exc:
                    # Disconnected, consumer briefly missing, too many waiting pulls: all pass.
                    bound.warning("ingest.fetch_failed", error=repr(exc))
                    await _wait(stop, self.tuning.retry_delay)
                    continue
                if not msgs:  # nats-py returns [] when a pull expires on a status message
                    continue
                await self._fill(sub, msgs, stop)
                metrics.LAG.labels(str(shard)).set(msgs[-1].metadata.num_pending)
                handed_back = not await self._process(msgs, stop, bound, shard)
            # A pull that expired as its last messages came in leaves them buffered in the client (the next
            # fetch would take them first). Stopping, there is no next fetch: store these too, or they come
            # back to the next ingest after the ack wait as redeliveries. Not after a hand-back (Postgres
            # is away): `pending_msgs` counts stale status replies too, and the fetch then sends a new pull,
            # which can catch the very messages just naked and take them out of reach until the ack wait.
            if sub.pending_msgs and not handed_back:
                with contextlib.suppress(TimeoutError, nats.errors.Error):
                    left = await sub.fetch(sub.pending_msgs, timeout=self.tuning.max_wait)
                    await self._process(left, stop, bound, shard)
        finally:
            self._bound.discard(shard)
            # Unsubscribe before the drain: a pull subscription's leftover status replies (from the
            # last expired fetch) are never consumed, and draining would wait on them until its timeout.
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _fill(self, sub: JetStreamContext.PullSubscription, msgs: list[Msg], stop: asyncio.Event) -> None:
        """Add to a batch until its messages hold `batch_bytes`: at once behind a backlog, after `linger` otherwise.

        A full fetch means more is waiting (a backlog, or a drain after an outage): fetching on at once
        makes transactions of about 32,000 clicks, where each link's rollup rows are updated once for
        many of its clicks. A short fetch means live traffic: the batch pauses `linger` for more clicks.
        The pause is a plain wait, not a pull left open: a pull that expires as messages reach it can
        leave them in the client's buffer, out of reach of this batch's keep-alive, and after a Postgres
        outage longer than the ack wait they came back as redeliveries (the 30 s outage fault test saw 1
        and 21). A fetch made when messages are waiting returns them at once. The first messages are not
        kept alive during the pause, so it never exceeds the keep-alive's own interval (a third of the
        ack wait).
        """
        size = sum(len(msg.data) for msg in msgs)
        linger = min(self.tuning.linger, self.settings.clicks.ack_wait / IN_PROGRESS_PER_ACK_WAIT)
        if size >= self.tuning.batch_bytes or linger <= 0:
            return
        backlog = len(msgs) >= self.tuning.batch_size
        if not backlog and await _wait(stop, linger):
            return
        while size < self.tuning.batch_bytes:
            try:
                more = await sub.fetch(self.tuning.batch_size, timeout=self.tuning.max_wait)
            except (TimeoutError, nats.errors.Error):
                return  # nothing came during the pause (or the fetch failed): store what is in hand
            msgs.extend(more)
            size += sum(len(msg.data) for msg in more)
            if len(more) < self.tuning.batch_size:
                return  # took everything that had come

    async def _process(self, msgs: list[Msg], stop: asyncio.Event, bound: FilteringBoundLogger, shard: int) -> bool:
        """Store a fetched batch and ack it; True when acked, False when handed back (stop during an outage)."""
        # Kept alive from the start: a batch may wait for a store slot as long as other shards' batches take.
        keep_alive = asyncio.create_task(_keep_alive(msgs, self.settings.clicks.ack_wait / IN_PROGRESS_PER_ACK_WAIT))
        try:
            async with self._store_slots:
                return await self._process_in_slot(msgs, keep_alive, stop, bound, shard)
        finally:
            keep_alive.cancel()

    async def _process_in_slot(
        self,
        msgs: list[Msg],
        keep_alive: asyncio.Task[None],
        stop: asyncio.Event,
        bound: FilteringBoundLogger,
        shard: int,
    ) -> bool:
        started = time.perf_counter()
        batch = prepare(msgs)
        span = self._batch_span(shard, msgs, batch) if self._tracer is not None else None
        if span is None:
            result = await self._store_and_ack(msgs, batch, keep_alive, stop, bound)
        else:
            # Current while storing, so the asyncpg spans of this batch's transaction are its children.
            with trace.use_span(span, end_on_exit=True):
                result = await self._store_and_ack(msgs, batch, keep_alive, stop, bound)
                if result is not None:
                    span.set_attributes({"linkpulse.ingest.inserted": result.inserted,
                                         "linkpulse.ingest.duplicates": result.duplicates,
                                         "linkpulse.ingest.dead_letters": result.dead_letters})  # fmt: skip
                else:
                    span.set_attribute("linkpulse.ingest.handed_back", True)
        if result is None:
            return False
        metrics.EVENTS.labels("inserted").inc(result.inserted)
        metrics.EVENTS.labels("duplicate").inc(result.duplicates)
        metrics.DEAD_LETTERS.inc(result.dead_letters)
        metrics.BATCH_SIZE.observe(len(msgs))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        bound.debug("ingest.batch", messages=len(msgs), **result._asdict())
        if result.dead_letters:
            bound.warning("ingest.dead_letters", count=result.dead_letters)
        return True

    async def _store_and_ack(
        self,
        msgs: list[Msg],
        batch: PreparedBatch,
        keep_alive: asyncio.Task[None],
        stop: asyncio.Event,
        bound: FilteringBoundLogger,
    ) -> StoreResult | None:
        """Store, then ack every message; None when the batch was handed back instead (nak)."""
        try:
            result = await self._store_with_retry(batch, stop, bound)
        finally:
            keep_alive.cancel()
        if result is None:
            # Stopping while Postgres is away: give the messages back now rather than after ack wait.
            for msg in msgs:
                await _quietly(msg.nak(delay=self.tuning.retry_delay))
            return None
        # Ack only after commit: a redelivery is harmless (event ids dedupe), a loss is not.
        # One ack per message, never ack-all: other pods hold other messages of this consumer.
        for msg in msgs:
            await _quietly(msg.ack())
        return result

    def _batch_span(self, shard: int, msgs: list[Msg], batch: PreparedBatch) -> Span:
        """A started `process` span for a fetched batch, linked to every producer context found in it.

        The clicks' own `create` contexts come first (they are what a trace is followed by), then each
        message's `send` context; past MAX_LINKS they are counted in `linkpulse.links_dropped`.
        """
        assert self._tracer is not None
        traceparents = chain(batch.traceparents, (header_traceparent(msg.headers) for msg in msgs))
        links, dropped = batch_links(traceparents)
        attributes = messaging_attributes(
            "process",
            click_subject(shard),
            CLICKS_SUBJECTS,
            **{
                "messaging.batch.message_count": len(msgs),
                "messaging.consumer.group.name": ingest_durable(shard),
                "linkpulse.shard": shard,
                "linkpulse.ingest.events": sum(len(item.rows) for item in batch.items),
                "linkpulse.links_dropped": dropped,
            },
        )
        # A root span: a batch belongs to no single trace; its links lead to each click's.
        return self._tracer.start_span(
            f"process {CLICKS_SUBJECTS}", context=Context(), kind=SpanKind.CONSUMER, links=links, attributes=attributes
        )

    async def _store_with_retry(
        self, batch: PreparedBatch, stop: asyncio.Event, bound: FilteringBoundLogger
    ) -> StoreResult | None:
        # The batch stays in hand (kept alive by in_progress) while Postgres is down: naking it on
        # every failure would burn through the consumer's max_deliver and lose the messages.
        delay = self.tuning.retry_delay
        if stop.is_set() and self._db_failing:
            return None  # got its slot only after stop, with Postgres away at the last try: hand it back now
        while True:
            try:
                result = await self._store(batch, bound)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self._db_failing = True
                metrics.DB_ERRORS.inc()
                bound.warning("ingest.db_failed", error=repr(exc), retry_in=delay)
            else:
                self._db_failing = False
                return result
            if stop.is_set() or await _wait(stop, delay):
                return None
            delay = min(delay * 2, MAX_BACKOFF)

    async def _store(self, batch: PreparedBatch, bound: FilteringBoundLogger) -> StoreResult:
        assert self._pool is not None
        timeout = self.settings.database.command_timeout
        try:
            return await store_batch(self._pool, batch.rows, batch.dead_letters, timeout=timeout)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            bound.warning("ingest.batch_rejected", error=repr(exc))
        # Postgres refused some value: store message by message, so only the culprits become dead letters.
        inserted = duplicates = 0
        dead = batch.dead_letters
        for item in batch.items:
            if not item.rows:
                continue
            try:
                one = await store_batch(self._pool, item.rows, [], timeout=timeout)
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                dead.append(dead_letter(item.msg, f"{type(exc).__name__}: {exc}"))
            else:
                inserted += one.inserted
                duplicates += one.duplicates
        await store_batch(self._pool, [], dead, timeout=timeout)
        return StoreResult(inserted=inserted, duplicates=duplicates, dead_letters=len(dead))


async def _keep_alive(msgs: list[Msg], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        for msg in msgs:
            await _quietly(msg.in_progress())


async def _quietly(call: Awaitable[None]) -> None:
    # An ack lost to a disconnect only means a redelivery, which the event ids make harmless.
    try:
        await call
    except nats.errors.Error as exc:
        log.warning("ingest.ack_failed", error=repr(exc))


async def _wait(stop: asyncio.Event, timeout: float) -> bool:
    """Sleep up to `timeout`, waking early on stop; True when stop is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout)
    return stop.is_set()


async def _until_stopped(connecting: Awaitable[Client], stop: asyncio.Event) -> Client | None:
    # The first NATS connection retries forever; a stop during it must still end the worker.
    task = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def _drain(nc: Client) -> None:
    try:
        await nc.drain()
    except nats.errors.Error as exc:
        # Reconnecting or already closed: nothing more can be flushed, so just close.
        log.warning("ingest.drain_failed", error=repr(exc))
        await nc.close()
