"""The public HTTP edge: uvicorn's httptools protocol with bounded heads, a header timeout and a connection bound.

Both services face clients that may be hostile, with nothing in front. uvicorn's protocol has no
limit on a request line or header block (and gathers the URL by `bytes +=`, quadratic in the number
of pieces), no timeout for a head that never completes, and `limit_concurrency` acts only once a
request has been parsed. `EdgeProtocol` adds those, for a few attribute operations a request
(about 2% of an inline redirect's instructions, which run through it too: docs/performance.md):

- A URL above `max_url_bytes` gets 414; a header block above `max_header_bytes` or `max_header_lines`
  gets 431. Heads arriving in one read (nearly all) are checked once, when complete; a head that
  spans reads has every later read counted, so one streamed forever is refused within a read of the
  bound, before the parser buffers more of it.
- A connection gets `header_timeout` seconds for each complete header block, counted from its
  connection or from its last answer; one timer per connection re-arms itself for what is left.
  Idle keep-alive is uvicorn's own timeout (shorter), unchanged.
- Beyond `max_connections` open connections a new one is answered 503 at once, before anything is read.

A refusal is a fixed short answer with `connection: close`, written directly, never through the app.
The server then stops writing, and discards what the client still sends for up to `LINGER` seconds
(`LINGERING_MAX` connections at most): closing a socket with unread data resets it, and the reset can
destroy the answer before the client reads it.
"""

from __future__ import annotations

import asyncio
import http
from typing import Any, ClassVar, cast

import httptools
import msgspec
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from linkpulse.settings import HttpSettings

__all__ = ["LINGER", "LINGERING_MAX", "EdgeProtocol"]

log = structlog.get_logger(__name__)

LINGER = 2.0
"""Seconds a refused connection is read and discarded before it is closed (unless the client closes first)."""
LINGERING_MAX = 256
"""Refused connections lingering at once per worker; past it a refused one is closed at once (a flood of
connections beyond the bound must not hold descriptors for LINGER seconds each)."""

