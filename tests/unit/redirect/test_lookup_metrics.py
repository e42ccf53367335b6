"""Lookup metrics: the tier that answered each lookup, and the time each Redis and Postgres call took."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from linkpulse.redirect.cache import LinkCache
from linkpulse.redirect.lookup import LinkLookup


class _Redis:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def get(self, key: str) -> bytes | None:
        if self.fail:
            raise RedisConnectionError("refused")
        return None

    async def set(self, *args: Any, **kwargs: Any) -> bool:
        return True


_COLUMNS = {"redirect_type": 302, "active": True, "deleted": False, "expires_at": None, "max_clicks": None,
            "forward_query": False, "version": 1}  # fmt: skip


class _Pool:
    """Answers a link row once `release` is set, so concurrent misses overlap."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.queries = 0

    async def fetchrow(self, sql: str, code: str) -> dict[str, Any]:
        self.queries += 1
        await self.release.wait()
        return {"id": 1, "code": code, "url": "https://example.com/", **_COLUMNS}


def _snapshot() -> dict[str, float]:
    values = {}
    for tier in ("local", "redis", "db", "coalesced"):
        values[tier] = REGISTRY.get_sample_value("linkpulse_redirect_lookups_total", {"tier": tier}) or 0.0
    for name, op in (("db", "link_lookup"), ("redis", "link_get"), ("redis", "link_fill")):
        histogram = f"linkpulse_{name}_operation_duration_seconds_count"
        for outcome in ("ok", "error"):
            labels = {"operation": op, "outcome": outcome}
            values[f"{op} {outcome}"] = REGISTRY.get_sample_value(histogram, labels) or 0.0
    return values


def _delta(before: dict[str, float]) -> dict[str, float]:
    after = _snapshot()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def _lookup(redis: _Redis, pool: _Pool) -> LinkLookup:
    return LinkLookup(LinkCache(100, 60.0, 100, 60.0), redis, pool, 60)  # type: ignore[arg-type]


async def test_concurrent_misses_share_one_read_and_count_as_coalesced() -> None:
    pool = _Pool()
    lookup = _lookup(_Redis(), pool)
    before = _snapshot()
    # Five requests for one uncached code: the first reads Redis then Postgres, the other four wait on it.
    waiting = [asyncio.create_task(lookup.get("same")) for _ in range(5)]
    await asyncio.sleep(0)  # one loop turn: each task runs to its first wait (Postgres, or the shared read)
    assert pool.queries == 1
    pool.release.set()
    records = await asyncio.gather(*waiting)
    assert {r.code for r in records if r is not None} == {"same"} and pool.queries == 1
    # A sixth request, later, finds it in the process cache.
    await lookup.get("same")
    assert _delta(before) == {
        "db": 1, "coalesced": 4, "local": 1, "link_get ok": 1, "link_lookup ok": 1, "link_fill ok": 1,
    }  # fmt: skip


async def test_a_failed_redis_call_is_timed_as_an_error_and_postgres_answers() -> None:
    pool = _Pool()
    pool.release.set()
    lookup = _lookup(_Redis(fail=True), pool)
    before = _snapshot()
    assert await lookup.get("fallback") is not None
    # The fill is skipped: Redis is in its backoff after the failed read.
    assert _delta(before) == {"db": 1, "link_get error": 1, "link_lookup ok": 1}
