"""`messaging.close`: a shutdown delivers what was published, and a dead peer cannot hold it up."""

from __future__ import annotations

import asyncio
import time

import nats

from linkpulse.localstack.proxy import FaultProxy
from linkpulse.localstack.servers import NatsServer
from linkpulse.messaging.connect import close


async def test_close_delivers_every_buffered_publish(nats_server: NatsServer) -> None:
    receiver = await nats.connect(nats_server.url)
    got: list[bytes] = []
    done = asyncio.Event()

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        got.append(msg.data)
        if len(got) == 500:
            done.set()

    await receiver.subscribe("close.test", cb=on_msg)
    await receiver.flush()
    sender = await nats.connect(nats_server.url)
    for i in range(500):
        await sender.publish("close.test", str(i).encode())  # buffered: nothing flushed yet
    await close(sender, 2.0)
    assert sender.is_closed
    await asyncio.wait_for(done.wait(), 5.0)
    assert got == [str(i).encode() for i in range(500)]
    await receiver.close()


async def test_close_of_a_black_holed_connection_is_bounded(nats_server: NatsServer) -> None:
    with FaultProxy(nats_server.port) as proxy:
        nc = await nats.connect(f"nats://127.0.0.1:{proxy.port}", allow_reconnect=False)
        await nc.subscribe("close.hole")
        proxy.blackhole()
        await nc.publish("close.hole", b"lost")
        started = time.monotonic()
        await close(nc, 0.5)
        elapsed = time.monotonic() - started
    assert nc.is_closed
    assert elapsed < 2.0, f"close took {elapsed:.1f} s; nats-py's own flush alone would take 10 s"


async def test_close_twice_and_after_close_is_harmless(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    await close(nc, 1.0)
    await close(nc, 1.0)
    assert nc.is_closed
