"""A TCP proxy for fault tests: put it in front of NATS, Redis or Postgres and add latency, cut or black-hole.

It runs its own asyncio loop in a daemon thread, so sync and async tests drive it alike:

    proxy = FaultProxy(nats.port).start()      # clients connect to 127.0.0.1:proxy.port
    proxy.set_latency(0.2)                      # every chunk, both directions, arrives 200 ms later
    proxy.blackhole()                           # connections stay open, nothing gets through
    proxy.blackhole(False)                      # held bytes flow again (as TCP retransmits would)
    proxy.cut()                                 # every current connection closed, both sides
    proxy.stop()

Black-holed bytes are held, not dropped: a real network drop makes TCP retransmit, so the byte
stream a client sees after the outage is intact; dropping chunks here would corrupt it instead.
A connection accepted during a black hole reaches the target only once the black hole lifts.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future
from typing import Any

__all__ = ["FaultProxy"]

CHUNK = 64 * 1024
# Chunks in flight per direction before the proxy stops reading (backpressure, bounded memory).
QUEUE_CHUNKS = 256
CONNECT_TIMEOUT = 5.0
CONTROL_TIMEOUT = 5.0


class _Link:
    """One proxied connection: the client's side, the target's side and the two pumps between them."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.client_reader, self.client_writer = client
        self.target_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[Any]] = []

    def abort(self) -> None:
        for writer in (self.client_writer, self.target_writer):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()

    async def closed(self) -> None:
        """Wait until both sides' sockets are closed (an abort closes them on the loop's next turn)."""
        for writer in (self.client_writer, self.target_writer):
            if writer is not None:
                with contextlib.suppress(Exception):  # a side lost to an error re-raises it here
                    await writer.wait_closed()


class FaultProxy:
    """TCP proxy on 127.0.0.1 (a free port) to `target_host:target_port`, with faults on demand."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port: int = 0
        self._latency = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._open: asyncio.Event | None = None  # set = traffic flows; cleared = black hole
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- control (any thread) -------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start listening; returns once `port` is valid."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, args=(started,), name=f"fault-proxy-{self.target_port}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        started.result(timeout=CONTROL_TIMEOUT)
        return self

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk by `seconds` in both directions (pipelined, like a long link, not a slow one)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._latency = float(seconds)

    def blackhole(self, on: bool = True) -> None:
        """Keep connections and accept new ones, but forward nothing while `on`."""
        self._call(self._set_blackhole, on)

    def cut(self) -> None:
        """Close every current connection, both sides (new connections are still accepted).

        Returns once their sockets are closed, so a client's next read already finds the end of its stream.
        """
        assert self._loop is not None and threading.current_thread() is not self._thread, "proxy not started"
        asyncio.run_coroutine_threadsafe(self._cut_closed(), self._loop).result(timeout=CONTROL_TIMEOUT)

    def stop(self) -> None:
        """Close the listener and every connection, stop the loop and join the thread (bounded)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed() and thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=CONTROL_TIMEOUT)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=CONTROL_TIMEOUT)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop thread ----------------------------------------------------------------------

    def _main(self, started: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # handed to the starting thread
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _listen(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("proxy not started")

        async def run() -> None:
            fn(*args)

        if threading.current_thread() is self._thread:
            fn(*args)
            return
        asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=CONTROL_TIMEOUT)

    def _set_blackhole(self, on: bool) -> None:
        assert self._open is not None
        if on:
            self._open.clear()
        else:
            self._open.set()

    def _cut(self) -> set[_Link]:
        links, self._links = self._links, set()
        for link in links:
            link.abort()
        return links

    async def _cut_closed(self) -> None:
        for link in self._cut():
            await link.closed()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._cut()
        for task in list(self._handlers):
            task.cancel()
        if self._open is not None:
            self._open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._open is not None
        self._handlers.add(task)
        link = _Link((reader, writer))
        self._links.add(link)
        try:
            await self._open.wait()  # a SYN into a black hole gets through once it lifts
            if link not in self._links:  # cut meanwhile
                return
            target_reader, target_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), CONNECT_TIMEOUT
            )
            link.target_writer = target_writer
            if link not in self._links:
                target_writer.transport.abort()
                return
            link.tasks = [
                asyncio.create_task(self._pump(reader, target_writer, link)),
                asyncio.create_task(self._pump(target_reader, writer, link)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(link)
            link.abort()
            self._handlers.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        """Read chunks, hold each until its latency has passed and no black hole is on, then write it."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            try:
                while True:
                    data = await reader.read(CHUNK)
                    if not data:
                        break
                    await queue.put((time.monotonic(), data))
            except OSError:
                pass
            await queue.put(None)

        reading = asyncio.create_task(read())
        assert self._open is not None
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                received, data = item
                wait = received + self._latency - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            reading.cancel()
            # One side ended (EOF or error): the connection is over for both.
            link.abort()
