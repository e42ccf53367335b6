"""Bounds on heavy requests: a few slots each (refused at once beyond them), and streams whose sends time out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from litestar.exceptions import ServiceUnavailableException
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.types import Message, Receive, Scope, Send

from linkpulse.admin.settings import AdminOptions

__all__ = ["RETRY_AFTER", "BoundedStream", "RequestLimits", "Slots"]

RETRY_AFTER = 5
"""Seconds a refused client is told to wait: a bulk upload or a small export takes about that long."""

log = structlog.get_logger(__name__)


class Slots:
    """At most `size` requests of one kind at once per process; one more is refused at once, never queued.

    Refusing rather than queueing keeps a burst from parking bodies in memory or requests on the loop.
    """

    def __init__(self, size: int, what: str) -> None:
        """`what` names the kind in the refusal ("bulk uploads")."""
        self._size = size
        self._what = what
        self._held = 0

    @property
    def held(self) -> int:
        """Slots taken now."""
        return self._held

    def take(self) -> Callable[[], None]:
        """Take a slot; returns its release (call it once).

        Raises:
            ServiceUnavailableException: every slot is taken (503 with Retry-After).
        """
        if self._held >= self._size:
            raise ServiceUnavailableException(
                f"too many {self._what} at once (at most {self._size}); retry in {RETRY_AFTER} s",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        self._held += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._held -= 1

        return release

    @contextmanager
    def taken(self) -> Iterator[None]:
        """A slot for the block (see `take`)."""
        release = self.take()
        try:
            yield
        finally:
            release()


@dataclass(frozen=True)
class RequestLimits:
    """The process's bounds on heavy requests, built once by `create_app` and handed to the handlers."""

    bulk: Slots
    export: Slots
    export_send_timeout: float

    @classmethod
    def from_options(cls, options: AdminOptions) -> RequestLimits:
        """The bounds the settings ask for."""
        return cls(
            bulk=Slots(options.bulk_concurrency, "bulk uploads"),
            export=Slots(options.export_concurrency, "exports"),
            export_send_timeout=options.export_send_timeout,
        )


class BoundedStream(Stream):
    """A streamed response that gives up on a client that stops reading, and then releases its slot.

    uvicorn's `send` waits for the socket to drain, for ever if the client never reads; each send here
    waits `send_timeout` seconds at most, then the response is cut (the connection is closed once what
    is buffered drains or the client goes). The slot is released when the response ends, however it ends.
    """

    def __init__(self, *args: Any, release: Callable[[], None], send_timeout: float, **kwargs: Any) -> None:
        """`Stream`'s arguments, plus the slot's `release` and the send timeout in seconds."""
        super().__init__(*args, **kwargs)
        self._release = release
        self._send_timeout = send_timeout

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        """The streaming response, wrapped with the send timeout and the release."""
        return _Bounded(super().to_asgi_response(*args, **kwargs), self._release, self._send_timeout)  # type: ignore[return-value]


class _Bounded:
    def __init__(self, inner: ASGIResponse, release: Callable[[], None], send_timeout: float) -> None:
        self._inner = inner
        self._release = release
        self._send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stalled = False

        async def timed_send(message: Message) -> None:
            nonlocal stalled
            try:
                async with asyncio.timeout(self._send_timeout):
                    await send(message)
            except TimeoutError:
                stalled = True
                raise

        try:
            await self._inner(scope, receive, timed_send)
        except Exception:
            if not stalled:
                raise
            # Returning with the response unfinished makes the server close the connection.
            log.warning("response.client_stalled", path=scope.get("path"), send_timeout=self._send_timeout)
        finally:
            self._release()
