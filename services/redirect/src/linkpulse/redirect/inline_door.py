"""The inline door, and the hot path: uvicorn's httptools protocol answering hot redirects from the parser callback.

It takes every request uvicorn parses, and answers inline a GET or HEAD of a code the process cache holds,
live and without a click limit (`RedirectCore.answer`, deciding with `decision.decide`). Under uvicorn each
request costs, before any of our code runs, a scope dict, a request/response cycle with an `asyncio.Event`,
a Task running the ASGI coroutine, and two `send` messages turned back into bytes. For a hot redirect none
of that is needed: the answer is a few header lines, known the moment the request's headers are parsed. So
this protocol asks the core in `on_headers_complete` and, when it answers, writes the response at once,
with no task and no ASGI round trip (measured side by side with `linkpulse bench redirect`:
docs/performance.md).

Everything else takes uvicorn's normal path into the app, unchanged but for the scope, which only that path
builds (3-4% more redirects a second in three alternating pairs of the bench): a request this door looked
up and declined carries what the cache held under `core.FOUND_KEY`, so the ASGI door passes it on and the
Litestar door does not look it up again; one it handed on without looking (another method, an
`Expect: 100-continue`, a request pipelined behind one in progress, a percent-encoded path) is the ASGI
door's to try.

It is a subclass of the edge's protocol (`linkpulse.web.edge`: head limits, header timeout, connection
bound), itself uvicorn's own (pinned in pyproject.toml), handed to uvicorn as `Config(http=...)`; what it
relies on of uvicorn's internals is exercised by the tests in `tests/integration/redirect/test_protocol.py`
and `tests/integration/libs/test_edge.py` against a real uvicorn server. It finds the core with
`core_of(self.app)`, so it answers inline only when uvicorn serves the Litestar app itself (as
`linkpulse.web.server` runs it: no proxy-headers or trace-logging wrapper); otherwise every request takes
the ASGI door.
"""

from __future__ import annotations

import asyncio
import http
import time
from typing import Any

import httptools

from linkpulse.links import REDIRECT_TYPES
from linkpulse.redirect.core import FOUND_KEY, NOT_LOOKED, ROUTE, RedirectCore, core_of
from linkpulse.redirect.decision import CACHE_CONTROL, LIMITED_HEAD_CACHE_CONTROL, Redirect
from linkpulse.web.edge import EdgeProtocol
from linkpulse.web.request_metrics import REQUEST_METRICS
from linkpulse.web.server_spans import SAMPLING_KEY

__all__ = ["RedirectProtocol"]

_STATUS_LINES = {s: f"HTTP/1.1 {s} {http.HTTPStatus(s).phrase}\r\n".encode() for s in REDIRECT_TYPES}
_LINES = {
    value: b"cache-control: " + value.encode() + b"\r\ncontent-length: 0\r\n"
    for value in (CACHE_CONTROL, LIMITED_HEAD_CACHE_CONTROL)
}
_CLOSE = b"connection: close\r\n"
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}


class _Answered:
    """Stands in for uvicorn's request cycle after an inline answer: complete, nothing to wake."""

    __slots__ = ()
    response_complete = True
    disconnected = False
    keep_alive = True

    class message_event:
        @staticmethod
        def set() -> None:
            return None


_ANSWERED = _Answered()
_NOT_DRAWN = object()


