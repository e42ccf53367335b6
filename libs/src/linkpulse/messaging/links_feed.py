"""The feed of link changes: an ordered push consumer of LINKS from "new", one per process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from linkpulse.messaging.streams import LINKS_STREAM, LINKS_SUBJECTS
from linkpulse.messaging.types import Msg

__all__ = ["LinksFeed", "follow_links"]

LinksFeed = JetStreamContext.PushSubscription
"""A running feed; `await feed.unsubscribe()` ends it."""


async def follow_links(js: JetStreamContext, on_change: Callable[[Msg], Awaitable[None]]) -> LinksFeed:
    """Call `on_change` with every LinkChanged message published from now on; raises what nats-py raises.

    Ordered: no durable state, so every process sees every change, and nats-py recreates the consumer
    when it detects a gap (a gap can hide a change, so a caller that caches drops its cache on reconnect).
    """
    return await js.subscribe(
        LINKS_SUBJECTS, stream=LINKS_STREAM, deliver_policy=DeliverPolicy.NEW, ordered_consumer=True, cb=on_change
    )
