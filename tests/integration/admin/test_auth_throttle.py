"""Failed authentication throttled per client IP: 429 with Retry-After, no Postgres lookup, shared by pods."""

from __future__ import annotations

import httpx
import msgspec
import redis
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from tests.integration.admin.conftest import ServeAdmin

from linkpulse.admin.app import create_app
from linkpulse.admin.settings import AdminSettings
from linkpulse.admin.throttle import KEY_PREFIX

LINKS = "/api/v1/links"
LIMIT = 3
WRONG = {"Authorization": "Bearer lp_not-a-key-at-all"}


def _with(settings: AdminSettings, **admin: object) -> AdminSettings:
    # A relay pass an hour away: only the requests under test query Postgres while they run.
    return msgspec.structs.replace(
        settings,
        admin=msgspec.structs.replace(settings.admin, auth_failures=LIMIT, relay_interval=3600.0, **admin),
    )


def _admin_queries() -> float:
    """Statements the admin pool ran so far (every one is timed, see linkpulse.db.metrics)."""
    return sum(
        REGISTRY.get_sample_value(
            "linkpulse_db_operation_duration_seconds_count", {"operation": "admin_query", "outcome": outcome}
        )
        or 0.0
        for outcome in ("ok", "error")
    )


async def test_a_throttled_ip_gets_429_with_retry_after_and_costs_no_database_lookup(
    admin_settings: AdminSettings, admin_key: str
) -> None:
    async with AsyncTestClient(app=create_app(_with(admin_settings))) as client:
        # No key at all guesses nothing, so is not counted.
        for _ in range(LIMIT * 2):
            assert (await client.get(LINKS, headers={"Authorization": ""})).status_code == 401
        assert (await client.get(LINKS, headers={"Authorization": f"Bearer {admin_key}"})).status_code == 200
        for _ in range(LIMIT):
            answer = await client.get(LINKS, headers=WRONG)
            assert answer.status_code == 401
        before = _admin_queries()
        # Twenty more guesses, and then the right key: all refused before Postgres is asked.
        for headers in [WRONG] * 20 + [{"Authorization": f"Bearer {admin_key}"}]:
            answer = await client.get(LINKS, headers=headers)
            assert answer.status_code == 429
            retry_after = int(answer.headers["retry-after"])
            assert 0 < retry_after <= admin_settings.admin.auth_failure_window
            body = answer.json()
            assert body["status"] == 429 and "too many failed authentications" in body["detail"]
        assert _admin_queries() == before


async def test_the_counts_are_shared_by_every_admin_process_through_redis(
    admin_settings: AdminSettings, admin_key: str, redis_url: str
) -> None:
    settings = _with(admin_settings)
    async with AsyncTestClient(app=create_app(settings)) as first, AsyncTestClient(app=create_app(settings)) as second:
        for _ in range(LIMIT):
            assert (await first.get(LINKS, headers=WRONG)).status_code == 401
        # The other process never saw a failure, yet refuses the same client.
        assert (await second.get(LINKS, headers=WRONG)).status_code == 429
    store = redis.Redis.from_url(redis_url)
    try:
        keys = store.keys(KEY_PREFIX + "*")
        assert len(keys) == 1
        # The count expires with its window: nothing is kept for ever.
        assert 0 < store.pttl(keys[0]) <= settings.admin.auth_failure_window * 1000
    finally:
        store.close()


async def test_without_redis_each_process_still_throttles_in_memory(
    admin_settings: AdminSettings, admin_key: str
) -> None:
    # A Redis that refuses connections (nothing listens on port 1): the API starts and throttles anyway.
    settings = msgspec.structs.replace(
        _with(admin_settings), redis=msgspec.structs.replace(admin_settings.redis, url="redis://127.0.0.1:1/0")
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        for _ in range(LIMIT):
            assert (await client.get(LINKS, headers=WRONG)).status_code == 401
        before = _admin_queries()
        answer = await client.get(LINKS, headers={"Authorization": f"Bearer {admin_key}"})
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
        assert _admin_queries() == before


async def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(
    admin_settings: AdminSettings, admin_key: str, serve_admin: ServeAdmin
) -> None:
    trusted = msgspec.structs.replace(
        _with(admin_settings), proxy=msgspec.structs.replace(admin_settings.proxy, trusted="127.0.0.0/8")
    )
    async with serve_admin(trusted) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        guesser = {**WRONG, "X-Forwarded-For": "198.51.100.7, 203.0.113.5"}
        for _ in range(LIMIT):
            assert (await http.get(LINKS, headers=guesser)).status_code == 401
        assert (await http.get(LINKS, headers=guesser)).status_code == 429
        # Another client behind the same proxy is not punished for the guesser.
        other = {"Authorization": f"Bearer {admin_key}", "X-Forwarded-For": "198.51.100.7, 203.0.113.6"}
        assert (await http.get(LINKS, headers=other)).status_code == 200
    # Without trusted proxies the header is whatever the client wrote: the peer is the client.
    async with (
        serve_admin(_with(admin_settings)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        for n in range(LIMIT):
            answer = await http.get(LINKS, headers={**WRONG, "X-Forwarded-For": f"203.0.113.{n}"})
            assert answer.status_code == 401
        answer = await http.get(LINKS, headers={"Authorization": f"Bearer {admin_key}", "X-Forwarded-For": "192.0.2.1"})
        assert answer.status_code == 429
