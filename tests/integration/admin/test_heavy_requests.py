"""Bulk uploads and exports cannot exhaust the admin: bounded memory, bounded concurrency, stalled clients cut.

The app runs under a real uvicorn server, and the hostile clients are raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import msgspec
from tests.integration.admin.conftest import ServeAdmin
from tests.polling import eventually

from linkpulse.admin.app import create_app
from linkpulse.admin.limits import RequestLimits
from linkpulse.admin.links.bulk import MAX_ROWS
from linkpulse.admin.settings import AdminSettings

BULK = "/api/v1/links/bulk"
EXPORT = "/api/v1/links/export"
LINKS = "/api/v1/links"
SEND_TIMEOUT = 1.5
# About 12 MB of CSV: more than the socket buffers on both sides hold, so a client that stops reading
# stalls the server's sends.
EXPORT_LINKS = 30_000


def _settings(admin_settings: AdminSettings, **admin: object) -> AdminSettings:
    return msgspec.structs.replace(
        admin_settings,
        admin=msgspec.structs.replace(admin_settings.admin, relay_interval=3600.0, **admin),
        # One connection: anything that holds it stops every other request.
        database=msgspec.structs.replace(admin_settings.database, pool_min=1, pool_max=1),
    )


@contextlib.contextmanager
def _raw(port: int, request: bytes, rcvbuf: int = 4096) -> Iterator[socket.socket]:
    """A client socket that sends `request` and then reads nothing (a small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    try:
        yield sock
    finally:
        sock.close()


async def _read_to_end(sock: socket.socket, deadline: float) -> bytes:
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    chunks = []
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), deadline - time.monotonic()):
        chunks.append(chunk)
    return b"".join(chunks)


async def _idle_in_transaction(db: asyncpg.Connection) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
    )


async def test_a_client_that_stops_reading_an_export_holds_nothing_and_is_cut(
    admin_settings: AdminSettings, admin_key: str, serve_admin: ServeAdmin, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO links (code, url) SELECT 'c' || g, 'https://example.com/' || repeat('x', 300) || g"
        " FROM generate_series(1, $1) AS g",
        EXPORT_LINKS,
    )
    settings = _settings(admin_settings, export_concurrency=1, export_send_timeout=SEND_TIMEOUT)
    auth = {"Authorization": f"Bearer {admin_key}"}
    request = f"GET {EXPORT} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {admin_key}\r\n\r\n".encode()
    async with (
        serve_admin(settings) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        with _raw(port, request) as stalled:
            started = time.monotonic()
            # While it stalls: the one export slot is taken, yet the API answers on the one connection,
            # and no session sits in a transaction for the stalled reader.
            while (answer := await http.get(EXPORT, headers=auth)).status_code == 503:
                assert int(answer.headers["retry-after"]) > 0 and "at most 1" in answer.json()["detail"]
                assert (await http.get(LINKS, headers=auth)).status_code == 200
                assert await _idle_in_transaction(db) == 0
                assert time.monotonic() - started < SEND_TIMEOUT + 15, "the stalled export was never cut"
                await asyncio.sleep(0.1)  # polling: the cut is announced only by the freed slot
            # The slot came free only once the send timeout had passed, and a new export is whole.
            assert answer.status_code == 200 and time.monotonic() - started >= SEND_TIMEOUT
            assert answer.text.count("\r\n") == EXPORT_LINKS + 1
            # The stalled client, reading at last, finds its response cut short: no final chunk.
            received = await _read_to_end(stalled, time.monotonic() + 10)
        assert received.startswith(b"HTTP/1.1 200")
        # (A whole chunked body ends with an empty chunk after the last one's CRLF; rows end in "0\r\n".)
        assert not received.endswith(b"\r\n0\r\n\r\n") and len(received) < len(answer.content)


async def test_bulk_uploads_beyond_the_bound_get_503_while_one_is_under_way(
    admin_settings: AdminSettings, admin_key: str, serve_admin: ServeAdmin
) -> None:
    app = create_app(_settings(admin_settings, bulk_concurrency=1))
    limits: RequestLimits = app.state.limits
    auth = {"Authorization": f"Bearer {admin_key}"}
    body = msgspec.json.encode([{"url": f"https://example.com/{i}"} for i in range(3)])
    head = (
        f"POST {BULK} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {admin_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    async with (
        serve_admin(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        # A first upload whose body is still on its way holds the one slot.
        with _raw(port, head + body[:5], rcvbuf=65536) as slow:
            await eventually(lambda: limits.bulk.held, "the slow upload holding the bulk slot", timeout=10)
            answer = await http.post(BULK, content=body, headers={**auth, "Content-Type": "application/json"})
            assert answer.status_code == 503
            assert int(answer.headers["retry-after"]) > 0
            assert answer.json() == {"status": 503, "detail": answer.json()["detail"]}
            assert "at most 1" in answer.json()["detail"]
            slow.sendall(body[5:])
            first = await _read_to_end(slow, time.monotonic() + 10)
        assert first.startswith(b"HTTP/1.1 201")
        fresh = msgspec.json.encode([{"url": "https://example.com/after"}])
        assert (
            await http.post(BULK, content=fresh, headers={**auth, "Content-Type": "application/json"})
        ).status_code == 201


async def test_a_hostile_8_mib_bulk_body_is_refused_naming_the_cap_within_64_mib(
    admin_settings: AdminSettings, admin_key: str, serve_admin: ServeAdmin
) -> None:
    body = b"[" + b"{}," * ((8 * 1024 * 1024 - 4) // 3) + b"{}]"
    auth = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
    async with (
        serve_admin(_settings(admin_settings)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):
        # The server runs in this process: reset its peak RSS, then see how far the request raises it.
        _write_proc("clear_refs", "5")
        before = _status_kib("VmRSS")
        answer = await http.post(BULK, content=body, headers=auth)
        peak = _status_kib("VmHWM")
    assert answer.status_code == 422 and f"at most {MAX_ROWS} rows" in answer.json()["detail"]
    # The body itself is in memory twice (client and server side): 16 MiB of the budget.
    assert peak - before < 64 * 1024, f"peak rose by {(peak - before) / 1024:.0f} MiB"


def _write_proc(name: str, value: str) -> None:
    with open(f"/proc/self/{name}", "w") as file:  # procfs: never blocks
        file.write(value)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")
