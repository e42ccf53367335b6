"""A hot key: one code hammered by many clients at once — every request answered, every click counted."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import asyncpg
from tests.fault.load import BROWSER_UA, LoadResult
from tests.fault.stack import FaultStack

REQUESTS = 10_000
CLIENTS = 200


async def hammer(base_url: str, code: str, *, requests: int, clients: int, timeout: float = 60.0) -> LoadResult:
    """`requests` GETs of one code from `clients` keep-alive connections, each a client of its own.

    A bare HTTP/1.1 client: httpx spends about a millisecond of CPU per request, which on a small
    machine makes the driver, not the service, the thing under test. Records answers like `drive`.
    """
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    request = f"GET /{code} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {BROWSER_UA}\r\n\r\n".encode()
    result = LoadResult()
    left = iter(range(requests))

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *headers = head.decode("latin-1").split("\r\n")
        length = 0
        for line in headers:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "transfer-encoding":
                raise AssertionError(f"unexpected {line!r}")
        if length:
            await reader.readexactly(length)
        return int(status_line.split(" ", 2)[1])

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for _ in left:
                try:
                    status = await asyncio.wait_for(one(reader, writer), timeout)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    result.errors[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                result.statuses[status] += 1
                if 300 <= status < 400:
                    result.answered[code] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return result


async def test_hot_key_10k_requests_from_200_clients_all_answered_all_counted(fault_stack: FaultStack) -> None:
    started = time.monotonic()
    [code] = await fault_stack.make_links(1, "hot")
    await fault_stack.start_ingest()
    _, url = await fault_stack.start_redirect()

    load_started = time.monotonic()
    result = await hammer(url, code, requests=REQUESTS, clients=CLIENTS)
    load_seconds = time.monotonic() - load_started
    assert result.answered == {code: REQUESTS}, result.summary()
    assert not result.errors and result.statuses == {302: REQUESTS}

    await fault_stack.settle(url, [code], result, label="hot key", started=started)
    conn = await asyncpg.connect(fault_stack.postgres.url)
    try:
        link_id = await conn.fetchval("SELECT id FROM links WHERE code = $1", code)
        totals = await conn.fetchrow("SELECT clicks, bot_clicks FROM link_totals WHERE link_id = $1", link_id)
        day = await conn.fetchval("SELECT sum(clicks + bot_clicks) FROM link_clicks_day WHERE link_id = $1", link_id)
        minute = await conn.fetchval(
            "SELECT sum(clicks + bot_clicks) FROM link_clicks_minute WHERE link_id = $1", link_id
        )
    finally:
        await conn.close()
    answered = result.total_answered  # REQUESTS plus settle()'s last few
    print(f"hot key: load {load_seconds:.1f}s, link_totals={dict(totals)} day={day} minute={minute}")
    assert totals["clicks"] + totals["bot_clicks"] == answered
    assert totals["bot_clicks"] == 0  # a browser UA: counted as human
    assert day == minute == answered