_HEAD_SLACK = 1024
"""Bytes of a head beyond its URL and header limits (method, version, line ends, spaces around values)."""


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head the limits refuse."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol with the edge limits of `settings`; see the module docstring.

    uvicorn builds the protocol itself, with fixed arguments: the limits come from the class, so
    `configured(http)` makes a subclass carrying a service's settings (built in each worker process,
    so the class handed to a spawned worker stays importable).
    """

    settings: ClassVar[HttpSettings] = HttpSettings()
    """The limits this class applies (the defaults here; `configured` makes a class with others)."""
    _full_warned_at: ClassVar[float] = float("-inf")

    @classmethod
    def configured(cls, http: HttpSettings) -> type[EdgeProtocol]:
        """A subclass of this class applying the limits of `http`."""
        return cast("type[EdgeProtocol]", type(cls.__name__, (cls,), {"settings": http, "__module__": cls.__module__}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.settings
        self.max_url_bytes = settings.max_url_bytes
        self.max_header_bytes = settings.max_header_bytes
        self.max_header_lines = settings.max_header_lines
        self._head_bound = settings.max_url_bytes + settings.max_header_bytes + _HEAD_SLACK
        self._head_bytes: int | None = None
        """Bytes of the current head read after the read it began in (1 at least if that read was larger than
        the header limit: then it is measured exactly at the end); None while no head is open."""
        self._big_read = 0
        """1 while parsing a read larger than the header limit, else 0."""
        self._url_rest: list[bytes] = []
        """The URL's pieces after the first, when it spans reads (joined once, when the head is complete)."""
        self._url_size = 0
        self._head_since: float | None = None
        """Loop time since which the connection has owed a header block; None while a request is handled."""
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.settings.max_connections:
            self.transport = transport  # never counted among uvicorn's connections
            self._warn_full()
            self._refuse(503, f"more than {self.settings.max_connections} open connections")
            return
        super().connection_made(transport)
        loop = self.loop
        self._head_since = loop.time()
        self._head_timer = loop.call_later(self.settings.header_timeout, self._head_check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with the open head's later reads counted before they reach the parser.
        self._unset_keepalive_if_required()
        size = len(data)
        self._big_read = size > self.max_header_bytes
        if self._head_bytes is not None:
            self._head_bytes += size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.detail)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # Checked after the parser had the read: the read that completes a head may carry a body too.
        head = self._head_bytes
        if head is not None and head > self._head_bound:
            self._refuse(431, f"request head longer than {self._head_bound} bytes")

    def on_url(self, url: bytes) -> None:
        if self.url or len(url) > self.max_url_bytes:
            self._more_url(url)
            return
        self.url = url
        self._head_bytes = self._big_read

    def _more_url(self, piece: bytes) -> None:
        """A URL in several pieces (or too long in one): gathered in a list, refused past the limit."""
        if not self.url:
            raise _Refused(414, f"request target longer than {self.max_url_bytes} bytes")
        rest = self._url_rest
        if not rest:
            self._url_size = len(self.url)
        self._url_size += len(piece)
        if self._url_size > self.max_url_bytes:
            raise _Refused(414, f"request target longer than {self.max_url_bytes} bytes")
        rest.append(piece)

    def on_headers_complete(self) -> None:
        self._end_head()
        self._head_since = None  # a request in progress owes no head, however long the app takes
        super().on_headers_complete()

    def _end_head(self) -> None:
        """The header block is complete: check it against the limits, raising `_Refused`.

        A subclass answering from `on_headers_complete` calls this first. A head that began and ended in
        one read no larger than the header limit, with few enough lines, needs no more; any other is
        measured exactly.
        """
        head = self._head_bytes
        if head is None:
            return  # checked already: a subclass's own `on_headers_complete` handed the request on
        self._head_bytes = None
        if head or len(self.headers) > self.max_header_lines:
            self._measure_head()

    def _measure_head(self) -> None:
        if self._url_rest:
            self.url = b"".join((self.url, *self._url_rest))
            self._url_rest.clear()
        if len(self.headers) > self.max_header_lines:
            raise _Refused(431, f"more than {self.max_header_lines} header lines")
        # name, ": ", value, CRLF; spaces around a value are not kept, and not counted
        if sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_header_bytes:
            raise _Refused(431, f"header block longer than {self.max_header_bytes} bytes")

    def on_response_complete(self) -> None:
        owes_head = not self.pipeline  # a pipelined request behind this one was read whole already
        super().on_response_complete()
        if owes_head:
            self._head_since = self.loop.time()

    def _warn_full(self) -> None:
        """Say that the bound refuses connections, at most once a minute a process: a flood must not flood the log."""
        now = self.loop.time()
        if now - EdgeProtocol._full_warned_at >= 60.0:
            EdgeProtocol._full_warned_at = now
            log.warning("edge.too_many_connections", limit=self.settings.max_connections,
                        hint="raise LINKPULSE_HTTP_MAX_CONNECTIONS or the workers")  # fmt: skip

    def _head_check(self) -> None:
        """The header timer: close a connection that has owed a head too long, else re-arm for what is left."""
        self._head_timer = None
        if self.transport.is_closing():
            return
        since = self._head_since
        timeout = self.settings.header_timeout
        left = timeout if since is None else since + timeout - self.loop.time()
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._head_check)
            return
        log.debug("edge.header_timeout", timeout=timeout)
        self.transport.close()

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` with a fixed body and `connection: close`, then linger and close."""
        transport = self.transport
        log.debug("edge.refused", status=status, detail=detail)
        if transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            transport.close()  # an answer now would overtake the one being made: a pipelining client gets none
            return
        body = msgspec.json.encode({"status": status, "detail": detail})
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
        head.extend(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        transport.write(b"".join(head) + body)
        if _Lingering.count >= LINGERING_MAX or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.set_protocol(_Lingering(self, transport, self.loop))


class _Lingering(asyncio.Protocol):
    """A refused connection after its answer: what the client still sends is read and dropped until it closes."""

    count: ClassVar[int] = 0
    """Connections lingering now, in this process."""

    def __init__(self, refused: EdgeProtocol, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.refused = refused
        self.timer = loop.call_later(LINGER, transport.close)
        _Lingering.count += 1

    def data_received(self, data: bytes) -> None:
        return None

    def eof_received(self) -> bool:
        return False  # the client is done too: close

    def connection_lost(self, exc: Exception | None) -> None:
        _Lingering.count -= 1
        self.timer.cancel()
        self.refused.connection_lost(exc)
