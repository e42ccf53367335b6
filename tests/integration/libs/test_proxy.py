"""FaultProxy against a real redis-server: pass-through, latency, black hole, cut, stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from linkpulse.localstack.proxy import FaultProxy
from linkpulse.localstack.servers import RedisServer


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    p = FaultProxy(redis_server.port).start()
    yield p
    p.stop()


def _client(proxy: FaultProxy, timeout: float = 2.0) -> redis.Redis:
    # No retries: each fault must show on the call that meets it.
    return redis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0))  # fmt: skip


def test_forwards_both_ways(proxy: FaultProxy) -> None:
    client = _client(proxy)
    assert client.ping()
    client.set("proxy:key", b"x" * 300_000)  # larger than one chunk, both directions
    assert client.get("proxy:key") == b"x" * 300_000
    client.close()


def test_latency_delays_each_round_trip(proxy: FaultProxy) -> None:
    client = _client(proxy)
    assert client.ping()
    proxy.set_latency(0.2)
    started = time.monotonic()
    assert client.ping()
    # One request chunk and one reply chunk, each delayed.
    assert time.monotonic() - started >= 0.35
    proxy.set_latency(0)
    started = time.monotonic()
    assert client.ping()
    assert time.monotonic() - started < 0.2
    client.close()


def test_blackhole_holds_traffic_then_lets_it_through(proxy: FaultProxy) -> None:
    client = _client(proxy, timeout=0.5)
    assert client.ping()
    proxy.blackhole()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    # A new connection is accepted (no refusal) but gets no answer either.
    fresh = _client(proxy, timeout=0.5)
    with pytest.raises(redis.TimeoutError):
        fresh.ping()
    proxy.blackhole(False)
    again = _client(proxy)
    assert again.ping()
    for c in (client, fresh, again):
        c.close()


def test_cut_closes_current_connections(proxy: FaultProxy) -> None:
    # A raw socket: redis-py's pool would quietly reconnect a closed connection.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2.0) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"
        proxy.cut()
        with pytest.raises(ConnectionError):
            for _ in range(20):  # the first send after a close may still be buffered
                sock.sendall(b"PING\r\n")
                if not sock.recv(64):
                    raise ConnectionResetError("closed by the proxy")
                time.sleep(0.05)
    # New connections work at once.
    client = _client(proxy)
    assert client.ping()
    client.close()


async def test_controls_from_async_code(proxy: FaultProxy) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=0.5, retry=AsyncRetry(NoBackoff(), 0))
    assert await client.ping()
    proxy.blackhole()
    with pytest.raises(redis.TimeoutError):
        await client.ping()
    proxy.blackhole(False)
    proxy.cut()
    # The pool notices the closed connection and opens a new one through the proxy.
    assert await client.ping()
    await client.aclose()


def test_stop_is_bounded_and_closes_everything(redis_server: RedisServer) -> None:
    proxy = FaultProxy(redis_server.port).start()
    client = _client(proxy, timeout=0.5)
    assert client.ping()
    proxy.blackhole()  # a held connection must not keep stop() waiting
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 2.0
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()
