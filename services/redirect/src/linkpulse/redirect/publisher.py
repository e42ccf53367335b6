"""Click publisher: a bounded in-memory queue, envelopes per shard, retries with the same id, spill."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque

import structlog
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge

from linkpulse.events import ClickBatch, ClickEvent, encode
from linkpulse.ids import new_event_id, shard_for
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import click_subject
from linkpulse.redirect.settings import PublisherSettings
from linkpulse.redirect.spill import SpillFile

__all__ = ["ClickPublisher"]

log = structlog.get_logger(__name__)

QUEUE_DEPTH = Gauge("linkpulse_publisher_queue_depth", "Clicks waiting in memory to be published")
SPILL_BYTES = Gauge("linkpulse_publisher_spill_bytes", "Bytes of clicks waiting in the spill file")
PUBLISHED = Counter("linkpulse_publisher_events", "Clicks acknowledged by JetStream")
SPILLED = Counter("linkpulse_publisher_spilled_events", "Clicks written to the spill file")
ERRORS = Counter("linkpulse_publisher_errors", "Publish attempts that failed (and were retried or spilled)")

# Retry pause after a failed publish: long enough not to spin while NATS restarts.
RETRY_PAUSE = 0.25


class ClickPublisher:
    """Takes clicks without blocking the request and gets each one into JetStream (or the spill file)."""

    def __init__(self, js: JetStreamContext, settings: PublisherSettings, shards: int, spill: SpillFile) -> None:
        self._js = js
        self._settings = settings
        self._shards = shards
        self._spill = spill
        self._queue: deque[ClickEvent] = deque()
        self._ready = asyncio.Event()
        self._closing = False
        self._stopping = asyncio.Event()
        self._replay_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, event: ClickEvent) -> None:
        """Queue a click; never awaits. A full queue sends it to the spill file instead."""
        if len(self._queue) >= self._settings.queue_max or self._closing:
            # No fsync on the request path: the line is in the page cache (safe from a process
            # crash) and the publish loop syncs it within one round.
            self._spill_events([event], sync=False)
            return
        self._queue.append(event)
        if not self._ready.is_set():
            self._ready.set()

    def request_replay(self) -> None:
        """Ask for the spill file to be replayed (on start and after NATS reconnects)."""
        self._replay_wanted.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the publish loop and the spill replayer."""
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._replayer())]
        self.request_replay()

    async def close(self) -> None:
        """Drain: publish what is queued within the drain timeout, spill the rest, stop."""
        self._closing = True
        self._stopping.set()
        self._ready.set()
        self._replay_wanted.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        deadline = time.monotonic() + self._settings.drain_timeout
        while self._queue and time.monotonic() < deadline:
            await self._publish_round(deadline)
        if self._queue:
            self._spill_events(list(self._queue))
            self._queue.clear()
        self._spill.close()
        QUEUE_DEPTH.set(0)
        SPILL_BYTES.set(self._spill.size_bytes())

    async def _run(self) -> None:
        while not self._closing:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                if self._closing:
                    return
                # Let a burst fill the envelopes: one message per shard beats one per click.
                # Waiting on the stop event, not sleeping: shutdown must not wait out the linger.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._settings.linger)
            await self._publish_round(None)
            self._spill.sync()

    async def _publish_round(self, deadline: float | None) -> None:
        take = min(len(self._queue), self._settings.batch_max * self._shards * 4)
        events = [self._queue.popleft() for _ in range(take)]
        QUEUE_DEPTH.set(len(self._queue))
        envelopes = self._envelopes(events)
        results = await asyncio.gather(*(self._send(shard, env, deadline) for shard, env in envelopes))
        for (_, envelope), ok in zip(envelopes, results, strict=True):
            if not ok:
                self._spill.append(envelope)
                SPILLED.inc(len(envelope.events))
        if not all(results):
            self._spill.sync()
            SPILL_BYTES.set(self._spill.size_bytes())

    async def _send(self, shard: int, envelope: ClickBatch, deadline: float | None) -> bool:
        """Publish until acked or the deadline passes; every attempt reuses the envelope id."""
        payload = encode(envelope)
        subject = click_subject(shard)
        give_up = deadline if deadline is not None else time.monotonic() + self._settings.give_up_after
        timeout = self._settings.publish_timeout
        while True:
            try:
                # nats-py's request has its own timeout, but a full pending buffer can stall before it.
                await asyncio.wait_for(
                    publish_with_id(self._js, subject, payload, envelope.id, timeout=timeout), timeout + 0.5
                )
                PUBLISHED.inc(len(envelope.events))
                return True
            except Exception as exc:  # nats-py raises many error types; all mean "not stored yet"
                ERRORS.inc()
                if time.monotonic() + RETRY_PAUSE >= give_up:
                    log.warning("publisher.spilling", events=len(envelope.events), error=type(exc).__name__)
                    return False
                await asyncio.sleep(RETRY_PAUSE)

    def _envelopes(self, events: list[ClickEvent]) -> list[tuple[int, ClickBatch]]:
        """Group clicks by shard and pack each group into envelopes of at most `batch_max`."""
        by_shard: dict[int, list[ClickEvent]] = defaultdict(list)
        for event in events:
            by_shard[shard_for(event.code, self._shards)].append(event)
        size = self._settings.batch_max
        return [
            (shard, ClickBatch(id=new_event_id(), events=chunk[i : i + size]))
            for shard, chunk in by_shard.items()
            for i in range(0, len(chunk), size)
        ]

    def _spill_events(self, events: list[ClickEvent], *, sync: bool = True) -> None:
        for _, envelope in self._envelopes(events):
            self._spill.append(envelope)
        if sync:
            self._spill.sync()
        SPILLED.inc(len(events))
        SPILL_BYTES.set(self._spill.size_bytes())

    async def _replayer(self) -> None:
        while not self._closing:
            await self._replay_wanted.wait()
            self._replay_wanted.clear()
            if self._closing:
                return
            await self.replay_spill()

    async def replay_spill(self) -> int:
        """Publish every closed spill segment (same envelope ids) and delete each once all of it is acked."""
        self._spill.close()  # later spills go to a new segment; this one becomes replayable
        replayed = 0
        for segment in self._spill.pending_segments():
            with self._spill.claim(segment) as envelopes:
                if envelopes is None:
                    continue
                for envelope in envelopes:
                    shard = shard_for(envelope.events[0].code, self._shards) if envelope.events else 0
                    if not await self._send(shard, envelope, None):
                        log.warning("spill.replay_paused", segment=segment.name)
                        self._schedule_replay_retry()
                        return replayed
                    replayed += len(envelope.events)
                self._spill.done(segment)
        SPILL_BYTES.set(self._spill.size_bytes())
        if replayed:
            log.info("spill.replayed", events=replayed)
        return replayed

    def _schedule_replay_retry(self) -> None:
        asyncio.get_running_loop().call_later(5.0, self._replay_wanted.set)
