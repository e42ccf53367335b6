"""One shard's loop: fetch → fill → decode and store (kept alive) → ack, until stop."""

from __future__ import annotations

import asyncio
import time

from structlog.typing import FilteringBoundLogger

from linkpulse.backoff import Backoff
from linkpulse.ingest import metrics
from linkpulse.ingest.pipeline import MAX_BACKOFF, BatchPipeline
from linkpulse.ingest.progress import ProgressReporter
from linkpulse.ingest.settings import IngestTuning
from linkpulse.messaging.consume import ConsumerUnavailable, PullConsumer, ack_all, backlog, nak_all, published_at
from linkpulse.messaging.types import Msg

__all__ = ["ShardLoop"]


class ShardLoop:
    """Consumes one shard's durable consumer into Postgres through the worker's shared pipeline."""

    def __init__(
        self,
        shard: int,
        consumer: PullConsumer,
        pipeline: BatchPipeline,
        progress: ProgressReporter,
        tuning: IngestTuning,
        stop: asyncio.Event,
        log: FilteringBoundLogger,
    ) -> None:
        """A loop for `shard`, reading `consumer` (bound already) until `stop` is set; it notes its progress."""
        self.shard = shard
        self._consumer = consumer
        self._pipeline = pipeline
        self._progress = progress
        self._tuning = tuning
        self._stop = stop
        self._log = log.bind(shard=shard)
        self._fetch_backoff = Backoff(tuning.retry_delay, max(MAX_BACKOFF, tuning.retry_delay))

    async def run(self) -> None:
        """Store and ack batch after batch until stop; then what the last pull left buffered; then unsubscribe."""
        handed_back = False
        try:
            while not self._stop.is_set():
                msgs = await self._next_batch()
                if msgs:
                    handed_back = not await self._process(msgs)
            # A pull that expired as its last messages came in leaves them buffered in the client (the next
            # fetch would take them first). Stopping, there is no next fetch: store these too, or they come
            # back to the next ingest after the ack wait as redeliveries. Not after a hand-back (Postgres is
            # away): see `take_buffered`.
            if not handed_back and (left := await self._consumer.take_buffered(self._tuning.max_wait)):
                await self._process(left)
        finally:
            await self._consumer.close()

    async def _next_batch(self) -> list[Msg]:
        """A fetched batch filled to `batch_bytes` (or what came); [] when idle or NATS is away."""
        tuning = self._tuning
        try:
            msgs = await self._consumer.fetch(tuning.batch_size, tuning.max_wait)
        except ConsumerUnavailable as exc:
            # Disconnected, consumer briefly missing, too many waiting pulls: all pass.
            self._log.warning("ingest.fetch_failed", error=str(exc), retry_within=self._fetch_backoff.ceiling)
            await self._fetch_backoff.wait(self._stop)
            return []
        self._fetch_backoff.reset()
        if not msgs:
            self._progress.observe(self.shard, 0, None)  # idle: nothing waits in the consumer
        else:
            await self._consumer.fill(msgs, max_bytes=tuning.batch_bytes, count=tuning.batch_size,
                                      timeout=tuning.max_wait, linger=tuning.linger, stop=self._stop)  # fmt: skip
            metrics.LAG.labels(str(self.shard)).set(backlog(msgs))
        return msgs

    async def _process(self, msgs: list[Msg]) -> bool:
        """Store a fetched batch and ack it; True when acked, False when handed back (stop during an outage)."""
        started = time.perf_counter()
        # Kept alive from the start: a batch may wait for a store slot as long as other shards' batches take.
        async with self._consumer.kept_alive(msgs):
            result = await self._pipeline.store(msgs, self.shard, self._stop, self._log)
        if result is None:
            # Stopping while Postgres is away: give the messages back now rather than after ack wait.
            await nak_all(msgs, self._tuning.retry_delay)
            return False
        # Ack only after commit: a redelivery is harmless (event ids dedupe), a loss is not.
        await ack_all(msgs)
        self._progress.observe(self.shard, backlog(msgs), published_at(msgs))
        metrics.EVENTS.labels("inserted").inc(result.inserted)
        metrics.EVENTS.labels("duplicate").inc(result.duplicates)
        metrics.DEAD_LETTERS.inc(result.dead_letters)
        metrics.BATCH_SIZE.observe(len(msgs))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self._log.debug("ingest.batch", messages=len(msgs), **result._asdict())
        if result.dead_letters:
            self._log.warning("ingest.dead_letters", count=result.dead_letters)
        return True
