"""Both services' public HTTP edge, black-box over raw sockets: bounded heads, header timeout, connection bound.

Each service runs as `python -m linkpulse.<service>` does (uvicorn with the edge's protocol, the
redirect's inline one included) against the session's real servers; the tests talk HTTP/1.1 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from tests.conftest import TEMPLATE_DB

from linkpulse.localstack.process import ManagedProcess, free_port
from linkpulse.localstack.servers import NatsServer, PostgresServer, RedisServer
from linkpulse.messaging.streams import ensure_streams_at
from linkpulse.settings import ClicksSettings

EDGE_DB = "edge"
KEY = "lp_" + "e" * 43
HOT = "edgehot"
"""A link of the module's database: the redirect caches it on its first GET and answers it inline after."""
LIMITS = {"HEADER_TIMEOUT": "1"}
"""A short header timeout; the head limits as they are by default (8 KiB URL, 32 KiB and 100 header lines)."""
BOUND = {"MAX_CONNECTIONS": "302", "HEADER_TIMEOUT": "30"}
"""Room for 300 idle sockets, a probe and one more; a header timeout the test never reaches."""
SERVICES = ["redirect", "admin"]
FAST = 0.1
"""Seconds a probe on another connection may take while the edge is under attack."""


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def answer(self, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status, *lines = head[:-4].decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))), timeout)
        return int(status.split()[1]), headers, body

    async def closed_within(self, timeout: float) -> bool:
        """Whether the server closes (EOF or reset) within `timeout`, discarding anything it sends first."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


def get(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: sho.rt\r\n".encode() + extra + b"\r\n"


async def assert_refused(conn: Conn, status: int) -> None:
    """The connection got `status` with `connection: close` and a `{status, detail}` body, then was closed."""
    got, headers, body = await conn.answer()
    assert (got, headers["connection"]) == (status, "close"), (got, headers, body)
    assert msgspec.json.decode(body)["status"] == status
    assert await conn.closed_within(5)
    conn.close()


@dataclass
class Service:
    name: str
    port: int

    async def probe(self, conn: Conn) -> float:
        """Seconds for `/healthz` (and for the redirect, a hot redirect) on the kept-alive `conn`."""
        started = time.perf_counter()
        await conn.send(get("/healthz"))
        status, _, _ = await conn.answer()
        assert status == 200
        if self.name == "redirect":
            await conn.send(get(f"/{HOT}"))
            status, headers, _ = await conn.answer()
            assert (status, headers["location"]) == (302, "https://example.com/hot")
        return time.perf_counter() - started


def assert_answering(seconds: list[float]) -> None:
    """Every probe answered; typically within FAST, none stalled (a shared test machine has hiccups)."""
    assert seconds and statistics.median(seconds) < FAST and max(seconds) < 10 * FAST, seconds


@pytest.fixture(scope="module")
def edge_env(postgres_server: PostgresServer, nats_server: NatsServer, redis_server: RedisServer) -> Iterator[dict]:
    """Settings for services on a database of this module's own, holding the hot link."""
    postgres_server.create_database(EDGE_DB, template=TEMPLATE_DB)
    postgres_server.psql(f"INSERT INTO links (code, url) VALUES ('{HOT}', 'https://example.com/hot')", database=EDGE_DB)
    asyncio.run(ensure_streams_at(nats_server.url, ClicksSettings(shards=4, max_bytes=64 * 1024**2)))
    yield {
        **{k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")},
        "LINKPULSE_DATABASE_URL": postgres_server.url_for(EDGE_DB),
        "LINKPULSE_NATS_URL": nats_server.url,
        "LINKPULSE_REDIS_URL": redis_server.url,
        "LINKPULSE_CLICKS_SHARDS": "4",
        "LINKPULSE_ADMIN_KEY": KEY,
    }
    postgres_server.psql(f'DROP DATABASE IF EXISTS "{EDGE_DB}" WITH (FORCE)', database="postgres")


@pytest.fixture(scope="module")
def services(edge_env: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Running services by (name, settings), each started on first use and stopped at the module's end."""
    running: dict[tuple[str, str], Service] = {}
    procs: list[ManagedProcess] = []
    folder = Path(tmp_path_factory.mktemp("edge"))

    def start(name: str, http: dict[str, str]) -> Service:
        key = (name, repr(sorted(http.items())))
        if key in running:
            return running[key]
        port = free_port()
        env = {**edge_env, "LINKPULSE_HTTP_PORT": str(port), "LINKPULSE_PUBLISHER_SPILL_DIR": str(folder / "spill"),
               **{f"LINKPULSE_HTTP_{field}": value for field, value in http.items()}}  # fmt: skip
        argv = [sys.executable, "-m", f"linkpulse.{name}"]
        proc = ManagedProcess(name, argv, log_path=folder / f"{name}.log", env=env)
        procs.append(proc.start())
        proc.wait_ready(lambda: _healthy(port), 60)
        running[key] = Service(name, port)
        return running[key]

    yield {"start": start}
    for proc in procs:
        proc.stop()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def _started(services: dict, name: str, http: dict[str, str]) -> Service:
    service: Service = await asyncio.to_thread(services["start"], name, http)
    if name == "redirect":  # the first GET caches the link; later ones take the inline path
        conn = await Conn.open(service.port)
        await service.probe(conn)
        conn.close()
    return service


@pytest.mark.parametrize("name", SERVICES)
async def test_an_oversized_head_gets_414_or_431_and_a_close_and_one_within_the_limits_does_not(
    services: dict, name: str
) -> None:
    service = await _started(services, name, LIMITS)
    # 1. A 9 KiB request target: 414.
    conn = await Conn.open(service.port)
    await conn.send(get("/" + "a" * 9 * 1024))
    await assert_refused(conn, 414)
    # 2. 33 KiB of headers in 33 lines, in one write and then in 1 KiB writes (a head over many reads): 431.
    big = b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"v" * 1014) for i in range(33))
    assert 33 * 1024 < len(big) < 34 * 1024
    conn = await Conn.open(service.port)
    await conn.send(get("/healthz", big))
    await assert_refused(conn, 431)
    conn = await Conn.open(service.port)
    raw = get("/healthz", big)
    for i in range(0, len(raw), 1024):
        await conn.send(raw[i : i + 1024])
        await asyncio.sleep(0.002)
    await assert_refused(conn, 431)
    # 3. 101 short header lines: 431.
    conn = await Conn.open(service.port)
    await conn.send(get("/healthz", b"".join(b"X-L%03d: 1\r\n" % i for i in range(100))))
    await assert_refused(conn, 431)
    # 4. At the limits (8 KiB target, 99 more header lines, 31 KiB of headers), split over reads: answered.
    conn = await Conn.open(service.port)
    target = "/" + "b" * (8192 - 1)
    lines = b"".join(b"X-L%02d: %s\r\n" % (i, b"w" * 300) for i in range(99))
    raw = get(target, lines)
    for i in range(0, len(raw), 4096):
        await conn.send(raw[i : i + 4096])
        await asyncio.sleep(0.002)
    status, headers, _ = await conn.answer()
    assert status == 404 and "connection" not in headers
    await conn.send(get("/healthz"))  # and the connection goes on
    assert (await conn.answer())[0] == 200
    conn.close()