class RedirectProtocol(EdgeProtocol):
    """The edge's protocol, answering hot redirects inline; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.core: RedirectCore | None = core_of(self.app)
        """The core answering inline; None when uvicorn serves something else than the Litestar app itself."""
        self._date_source: object = None
        self._date_lines = b""
        self._answered_at: float | None = None
        """Loop time of the last inline answer; None once another request has begun."""
        self._idle_timer: asyncio.TimerHandle | None = None

    def on_message_begin(self) -> None:
        # What uvicorn's own does, but for the scope (a dict of nine and a copy of the app's state): only
        # a request that goes on to the app needs one, and `_to_app` builds it then.
        if self.core is None:
            super().on_message_begin()
            return
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._answered_at = None  # a request in progress is never idle, however long it takes

    def _to_app(self, sampling: object = _NOT_DRAWN, found: object = _NOT_DRAWN) -> None:
        """Hand the request to uvicorn's normal path (the ASGI app), with the scope it would have built.

        `sampling` and `found`, when given, go in the scope under SAMPLING_KEY and FOUND_KEY.
        """
        if self.core is not None:
            url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()
            self.url, self.expect_100_continue = url, expect_100_continue
            self.headers = self.scope["headers"] = headers
        if sampling is not _NOT_DRAWN:
            # Drawn once here and left for the tracing gate: a request drawn for tracing takes Litestar's route.
            self.scope[SAMPLING_KEY] = sampling  # type: ignore[literal-required]
        if found is not _NOT_DRAWN:
            self.scope[FOUND_KEY] = found  # type: ignore[literal-required]
        super().on_headers_complete()

    def on_headers_complete(self) -> None:
        self._end_head()  # the edge's limits first: a refused head raises, and goes nowhere
        core = self.core
        cycle = self.cycle
        if core is None or not (cycle is None or cycle.response_complete) or self.expect_100_continue:
            self._to_app()
            return
        parser = self.parser
        method = parser.get_method()
        if (method != b"GET" and method != b"HEAD") or parser.should_upgrade():
            self._to_app()
            return
        started = time.perf_counter()
        sampling = core.sampling(self.headers)
        if sampling is not None:
            self._to_app(sampling, NOT_LOOKED)
            return
        url = httptools.parse_url(self.url)
        raw_path = url.path
        # A percent-encoded path is decoded by uvicorn's path; no code needs it, so leave it to that path.
        if b"%" in raw_path or self.root_path:
            self._to_app(None)
            return
        client = self.client
        answer = core.answer(method == b"GET", raw_path.decode("latin-1"), url.query or b"",
                            client[0] if client else "", self.headers)  # fmt: skip
        if answer.__class__ is not Redirect:
            self._to_app(None, answer)
            return
        status, location = answer.status, answer.location  # type: ignore[attr-defined]
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        head = (_STATUS_LINES[status], self._default_header_lines(), b"location: ", location.encode("latin-1"))
        lines = _LINES[answer.cache_control]  # type: ignore[attr-defined]
        self.transport.write(b"".join((*head, b"\r\n", lines, b"" if keep_alive else _CLOSE, b"\r\n")))
        self.cycle = _ANSWERED  # type: ignore[assignment]  # a complete cycle, as far as uvicorn looks
        REQUEST_METRICS.observe(ROUTE, _METHODS[method], status, time.perf_counter() - started)
        if not keep_alive:
            self.transport.close()
        self._answer_complete()

    def on_message_complete(self) -> None:
        if self.cycle is not _ANSWERED:  # an inline answer is complete already: nothing waits for the body
            super().on_message_complete()

    def _answer_complete(self) -> None:
        """After an inline answer, uvicorn's `on_response_complete` with one keep-alive timer per idle spell.

        uvicorn cancels and re-arms its keep-alive timer for every response, which was 9% of an inline
        redirect's instructions (callgrind). Here the timer is armed once, and when it fires it checks
        how long the connection has really been idle, re-arming for the rest. Nothing else of uvicorn's
        applies: reading is not paused (this request's bytes were just read) and no request is
        pipelined behind an inline answer (those are only made with no request in progress).
        """
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        loop = self.loop
        self._answered_at = self._head_since = loop.time()  # idle from now, and owing the next head
        if self._idle_timer is None:
            self._idle_timer = loop.call_later(self.timeout_keep_alive, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        answered_at = self._answered_at
        if answered_at is None or self.transport.is_closing():
            return  # a request began since: uvicorn's own keep-alive timeout follows its response
        remaining = answered_at + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self._idle_timer = self.loop.call_later(remaining, self._idle_check)
        else:
            self.timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)

    def _default_header_lines(self) -> bytes:
        """uvicorn's default headers (the Date it refreshes every second), as lines; rebuilt when it changes."""
        source = self.server_state.default_headers
        if source is not self._date_source:
            self._date_source = source
            self._date_lines = b"".join(name + b": " + value + b"\r\n" for name, value in source)
        return self._date_lines
