"""Pulling from a durable JetStream consumer: bind, fetch (idle → empty), fill to bytes, keep alive, settle.

`PullConsumer` is what ingest's shard loops hold; what they receive is a `messaging.types.Msg`, so no
service names nats-py. Acks, naks and keep-alives are sent quietly: a lost one only means a
redelivery, which the event ids make harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence

import nats.errors
import structlog

from linkpulse.backoff import wait_or_stop
from linkpulse.messaging.streams import ensure_consumers
from linkpulse.messaging.types import Client, JetStreamContext, Msg
from linkpulse.settings import ClicksSettings

__all__ = [
    "IN_PROGRESS_PER_ACK_WAIT",
    "ConsumerUnavailable",
    "PullConsumer",
    "ack_all",
    "backlog",
    "ensure_ingest_consumers",
    "nak_all",
    "published_at",
]

log = structlog.get_logger(__name__)

IN_PROGRESS_PER_ACK_WAIT = 3
"""A held batch tells JetStream it is still being worked on three times per ack wait, well before it runs out."""


class ConsumerUnavailable(Exception):
    """NATS could not serve a consumer call now (disconnected, consumer briefly missing, too many pulls)."""


async def ensure_ingest_consumers(nc: Client, settings: ClicksSettings) -> None:
    """Create or update every shard's `ingest-<shard>` consumer, never the stream; ConsumerUnavailable if NATS can't."""
    try:
        await ensure_consumers(nc.jetstream(), settings)
    except (nats.errors.Error, OSError) as exc:
        raise ConsumerUnavailable(repr(exc)) from exc


class PullConsumer:
    """One bound durable pull consumer of a stream, fetched from by one loop at a time."""

    def __init__(self, sub: JetStreamContext.PullSubscription, ack_wait: float) -> None:
        """Wrap a bound subscription; `ack_wait` is the consumer's, which paces the keep-alive."""
        self._sub = sub
        self.keep_alive_every = ack_wait / IN_PROGRESS_PER_ACK_WAIT
        """Seconds between two in_progress() of a held batch."""

    @classmethod
    async def bind(cls, nc: Client, stream: str, durable: str, ack_wait: float) -> PullConsumer:
        """Bind to an existing durable consumer (ensured beforehand); no server call is made."""
        return cls(await nc.jetstream().pull_subscribe_bind(durable=durable, stream=stream), ack_wait)

    async def fetch(self, count: int, timeout: float) -> list[Msg]:
        """Up to `count` messages, waiting up to `timeout`; [] when idle, ConsumerUnavailable when NATS fails."""
        try:
            return await self._sub.fetch(count, timeout=timeout)
        except TimeoutError:  # nats-py raises both its own and asyncio's here
            return []  # idle; also [] when a pull expires on a status message
        except nats.errors.Error as exc:
            raise ConsumerUnavailable(repr(exc)) from exc

    async def fill(
        self, msgs: list[Msg], *, max_bytes: int, count: int, timeout: float, linger: float, stop: asyncio.Event
    ) -> None:
        """Add to `msgs` until they hold `max_bytes`: at once behind a backlog, after `linger` otherwise.

        A full fetch (`count` messages) means more is waiting (a backlog, or a drain after an outage):
        fetching on at once makes transactions of about 32,000 clicks, where each link's rollup rows are
        updated once for many of its clicks. A short fetch means live traffic: the batch pauses `linger`
        for more clicks. The pause is a plain wait, not a pull left open: a pull that expires as messages
        reach it can leave them in the client's buffer, out of reach of this batch's keep-alive, and after
        a Postgres outage longer than the ack wait they came back as redeliveries (the 30 s outage fault
        test saw 1 and 21). A fetch made when messages are waiting returns them at once. The first
        messages are not kept alive during the pause, so it never exceeds the keep-alive's own interval.
        """
        size = sum(len(msg.data) for msg in msgs)
        linger = min(linger, self.keep_alive_every)
        if size >= max_bytes or linger <= 0:
            return
        if len(msgs) < count and await wait_or_stop(stop, linger):
            return
        while size < max_bytes:
            try:
                more = await self._sub.fetch(count, timeout=timeout)
            except (TimeoutError, nats.errors.Error):
                return  # nothing came during the pause (or the fetch failed): store what is in hand
            msgs.extend(more)
            size += sum(len(msg.data) for msg in more)
            if len(more) < count:
                return  # took everything that had come

    async def take_buffered(self, timeout: float) -> list[Msg]:
        """The messages a last, expired pull left in the client's buffer (the next fetch would take them first).

        Only while the loop is not handing batches back: `pending_msgs` counts stale status replies too, and
        the fetch then sends a new pull, which can catch messages just naked and hold them until the ack wait.
        """
        if not self._sub.pending_msgs:
            return []
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            return await self._sub.fetch(self._sub.pending_msgs, timeout=timeout)
        return []

    @contextlib.asynccontextmanager
    async def kept_alive(self, msgs: Sequence[Msg]) -> AsyncIterator[None]:
        """While inside, send in_progress() for every message each `keep_alive_every` seconds."""
        task = asyncio.create_task(self._keep_alive(msgs))
        try:
            yield
        finally:
            task.cancel()

    async def _keep_alive(self, msgs: Sequence[Msg]) -> None:
        while True:
            await asyncio.sleep(self.keep_alive_every)
            for msg in msgs:
                await _quietly(msg.in_progress())

    async def close(self) -> None:
        """Unsubscribe, before the connection's drain: a pull subscription's leftover status replies (from
        the last expired fetch) are never consumed, and draining would wait on them until its timeout."""
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


def backlog(msgs: Sequence[Msg]) -> int:
    """Messages the consumer still had to deliver after the last of `msgs`."""
    return msgs[-1].metadata.num_pending if msgs else 0


def published_at(msgs: Sequence[Msg]) -> float | None:
    """When the last of `msgs` was stored in its stream (epoch seconds, the server's clock); None for no message."""
    # The timestamp in a JetStream message's ack subject is the stream's, set when the message was stored
    # (nats-py's docstring says "delivered"; the server puts the stored message's time there).
    return msgs[-1].metadata.timestamp.timestamp() if msgs else None


async def ack_all(msgs: Sequence[Msg]) -> None:
    """Ack each message, one by one: never ack-all, other pods hold other messages of the same consumer."""
    for msg in msgs:
        await _quietly(msg.ack())


async def nak_all(msgs: Sequence[Msg], delay: float) -> None:
    """Give each message back for redelivery after `delay` seconds."""
    for msg in msgs:
        await _quietly(msg.nak(delay=delay))


async def _quietly(call: Awaitable[None]) -> None:
    # An ack lost to a disconnect only means a redelivery, which the event ids make harmless.
    try:
        await call
    except nats.errors.Error as exc:
        log.warning("messaging.ack_failed", error=repr(exc))
