"""nats-py's types that services name in signatures and `except` clauses, re-exported so they never import nats."""

from __future__ import annotations

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import OutboundBufferLimitError
from nats.js import JetStreamContext

__all__ = ["Client", "JetStreamContext", "Msg", "OutboundBufferLimitError"]
