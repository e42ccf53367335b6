"""The ingest worker: connects, ensures the consumers, runs one `ShardLoop` per CLICKS shard and the upkeep."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import asyncpg
import structlog

from linkpulse.backoff import Backoff
from linkpulse.db.pool import create_pool
from linkpulse.ingest.enrich import warm_up
from linkpulse.ingest.maintenance import maintenance_jobs
from linkpulse.ingest.pipeline import MAX_BACKOFF, BatchPipeline
from linkpulse.ingest.progress import ProgressReporter
from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.shard_loop import ShardLoop
from linkpulse.ingest.store import prepare_connection
from linkpulse.messaging.connect import close, connect
from linkpulse.messaging.consume import ConsumerUnavailable, PullConsumer, ensure_ingest_consumers
from linkpulse.messaging.streams import CLICKS_STREAM, ingest_durable
from linkpulse.messaging.types import Client
from linkpulse.telemetry import Tracing

__all__ = ["DRAIN_TIMEOUT", "IDLE_IN_TRANSACTION", "IngestWorker"]

log = structlog.get_logger(__name__)

IDLE_IN_TRANSACTION = "10s"
"""Postgres ends an ingest transaction idle this long (see `_open_pool`): far above a batch's own pauses."""
DRAIN_TIMEOUT = 10.0
"""Seconds the NATS drain on stop may take: it flushes the last acks, milliseconds on a live connection."""


class IngestWorker:
    """Consumes every shard of CLICKS into Postgres; any number of workers can share the consumers."""

    def __init__(self, settings: IngestSettings, tracing: Tracing | None = None) -> None:
        """Configure a worker; `tracing` defaults to off (`python -m linkpulse.ingest` passes the OTEL_* one)."""
        self.settings = settings
        self.tuning = settings.ingest
        self._tracing = tracing or Tracing()
        self._nc: Client | None = None
        self._stop: asyncio.Event | None = None
        self._bound: set[int] = set()

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
            # The drain flushes the acks still buffered in the client before closing.
            await close(nc, DRAIN_TIMEOUT)
            await self._tracing.flush()
            log.info("ingest.stopped")

    async def _work(self, nc: Client, stop: asyncio.Event) -> None:
        pool = await self._open_pool()
        try:
            if not await self._ensure_consumers(nc, stop):
                return
            log.info("ingest.started", shards=self.settings.clicks.shards)
            pipeline = BatchPipeline(pool, self.settings, self._tracing.tracer("linkpulse.ingest"), nc)
            progress = ProgressReporter(pool, timeout=self.settings.database.command_timeout)
            async with asyncio.TaskGroup() as tasks:
                for job in maintenance_jobs(pool, self.settings, stop):
                    tasks.create_task(job)
                tasks.create_task(progress.run(stop))
                for shard in range(self.settings.clicks.shards):
                    tasks.create_task(self._consume(nc, shard, pipeline, progress, stop))
        finally:
            await pool.close()

    async def _open_pool(self) -> asyncpg.Pool:
        # min_size=0: the pool opens nothing now, so the worker starts while Postgres is down.
        # One connection per shard loop, so no batch waits for another shard's commit, and partition
        # upkeep's and retention's (the progress report borrows one of those a moment each second).
        return await create_pool(
            self.settings.database,
            min_size=0,
            max_size=self.settings.clicks.shards + 2,
            init=prepare_connection,
            # A batch's transaction is never idle for long; one that is belongs to a frozen or partitioned
            # process, and its row locks on the rollups would stall every other pod until its TCP died.
            # Postgres ends it; the process, if it wakes, retries with a fresh connection (ids dedupe).
            server_settings={"idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION},
        )

    async def _ensure_consumers(self, nc: Client, stop: asyncio.Event) -> bool:
        """Ensure every shard's consumer, retrying while NATS cannot; False when stopped first."""
        backoff = Backoff(self.tuning.retry_delay, max(MAX_BACKOFF, self.tuning.retry_delay))
        while not stop.is_set():
            try:
                await ensure_ingest_consumers(nc, self.settings.clicks)
                return True
            except ConsumerUnavailable as exc:
                log.warning("ingest.consumers_unavailable", error=str(exc), retry_within=backoff.ceiling)
                if await backoff.wait(stop):
                    break
        return False

    async def _consume(
        self, nc: Client, shard: int, pipeline: BatchPipeline, progress: ProgressReporter, stop: asyncio.Event
    ) -> None:
        consumer = await PullConsumer.bind(nc, CLICKS_STREAM, ingest_durable(shard), self.settings.clicks.ack_wait)
        self._bound.add(shard)
        try:
            await ShardLoop(shard, consumer, pipeline, progress, self.tuning, stop, log).run()
        finally:
            self._bound.discard(shard)


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
