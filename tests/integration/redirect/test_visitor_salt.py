"""The daily visitor salt shared through Redis: one per day for every process, made once, expiring after its day."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from tests.clock import Clock

from linkpulse.localstack.access import REDIS_OPERATOR, REDIS_USERS
from linkpulse.localstack.servers import RedisServer
from linkpulse.redirect.visitor_keys import DAY_MS, EXPIRE_AFTER_S, LEAD_MS, VisitorKeys

DAY = time.time_ns() // 1_000_000 // DAY_MS * DAY_MS
"""Today's midnight UTC: a salt's expiry is real time, so a past day's would be gone at once."""
TODAY = f"visitor-salt:{datetime.fromtimestamp(DAY / 1000, UTC).date().isoformat()}"
TOMORROW = f"visitor-salt:{datetime.fromtimestamp(DAY / 1000 + 86_400, UTC).date().isoformat()}"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the emptied session Redis."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_two_processes_share_the_days_salt_and_it_expires_after_the_day(redis_client: aioredis.Redis) -> None:
    first, second = VisitorKeys(redis_client, Clock(DAY + 5)), VisitorKeys(redis_client, Clock(DAY + 9))
    await first.refresh()
    await second.refresh()
    assert first.shares(DAY // DAY_MS) and second.shares(DAY // DAY_MS)
    assert first.key("203.0.113.7", UA, 42, DAY + 5) == second.key("203.0.113.7", UA, 42, DAY + 9)
    # One salt, 32 bytes, expiring 10 minutes after its day ends.
    assert await redis_client.keys("visitor-salt:*") == [TODAY.encode()]
    assert len(await redis_client.get(TODAY)) == 32
    expires = (DAY + DAY_MS) // 1000 + EXPIRE_AFTER_S
    assert expires - time.time() - 2 <= await redis_client.ttl(TODAY) <= expires - time.time() + 1


async def test_tomorrows_salt_is_fetched_before_midnight(redis_client: aioredis.Redis) -> None:
    clock = Clock(DAY + DAY_MS - LEAD_MS - 1)
    keys = VisitorKeys(redis_client, clock)
    await keys.refresh()
    assert not keys.shares(DAY // DAY_MS + 1)
    clock.now += 2
    await keys.refresh()
    assert keys.shares(DAY // DAY_MS + 1)
    assert await redis_client.exists(TOMORROW)


async def test_without_redis_a_local_salt_serves_until_the_shared_one_is_reachable(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # A port nothing listens on: the salt is local, the key is made all the same.
    down = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_timeout=0.5, socket_connect_timeout=0.5)
    local = VisitorKeys(down, Clock(DAY))
    await local.refresh()
    assert not local.shares(DAY // DAY_MS)
    local_key = local.key("203.0.113.7", UA, 42, DAY)
    await down.aclose()
    # Redis answers again: the next refresh takes the shared salt in place of the local one.
    local._redis = redis_client  # the same process reconnected
    await local.refresh()
    shared = VisitorKeys(redis_client, Clock(DAY))
    await shared.refresh()
    assert local.shares(DAY // DAY_MS)
    assert local.key("203.0.113.7", UA, 42, DAY) == shared.key("203.0.113.7", UA, 42, DAY) != local_key


async def test_the_redirect_redis_user_makes_the_salts_and_the_admin_user_cannot_read_them(tmp_path: Path) -> None:
    passwords = {REDIS_OPERATOR: "operator-pw", **{user: f"{user}-pw" for user in REDIS_USERS}}
    server = RedisServer(tmp_path / "redis", log_path=tmp_path / "redis.log", users=passwords).start()
    client = aioredis.Redis.from_url(server.url_for("redirect"))
    admin = aioredis.Redis.from_url(server.url_for("admin"))
    try:
        keys = VisitorKeys(client, Clock(DAY))
        await keys.refresh()
        assert keys.shares(DAY // DAY_MS)
        with pytest.raises(aioredis.ResponseError, match="no permissions"):
            await admin.get(TODAY)
    finally:
        await admin.aclose()
        await client.aclose()
        server.stop()
