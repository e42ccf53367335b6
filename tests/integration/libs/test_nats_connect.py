"""`messaging.connect`: a service started before NATS waits for it (backing off with jitter), then stays connected."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from linkpulse.localstack.process import free_port
from linkpulse.localstack.servers import NatsServer
from linkpulse.messaging.connect import FIRST_CONNECT_CAP, close, connect
from linkpulse.settings import NatsSettings


async def test_a_first_connection_backs_off_until_the_server_starts_then_reconnects_forever(tmp_path: Path) -> None:
    port = free_port()
    settings = NatsSettings(url=f"nats://127.0.0.1:{port}", connect_timeout=0.5, reconnect_wait=0.05)
    with structlog.testing.capture_logs() as logs:
        # 1. Nothing listens yet: the connection keeps failing, and keeps trying.
        task = asyncio.create_task(connect(settings, "linkpulse-test"))

        def failures() -> list[float]:
            return [e["retry_in"] for e in logs if e["event"] == "nats.connect_failed"]

        deadline = time.monotonic() + 10
        while len(failures()) < 4:
            assert time.monotonic() < deadline, f"{len(failures())} failed attempts within 10 s"
            await asyncio.sleep(0.01)  # polling the captured log with a deadline
        assert not task.done()
        # 2. Each wait is drawn below a ceiling that doubles from reconnect_wait up to the cap.
        for n, delay in enumerate(failures()):
            assert 0 <= delay <= min(FIRST_CONNECT_CAP, 0.05 * 2**n)
        # 3. The server comes up on that port: the waiting connection gets through.
        server = await asyncio.to_thread(NatsServer(tmp_path / "nats", port=port).start)
    try:
        nc = await asyncio.wait_for(task, 10)
        assert nc.is_connected
    finally:
        server.stop()
    # 4. Connected, the service's own policy holds (reconnect forever), not the first connection's few tries.
    with structlog.testing.capture_logs() as logs:
        deadline = time.monotonic() + 10
        while sum(e["event"] == "nats.error" for e in logs) < 5:
            assert time.monotonic() < deadline, "nats-py stopped trying to reconnect"
            await asyncio.sleep(0.01)  # polling the captured log with a deadline
        assert not nc.is_closed
    server = await asyncio.to_thread(NatsServer(tmp_path / "nats", port=port).start)
    try:
        deadline = time.monotonic() + 10
        while not nc.is_connected:
            assert time.monotonic() < deadline, "no reconnect within 10 s of the server's return"
            await asyncio.sleep(0.01)  # polling the client's state with a deadline
        await close(nc, 1.0)
    finally:
        server.stop()
