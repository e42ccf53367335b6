"""The lookup chain against real servers: local cache → Redis → Postgres, and the negative cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from tests.conftest import MakeLink

from linkpulse.links import LinkRecord, decode_record, encode_record, redis_key
from linkpulse.localstack.servers import RedisServer
from linkpulse.redirect.app import create_app
from linkpulse.redirect.settings import RedirectSettings


async def redis_calls(url: str, command: str) -> int:
    """How often Redis ran `command` since the last CONFIG RESETSTAT, as Redis itself counts it."""
    client = aioredis.Redis.from_url(url)
    stats = await client.info("commandstats")
    await client.aclose()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_locally_cached_code_does_not_touch_redis(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, redis_url: str
) -> None:
    await make_link("hot", "https://example.com/hot")
    # First request misses every cache: Postgres answers and fills Redis and the local cache.
    assert (await redirect_client.get("/hot", follow_redirects=False)).status_code == 302
    client = aioredis.Redis.from_url(redis_url)
    assert decode_record(await client.get(redis_key("hot"))).url == "https://example.com/hot"
    await client.config_resetstat()
    await client.aclose()
    for _ in range(50):
        assert (await redirect_client.get("/hot", follow_redirects=False)).status_code == 302
    assert await redis_calls(redis_url, "get") == 0


async def test_redis_record_is_used_before_postgres(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, redis_url: str
) -> None:
    link_id = await make_link("tier2", "https://example.com/from-postgres")
    client = aioredis.Redis.from_url(redis_url)
    record = LinkRecord(id=link_id, code="tier2", url="https://example.com/from-redis")
    await client.set(redis_key("tier2"), encode_record(record))
    await client.aclose()
    resp = await redirect_client.get("/tier2", follow_redirects=False)
    assert resp.headers["location"] == "https://example.com/from-redis"


async def test_unknown_code_is_answered_from_the_negative_cache(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink
) -> None:
    assert (await redirect_client.get("/ghost", follow_redirects=False)).status_code == 404
    # The code now exists in Postgres, but nothing told this process (no LinkChanged event): a
    # second request that still answers 404 proves it did not query the database.
    await make_link("ghost")
    for _ in range(20):
        assert (await redirect_client.get("/ghost", follow_redirects=False)).status_code == 404


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, so the test can stop it."""
    server = RedisServer(tmp_path / "redis", log_path=tmp_path / "redis.log").start()
    yield server
    server.stop()


@pytest.fixture
async def client_with_own_redis(
    redirect_env: dict[str, str], own_redis: RedisServer
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The redirect app pointed at `own_redis`."""
    settings = RedirectSettings.from_env({**redirect_env, "LINKPULSE_REDIS_URL": own_redis.url})
    async with AsyncTestClient(app=create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


async def test_redirects_answer_from_postgres_while_redis_is_down(
    client_with_own_redis: AsyncTestClient[Any], make_link: MakeLink, own_redis: RedisServer
) -> None:
    await make_link("a1", "https://example.com/one")
    await make_link("b2", "https://example.com/two")
    assert (await client_with_own_redis.get("/a1", follow_redirects=False)).status_code == 302
    own_redis.stop()
    # a1 is in the local cache; b2 was never seen, so only Postgres can answer it.
    assert (await client_with_own_redis.get("/a1", follow_redirects=False)).status_code == 302
    resp = await client_with_own_redis.get("/b2", follow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["location"] == "https://example.com/two"
    assert (await client_with_own_redis.get("/readyz")).status_code == 200


async def test_redis_copy_older_than_an_announced_change_is_ignored(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, redis_url: str
) -> None:
    # Postgres holds version 2; Redis still holds version 1 (its write-through failed).
    link_id = await make_link("stale", "https://example.com/v2", version=2)
    client = aioredis.Redis.from_url(redis_url)
    await client.set(
        redis_key("stale"), encode_record(LinkRecord(id=link_id, code="stale", url="https://example.com/v1"))
    )
    await client.aclose()
    # The LinkChanged event for version 2 reached this process.
    redirect_client.app.state.lookup.cache.evict("stale", 2)
    resp = await redirect_client.get("/stale", follow_redirects=False)
    assert resp.headers["location"] == "https://example.com/v2"