@pytest.mark.parametrize("name", SERVICES)
async def test_a_streamed_16_mib_request_line_or_header_is_refused_early_while_others_answer(
    services: dict, name: str
) -> None:
    service = await _started(services, name, LIMITS)
    probe = await Conn.open(service.port)
    probes: list[float] = []

    async def probing() -> None:
        while True:
            probes.append(await service.probe(probe))
            await asyncio.sleep(0.02)

    async def attack(start: bytes, status: int) -> int:
        """Stream `start` then 16 MiB of filler, 16 KiB a millisecond, until the answer comes; bytes sent by then."""
        conn = await Conn.open(service.port)
        answer = asyncio.create_task(conn.answer(timeout=20))
        sent = 0
        await conn.send(start)
        with contextlib.suppress(ConnectionError):
            while sent < 16 * 1024**2 and not answer.done():
                await conn.send(b"a" * 16384)
                sent += 16384
                await asyncio.sleep(0.001)  # paced, so what was sent is about what the server has read
        got, headers, _ = await answer
        assert (got, headers["connection"]) == (status, "close")
        assert await conn.closed_within(5)
        conn.close()
        return sent

    prober = asyncio.create_task(probing())
    try:
        # The request line is refused within a few reads of 8 KiB; a header value once the head passes its bound.
        assert await attack(b"GET /", 414) < 1024**2
        assert await attack(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", 431) < 1024**2
    finally:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
    assert_answering(probes)
    probe.close()


@pytest.mark.parametrize("name", SERVICES)
async def test_slow_and_silent_connections_are_closed_after_the_header_timeout_busy_ones_are_not(
    services: dict, name: str
) -> None:
    service = await _started(services, name, LIMITS)  # header timeout 1 s
    silent, slow, busy = await Conn.open(service.port), await Conn.open(service.port), await Conn.open(service.port)
    started = time.monotonic()

    async def slowloris() -> None:
        await slow.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        with contextlib.suppress(ConnectionError):
            for i in range(50):  # a header line every 0.2 s, never the end of the head
                await asyncio.sleep(0.2)
                await slow.send(b"X-Drip-%d: 1\r\n" % i)

    async def keeps_asking() -> int:
        # Six complete requests on one connection, 0.4 s apart (past twice the timeout however slow the
        # machine): each answer restarts its second. Counted, not timed: a busy machine only stretches them.
        answered = 0
        for _ in range(6):
            await asyncio.sleep(0.4)
            answered += (await service.probe(busy)) > 0
        return answered

    dripping = asyncio.create_task(slowloris())
    asking = asyncio.create_task(keeps_asking())
    # 1. Both closed at about a second: not before, and well before the drip would end.
    assert await silent.closed_within(5) and await slow.closed_within(5)
    assert 0.9 < time.monotonic() - started < 4
    # 2. The connection that completes a head now and then is served throughout (the inline path's too).
    assert await asking == 6
    dripping.cancel()
    for conn in (silent, slow, busy):
        conn.close()


@pytest.mark.parametrize("name", SERVICES)
async def test_300_idle_sockets_are_held_while_others_answer_and_one_past_the_bound_gets_503(
    services: dict, name: str
) -> None:
    service = await _started(services, name, BOUND)  # at most 302 connections
    probe = await Conn.open(service.port)
    idle = [await Conn.open(service.port) for _ in range(300)]
    # 1. With 300 silent sockets open, the probe connection answers as fast as ever...
    assert_answering([await service.probe(probe) for _ in range(10)])
    # 2. ...and one more connection (the 302nd) is served, whatever the server takes to register them.
    last = await Conn.open(service.port)
    await service.probe(last)
    # 3. The next one gets 503 and is closed at once, before it sends anything.
    over = await Conn.open(service.port)
    await assert_refused(over, 503)
    # 4. The idle ones were held all along; once one closes, a new connection is served again.
    await idle[0].send(get("/healthz"))
    assert (await idle[0].answer())[0] == 200
    idle.pop().close()
    deadline = time.monotonic() + 10
    while True:  # nothing announces that the server has seen the close: retry with a deadline
        fresh = await Conn.open(service.port)
        await fresh.send(get("/healthz"))
        status, _, _ = await fresh.answer()
        fresh.close()
        if status == 200:
            break
        assert status == 503 and time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for conn in (probe, last, *idle):
        conn.close()
