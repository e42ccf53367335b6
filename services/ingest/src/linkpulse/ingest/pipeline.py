"""What every shard loop's batch goes through once fetched: a store slot, decode, its span, store with retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from itertools import chain

import asyncpg
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from structlog.typing import FilteringBoundLogger

from linkpulse.backoff import Backoff
from linkpulse.db.errors import is_data_error, is_unavailable
from linkpulse.ingest import metrics
from linkpulse.ingest.batch import PreparedBatch, dead_letter, prepare
from linkpulse.ingest.geoip import GeoLookup
from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.store import StoreResult, store_batch
from linkpulse.messaging.streams import CLICKS_SUBJECTS, click_subject, ingest_durable
from linkpulse.messaging.tracing import batch_links, header_traceparent, messaging_attributes
from linkpulse.messaging.types import Client, Msg

__all__ = ["MAX_BACKOFF", "BatchPipeline"]

MAX_BACKOFF = 10.0
"""Longest pause between Postgres retries: short enough that ingest resumes soon after a restart."""


class BatchPipeline:
    """Decodes and stores fetched batches for all shard loops of a worker, a few at a time."""

    def __init__(
        self, pool: asyncpg.Pool, settings: IngestSettings, tracer: Tracer | None, nc: Client | None = None
    ) -> None:
        """Store into `pool`; `tracer` None when tracing is off (no span work at all then); `nc` the batches' source."""
        self._pool = pool
        self._nc = nc
        self._timeout = settings.database.command_timeout
        self._retry_delay = settings.ingest.retry_delay
        self._tracer = tracer
        # Decoding and storing take a slot; fetched batches wait for one as raw bytes. A transaction
        # per shard at once (16) ran each one slower and held every decoded batch in memory at once.
        self._slots = asyncio.Semaphore(settings.ingest.concurrent_stores)
        self._db_failing = False
        self._geoip = GeoLookup(settings.geoip)

    async def store(
        self, msgs: Sequence[Msg], shard: int, stop: asyncio.Event, log: FilteringBoundLogger
    ) -> StoreResult | None:
        """Decode and store a fetched batch in one transaction; None when it is to be handed back instead."""
        async with self._slots:
            batch = prepare(msgs, self._geoip)
            with self._span(shard, msgs, batch) as span:
                result = await self._store_with_retry(batch, stop, log)
                if span is not None:
                    _record_outcome(span, result)
        return result

    def _span(self, shard: int, msgs: Sequence[Msg], batch: PreparedBatch) -> AbstractContextManager[Span | None]:
        if self._tracer is None:
            return contextlib.nullcontext()
        # Current while storing, so the asyncpg spans of this batch's transaction are its children.
        return trace.use_span(self._batch_span(self._tracer, shard, msgs, batch), end_on_exit=True)

    def _batch_span(self, tracer: Tracer, shard: int, msgs: Sequence[Msg], batch: PreparedBatch) -> Span:
        """A started `process` span for a fetched batch, linked to every producer context found in it.

        The clicks' own `create` contexts come first (they are what a trace is followed by), then each
        message's `send` context; past MAX_LINKS they are counted in `linkpulse.links_dropped`.
        """
        traceparents = chain(batch.traceparents, (header_traceparent(msg.headers) for msg in msgs))
        links, dropped = batch_links(traceparents)
        attributes = messaging_attributes(
            "process",
            click_subject(shard),
            CLICKS_SUBJECTS,
            partition=shard,
            nc=self._nc,
            **{
                "messaging.batch.message_count": len(msgs),
                "messaging.consumer.group.name": ingest_durable(shard),
                "linkpulse.ingest.events": sum(len(item.rows) for item in batch.items),
                "linkpulse.links_dropped": dropped,
            },
        )
        # A root span: a batch belongs to no single trace; its links lead to each click's.
        return tracer.start_span(
            f"process {CLICKS_SUBJECTS}", context=Context(), kind=SpanKind.CONSUMER, links=links, attributes=attributes
        )

    async def _store_with_retry(
        self, batch: PreparedBatch, stop: asyncio.Event, log: FilteringBoundLogger
    ) -> StoreResult | None:
        # The batch stays in hand (kept alive by in_progress) while Postgres is down: naking it on
        # every failure would burn through the consumer's max_deliver and lose the messages.
        if stop.is_set() and self._db_failing:
            return None  # got its slot only after stop, with Postgres away at the last try: hand it back now
        # Full jitter: after an outage every pod's batches failed at the same instant; they retry apart.
        backoff = Backoff(self._retry_delay, max(MAX_BACKOFF, self._retry_delay))
        while True:
            try:
                result = await self._store(batch, log)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self._db_failing = True
                metrics.DB_ERRORS.inc()
                log.warning("ingest.db_failed", error=repr(exc), retry_within=backoff.ceiling)
            else:
                self._db_failing = False
                return result
            if stop.is_set() or await backoff.wait(stop):
                return None

    async def _store(self, batch: PreparedBatch, log: FilteringBoundLogger) -> StoreResult:
        try:
            return await store_batch(self._pool, batch.rows, batch.dead_letters, timeout=self._timeout)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            log.warning("ingest.batch_rejected", error=repr(exc))
        # Postgres refused some value: store message by message, so only the culprits become dead letters.
        inserted = duplicates = 0
        dead = batch.dead_letters
        for item in batch.items:
            if not item.rows:
                continue
            try:
                one = await store_batch(self._pool, item.rows, [], timeout=self._timeout)
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                dead.append(dead_letter(item.msg, f"{type(exc).__name__}: {exc}"))
            else:
                inserted += one.inserted
                duplicates += one.duplicates
        await store_batch(self._pool, [], dead, timeout=self._timeout)
        return StoreResult(inserted=inserted, duplicates=duplicates, dead_letters=len(dead))


def _record_outcome(span: Span, result: StoreResult | None) -> None:
    if result is None:
        span.set_attribute("linkpulse.ingest.handed_back", True)
        return
    span.set_attributes({"linkpulse.ingest.inserted": result.inserted,
                         "linkpulse.ingest.duplicates": result.duplicates,
                         "linkpulse.ingest.dead_letters": result.dead_letters})  # fmt: skip
