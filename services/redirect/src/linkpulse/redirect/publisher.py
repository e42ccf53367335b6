"""Click publisher: a bounded in-memory queue, envelopes per shard, retries with the same id, spill.

Where a click can be, and what a crash costs:
- in the memory queue (at most `queue_max` clicks, plus the one round being published): lost on SIGKILL;
- in the spill file: written (and flushed to the OS) before it leaves memory, fsynced within a round;
  survives a killed process, replayed on start and after every reconnect;
- in JetStream: acked, done.

While NATS is unreachable (no connection yet, or nats-py reconnecting) nothing is handed to
nats-py: its pending buffer would hold duplicates and then fail with OutboundBufferLimitError.
Clicks wait in memory for up to `give_up_after` seconds (a NATS restart costs no disk I/O), then
go to the spill file; a full queue sends new clicks straight to the spill file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from collections.abc import Iterator

import structlog
from opentelemetry.trace import StatusCode
from prometheus_client import Counter, Gauge

from linkpulse.backoff import Backoff
from linkpulse.events import ClickBatch, ClickEvent, encode
from linkpulse.ids import new_event_id, shard_for
from linkpulse.messaging.errors import OutboundBufferLimitError
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import click_subject
from linkpulse.messaging.tracing import traceparent_of
from linkpulse.messaging.types import Client, JetStreamContext
from linkpulse.redirect.settings import PublisherSettings
from linkpulse.redirect.spill import SpillFile
from linkpulse.redirect.tracing import ClickTracing

__all__ = ["ClickPublisher"]

log = structlog.get_logger(__name__)

QUEUE_DEPTH = Gauge("linkpulse_publisher_queue_depth", "Clicks waiting in memory to be published")
SPILL_BYTES = Gauge("linkpulse_publisher_spill_bytes", "Bytes of clicks waiting in the spill file")
CONNECTED = Gauge("linkpulse_publisher_connected", "1 while the publisher has a NATS connection")
PUBLISHED = Counter("linkpulse_publisher_events", "Clicks acknowledged by JetStream")
SPILLED = Counter("linkpulse_publisher_spilled_events", "Clicks written to the spill file")
REPLAYED = Counter("linkpulse_publisher_replayed_events", "Spilled clicks published from the spill file")
ERRORS = Counter("linkpulse_publisher_errors", "Publish attempts that failed (and were retried or spilled)")

# Pauses after a failed publish (the first at most this, then doubling up to RETRY_CAP, jittered): long
# enough not to spin while NATS restarts.
RETRY_PAUSE = 0.25
RETRY_CAP = 1.0
# How often a waiting loop looks at the connection state (nats-py's callbacks are not needed for it).
POLL = 0.05
# Replay retry when NATS went away again mid-replay (a reconnect also triggers one): within a second of
# the first failure, doubling while it keeps failing, never more than REPLAY_RETRY apart.
REPLAY_RETRY_FIRST = 1.0
REPLAY_RETRY = 5.0
# Seconds between looks at the spill folder while connected (anything there is replayed).
REPLAY_CHECK = 2.0
# While disconnected, clicks past `give_up_after` are spilled in steps of this many seconds.
HOLD_STEP = 0.5
# Seconds between "publisher.spilling" warnings (each carries the count since the last one).
SPILL_LOG_EVERY = 5.0
# At shutdown without a connection: how long to wait for NATS before spilling the queue.
CLOSE_RECONNECT_WAIT = 2.0


class ClickPublisher:
    """Takes clicks without blocking the request and gets each one into JetStream (or the spill file).

    The NATS connection comes later (`attach`): until then clicks queue and spill as in an outage.
    """

    def __init__(
        self, settings: PublisherSettings, shards: int, spill: SpillFile, *, tracing: ClickTracing | None = None
    ) -> None:
        self._js: JetStreamContext | None = None
        self._nc: Client | None = None
        self._tracing = tracing
        self._settings = settings
        self._shards = shards
        self._spill = spill
        self._queue: deque[tuple[float, ClickEvent]] = deque()  # (monotonic enqueue time, click)
        self._ready = asyncio.Event()
        self._closing = False
        self._drain_deadline: float | None = None
        self._stopping = asyncio.Event()
        self._replay_wanted = asyncio.Event()
        self._replay_retry: asyncio.TimerHandle | None = None
        self._replay_backoff = Backoff(REPLAY_RETRY_FIRST, REPLAY_RETRY)
        self._spill_dirty = False
        self._spill_log: dict[str, int] = {}
        self._spill_logged_at = -SPILL_LOG_EVERY
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, nc: Client) -> None:
        """Use this (connected) NATS client from now on, and replay what was spilled meanwhile."""
        self._nc, self._js = nc, nc.jetstream()
        self.request_replay()

    def submit(self, event: ClickEvent) -> None:
        """Queue a click; never awaits. A full queue sends it to the spill file instead."""
        if len(self._queue) >= self._settings.queue_max or self._closing:
            # No fsync on the request path: the line is in the page cache (safe from a process
            # crash) and the publish loop syncs it within one round.
            self._spill_events([event], sync=False)
            self._ready.set()  # the loop syncs and updates the spill gauge
            return
        self._queue.append((time.monotonic(), event))
        if not self._ready.is_set():
            self._ready.set()

    def request_replay(self) -> None:
        """Ask for the spill file to be replayed (on start and after NATS reconnects)."""
        self._replay_wanted.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def connected(self) -> bool:
        """True when a NATS connection is up (nats-py's view: pings detect a dead peer within seconds)."""
        return self._js is not None and (self._nc is None or self._nc.is_connected)

    def start(self) -> None:
        """Start the publish loop and the spill replayer."""
        SPILL_BYTES.set(self._spill.size_bytes())
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._replayer())]
        self.request_replay()

    async def close(self) -> None:
        """Drain: publish what is queued within the drain timeout, spill the rest, stop."""
        self._closing = True
        self._drain_deadline = time.monotonic() + self._settings.drain_timeout
        self._stopping.set()
        self._ready.set()
        self._replay_wanted.set()
        if self._replay_retry is not None:
            self._replay_retry.cancel()
        # Both tasks honour the drain deadline: an envelope in flight is spilled when it passes.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        deadline = self._drain_deadline
        while self._queue and time.monotonic() < deadline:
            if not self.connected:
                await self._wait_connected(min(CLOSE_RECONNECT_WAIT, deadline - time.monotonic()))
                if not self.connected:
                    break
            await self._publish_round()
        if self._queue:
            log.info("publisher.drain_spilled", events=len(self._queue), connected=self.connected)
            self._spill_events([e for _, e in self._queue])
            self._queue.clear()
        self._spill.close()
        QUEUE_DEPTH.set(0)
        SPILL_BYTES.set(self._spill.size_bytes())

    # -- the publish loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            if not self._queue:
                self._sync_spill()
                self._ready.clear()
                await self._ready.wait()
                if self._closing:
                    return
                if not self._queue:  # woken by a spill from the request path
                    continue
                # Let a burst fill the envelopes: one message per shard beats one per click.
                # Waiting on the stop event, not sleeping: shutdown must not wait out the linger.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._settings.linger)
            if self.connected:
                await self._publish_round()
            else:
                await self._hold_while_disconnected()
            self._sync_spill()

    async def _hold_while_disconnected(self) -> None:
        """No connection: spill clicks older than `give_up_after`, then wait for NATS or the next one to age."""
        cutoff = time.monotonic() - self._settings.give_up_after
        aged = []
        while self._queue and self._queue[0][0] <= cutoff:
            aged.append(self._queue.popleft()[1])
        if aged:
            self._log_spill(len(aged), "nats unreachable")
            self._spill_events(aged)
            QUEUE_DEPTH.set(len(self._queue))
        # Spill in batches of half a second (one fsync each), not click by click as they age.
        await self._wait_connected(HOLD_STEP)

    async def _publish_round(self) -> None:
        take = min(len(self._queue), self._settings.batch_max * self._shards * 4)
        events = [self._queue.popleft()[1] for _ in range(take)]
        QUEUE_DEPTH.set(len(self._queue))
        envelopes = self._envelopes(events)
        results = await asyncio.gather(*(self._send(shard, env) for shard, env in envelopes))
        failed = [env for (_, env), ok in zip(envelopes, results, strict=True) if not ok]
        if failed:
            for envelope in failed:
                self._spill.append(envelope)
            count = sum(len(env.events) for env in failed)
            SPILLED.inc(count)
            self._log_spill(count, "publish failed")
            self._spill_dirty = True
            self._sync_spill()

    async def _send(self, shard: int, envelope: ClickBatch) -> bool:
        """Publish until acked or `give_up_after` (or the drain deadline) passes; every attempt reuses the id.

        While disconnected it waits for the connection instead of feeding nats-py's pending buffer. An
        envelope carrying a traced click gets a `publish` span, whose traceparent goes in the message header.
        """
        span = self._tracing.publish_span(shard, envelope, self._nc) if self._tracing is not None else None
        if span is None:
            return await self._deliver(shard, envelope, "")
        try:
            acked = await self._deliver(shard, envelope, traceparent_of(span))
            if not acked:
                span.set_status(StatusCode.ERROR, "not acknowledged in time: spilled")
            return acked
        finally:
            span.end()

    async def _deliver(self, shard: int, envelope: ClickBatch, traceparent: str) -> bool:
        payload = encode(envelope)
        subject = click_subject(shard)
        give_up = time.monotonic() + self._settings.give_up_after
        backoff = Backoff(RETRY_PAUSE, RETRY_CAP)
        while True:
            if self._drain_deadline is not None:
                give_up = min(give_up, self._drain_deadline)
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                return False
            if not self.connected:
                await self._wait_connected(remaining)
                continue
            js = self._js
            assert js is not None
            timeout = max(min(self._settings.publish_timeout, remaining), POLL)
            try:
                # nats-py's request has its own timeout, but a full pending buffer can stall before it.
                await asyncio.wait_for(
                    publish_with_id(js, subject, payload, envelope.id, timeout=timeout, traceparent=traceparent),
                    timeout + 0.5,
                )
                PUBLISHED.inc(len(envelope.events))
                return True
            except OutboundBufferLimitError:
                # nats-py's buffer is full while it reconnects: an outage, not a slow ack. Spill now.
                ERRORS.inc()
                return False
            except Exception as exc:  # nats-py raises many error types; all mean "not stored yet"
                ERRORS.inc()
                log.debug("publisher.retry", error=type(exc).__name__)
                pause = backoff.next_delay()
                if time.monotonic() + pause >= give_up:
                    return False
                await asyncio.sleep(pause)

    async def _wait_connected(self, timeout: float) -> None:
        """Return when connected, closing (outside a drain), or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.connected and time.monotonic() < deadline:
            if self._closing and self._drain_deadline is None:
                return
            await asyncio.sleep(min(POLL, max(deadline - time.monotonic(), 0)))

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
        SPILLED.inc(len(events))
        self._spill_dirty = True
        if sync:
            self._sync_spill()

    def _log_spill(self, events: int, reason: str) -> None:
        """One warning per reason every few seconds with the count since the last, not one per round."""
        self._spill_log[reason] = self._spill_log.get(reason, 0) + events
        now = time.monotonic()
        if now - self._spill_logged_at >= SPILL_LOG_EVERY:
            for why, count in self._spill_log.items():
                log.warning("publisher.spilling", events=count, reason=why, connected=self.connected)
            self._spill_log.clear()
            self._spill_logged_at = now

    def _sync_spill(self) -> None:
        """fsync what was appended and refresh the spill gauge (once per round, not per click)."""
        if self._spill_dirty:
            self._spill.sync()
            self._spill_dirty = False
            SPILL_BYTES.set(self._spill.size_bytes())
        CONNECTED.set(1 if self.connected else 0)

    # -- replay -----------------------------------------------------------------------------------

    async def _replayer(self) -> None:
        while not self._closing:
            # Besides the explicit asks (start, attach, reconnect), look every few seconds: clicks
            # spilled after a replay began (a queue still overflowing as NATS came back, a publish
            # that failed while connected) or by a dead process sharing the folder must not wait
            # for the next outage.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replay_wanted.wait(), REPLAY_CHECK)
            wanted = self._replay_wanted.is_set()
            self._replay_wanted.clear()
            if self._closing:
                return
            if not self.connected:
                continue  # attach() or the reconnect hook asks again
            if not wanted and (self._replay_retry is not None or self._spill.size_bytes() == 0):
                continue
            try:
                await self.replay_spill()
            except Exception:  # a broken segment must not stop later replays
                log.exception("spill.replay_failed")
                self._schedule_replay_retry()

    async def replay_spill(self) -> int:
        """Publish every closed spill segment (same envelope ids) and delete each once all of it is acked.

        Envelopes go out `replay_concurrency` at a time, beside the live publish loop, which keeps
        its own pace: a replay never holds new clicks back for more than a few round trips.
        """
        self._spill.close()  # later spills go to a new segment; this one becomes replayable
        replayed = 0
        for segment in self._spill.pending_segments():
            with self._spill.claim(segment) as envelopes:
                if envelopes is None:
                    continue
                if not await self._send_all(envelopes):
                    log.warning("spill.replay_paused", segment=segment.name, connected=self.connected)
                    self._schedule_replay_retry()
                    SPILL_BYTES.set(self._spill.size_bytes())
                    return replayed
                self._spill.done(segment)
                count = sum(len(env.events) for env in envelopes)
                replayed += count
                REPLAYED.inc(count)
                SPILL_BYTES.set(self._spill.size_bytes())
        self._replay_backoff.reset()
        if replayed:
            log.info("spill.replayed", events=replayed)
        return replayed

    async def _send_all(self, envelopes: list[ClickBatch]) -> bool:
        """Publish every envelope with a bounded number in flight; False at the first one that fails."""
        todo: Iterator[ClickBatch] = iter(envelopes)
        failed = False

        async def worker() -> None:
            nonlocal failed
            for envelope in todo:
                # At shutdown the memory queue gets the drain time; the segment stays for the next start.
                if failed or self._closing:
                    failed = True
                    return
                shard = shard_for(envelope.events[0].code, self._shards) if envelope.events else 0
                if not await self._send(shard, envelope):
                    failed = True
                    return

        workers = max(1, min(self._settings.replay_concurrency, len(envelopes)))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return not failed

    def _schedule_replay_retry(self) -> None:
        if self._closing:
            return
        if self._replay_retry is not None:
            self._replay_retry.cancel()

        def retry() -> None:
            self._replay_retry = None
            self._replay_wanted.set()

        self._replay_retry = asyncio.get_running_loop().call_later(self._replay_backoff.next_delay(), retry)
