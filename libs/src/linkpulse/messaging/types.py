"""nats-py's types that services name in signatures, re-exported so they never import nats (errors: errors.py)."""

from __future__ import annotations

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

__all__ = ["Client", "JetStreamContext", "Msg"]
