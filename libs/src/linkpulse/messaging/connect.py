"""NATS connections: a service's (first connection retried with backoff, reconnecting forever, closed by
draining) and a tool's one-shot JetStream handle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import nats.errors
import structlog
from nats.aio.client import Client
from nats.errors import NoServersError

from linkpulse.backoff import Backoff
from linkpulse.messaging.permissions import inbox_prefix
from linkpulse.messaging.types import JetStreamContext
from linkpulse.settings import NatsSettings

__all__ = ["MAX_OUTSTANDING_PINGS", "PENDING_SIZE", "PING_INTERVAL", "close", "connect", "jetstream_at"]

log = structlog.get_logger(__name__)

# nats-py pings every 2 minutes by default, so a peer that vanished without closing the socket
# (a black hole, a dead node) went unnoticed for minutes while publishes piled up in its buffer.
# A ping a second and three unanswered ones: a dead connection is dropped (and reconnected) in ~4 s.
PING_INTERVAL = 1
MAX_OUTSTANDING_PINGS = 3
# Bytes buffered while disconnected before publishes fail (then the redirect's spill file takes them).
PENDING_SIZE = 8 * 1024 * 1024
# A first connection is retried from `reconnect_wait`, doubling with full jitter up to this: pods (re)started
# during a NATS outage must not all knock at the same instants once it is back.
FIRST_CONNECT_CAP = 5.0
# With unlimited reconnects nats-py would retry a first connection itself, forever, every reconnect_wait,
# in step with every other pod. Bounded so (a second try per server, reconnect_wait later), it gives up
# and the backoff below decides when to try again; the service's own policy is set once connected.
_FIRST_CONNECT_RECONNECTS = 1


async def connect(
    settings: NatsSettings,
    name: str,
    *,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect to NATS, retrying the first connection too, so start order does not matter.

    The first connection's retries wait from `settings.reconnect_wait` up to FIRST_CONNECT_CAP (full jitter);
    once connected, nats-py reconnects every `reconnect_wait`, `settings.max_reconnect_attempts` times.

    Credentials come as userinfo of the URL (`nats://redirect:<password>@nats:4222`); replies come to
    `_INBOX.<name>.*`, the only inbox subjects the service's NATS user may read (messaging.permissions).

    Args:
        settings: server URLs and reconnect policy.
        name: client name shown by the server (`linkpulse-redirect`, ...).
        on_reconnect: called after every reconnect; caches use it to drop what they may have missed.
    """

    async def _error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc) or type(exc).__name__)

    async def _disconnected() -> None:
        log.warning("nats.disconnected")

    async def _reconnected() -> None:
        log.info("nats.reconnected")
        if on_reconnect is not None:
            await on_reconnect()

    servers = [u.strip() for u in settings.url.split(",") if u.strip()]
    first = max(settings.reconnect_wait, 0.01)  # Backoff refuses 0, which would be a busy loop anyway
    backoff = Backoff(first, max(first, FIRST_CONNECT_CAP))
    while True:
        try:
            nc = await nats.connect(
                servers=servers,
                name=name,
                inbox_prefix=inbox_prefix(name),
                connect_timeout=settings.connect_timeout,
                reconnect_time_wait=settings.reconnect_wait,
                max_reconnect_attempts=_FIRST_CONNECT_RECONNECTS,
                allow_reconnect=True,
                pending_size=PENDING_SIZE,
                ping_interval=PING_INTERVAL,
                max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                error_cb=_error,
                disconnected_cb=_disconnected,
                reconnected_cb=_reconnected,
            )
        except (NoServersError, OSError, TimeoutError) as exc:
            # Services must not care who starts first.
            delay = backoff.next_delay()
            log.warning("nats.connect_failed", error=type(exc).__name__, retry_in=round(delay, 3))
            await asyncio.sleep(delay)
            continue
        # nats-py reads it at each reconnect: from now on the service's own policy holds.
        nc.options["max_reconnect_attempts"] = settings.max_reconnect_attempts
        return nc


async def close(nc: Client, timeout: float) -> None:
    """Drain `nc` (subscriptions first, then buffered publishes), then close it; every service's shutdown.

    nats-py bounds the subscriptions' part by its own `drain_timeout`, set here to `timeout`. The
    flush of publishes that follows has a fixed 10 s of its own, and on a black-holed connection it
    would spend all of it and then leave the client open: hence the outer bound and the plain close.
    A connection that is down (reconnecting) cannot drain; it is closed, and what it buffered is lost
    to the caller's own fallback (the redirect's spill file, ingest's redelivery).
    """
    if nc.is_closed:
        return
    if nc.is_connected:
        nc.options["drain_timeout"] = timeout
        try:
            await asyncio.wait_for(nc.drain(), 2 * timeout)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            log.warning("nats.drain_failed", error=repr(exc))
    if not nc.is_closed:
        with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
            await asyncio.wait_for(nc.close(), timeout)


@contextlib.asynccontextmanager
async def jetstream_at(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """JetStream on a short-lived connection for a tool (the bench): fails at once, never reconnects, closed on exit."""
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
