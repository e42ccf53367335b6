"""What the redirect answers from records it did not write, and what an unknown code costs Postgres.

Against real Redis and Postgres: a poisoned Redis record and a bad Postgres row are never answered; a flood
of unknown codes reaches Postgres a bounded number of times, not once per code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from tests.conftest import MakeLink
from tests.integration.redirect.test_protocol import Served, _read_response, _serving

from linkpulse.links import LinkRecord, encode_record, redis_key

HUMAN = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"}
BOT = {"user-agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}


async def put_in_redis(redis_url: str, code: str, data: bytes) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await client.set(redis_key(code), data)
    await client.aclose()


def bad_record_logs(events: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "link.bad_record" and e.get("code") == code]


@pytest.mark.parametrize(
    "poison",
    [
        encode_record(LinkRecord(id=1, code="pz", url="https://evil.example/\r\nSet-Cookie: session=x")),
        encode_record(LinkRecord(id=1, code="pz", url="javascript:alert(document.cookie)")),
        encode_record(LinkRecord(id=1, code="pz", url="https://evil.example/" + "a" * 100_000)),
        encode_record(LinkRecord(id=1, code="other", url="https://evil.example/")),
        encode_record(LinkRecord(id=1, code="pz", url="https://evil.example/", redirect_type=200)),
        b"\xc1 not msgpack",
    ],
)
async def test_a_poisoned_redis_record_is_never_answered_and_postgres_answers_instead(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, redis_url: str, poison: bytes
) -> None:
    await make_link("pz", "https://example.com/real")
    await put_in_redis(redis_url, "pz", poison)
    with structlog.testing.capture_logs() as events:
        resp = await redirect_client.get("/pz", follow_redirects=False)
        again = await redirect_client.get("/pz", follow_redirects=False)
    assert resp.status_code == again.status_code == 302
    assert resp.headers["location"] == again.headers["location"] == "https://example.com/real"
    [logged] = bad_record_logs(events, "pz")
    assert logged["store"] == "redis" and logged["log_level"] == "error"
    assert len(repr(logged)) < 1000  # a huge target is logged cut short


async def test_a_poisoned_redis_record_of_a_code_postgres_lacks_is_answered_404(
    redirect_client: AsyncTestClient[Any], redis_url: str
) -> None:
    await put_in_redis(redis_url, "pz2", encode_record(LinkRecord(id=9, code="pz2", url="https://x.example/\n")))
    with structlog.testing.capture_logs() as events:
        resp = await redirect_client.get("/pz2", follow_redirects=False)
    assert resp.status_code == 404 and "location" not in resp.headers
    assert bad_record_logs(events, "pz2")


async def test_a_bad_postgres_row_is_answered_as_no_link_and_logged(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, redis_url: str
) -> None:
    # Written behind the admin API's back: its validation never saw it.
    await make_link("badrow", "https://example.com/a\r\nX-Injected: 1")
    with structlog.testing.capture_logs() as events:
        statuses = [(await redirect_client.get("/badrow", follow_redirects=False)).status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    # Logged once: the 404 is cached like any unknown code's, and nothing went to Redis.
    [logged] = bad_record_logs(events, "badrow")
    assert logged["store"] == "postgres"
    client = aioredis.Redis.from_url(redis_url)
    assert await client.get(redis_key("badrow")) is None
    await client.aclose()


def db_operations(operation: str) -> float:
    """Postgres statements of `operation` this process has run (both outcomes), from its own histogram."""
    return sum(
        REGISTRY.get_sample_value(
            "linkpulse_db_operation_duration_seconds_count", {"operation": operation, "outcome": outcome}
        )
        or 0.0
        for outcome in ("ok", "error")
    )


@pytest.fixture
async def served_after_one_link(redirect_env: dict[str, str], make_link: MakeLink) -> AsyncIterator[Served]:
    """The redirect under uvicorn (so requests overlap), started after the link `before` exists."""
    await make_link("before", "https://example.com/before")
    async with _serving(redirect_env) as running:
        yield running


async def test_a_flood_of_unknown_codes_does_not_reach_postgres_per_code(
    served_after_one_link: Served, make_link: MakeLink
) -> None:
    lookups, reads = db_operations("link_lookup"), db_operations("known_codes_read")
    started = time.monotonic()
    port = served_after_one_link.port

    async def ask(first: int) -> set[bytes]:
        """One keep-alive connection asking its share of the 2,000 codes in turn."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = set()
        for i in range(first, 2000, 200):
            writer.write(f"GET /nx{i:05d} HTTP/1.1\r\nHost: sho.rt\r\n\r\n".encode())
            statuses.add((await _read_response(reader))[0])
        writer.close()
        return statuses

    statuses = set().union(*await asyncio.gather(*(ask(n) for n in range(200))))
    elapsed = time.monotonic() - started
    assert statuses == {b"HTTP/1.1 404 Not Found"}
    # No code of its own reached Postgres (a Bloom false positive could, about 1 in 10,000); the filter
    # read newer links at most once per catch-up interval (0.25 s) however many codes waited on it.
    assert db_operations("link_lookup") - lookups <= 2
    assert db_operations("known_codes_read") - reads <= elapsed / 0.25 + 2
    # Real links still redirect: one there at start, one created since (no event: the catch-up finds it).
    await make_link("after", "https://example.com/after")
    for code in ("before", "after"):
        request = f"GET /{code} HTTP/1.1\r\nHost: sho.rt\r\n\r\n".encode()
        [(status, headers)] = await served_after_one_link.exchange(request)
        assert (status, headers["location"]) == (b"HTTP/1.1 302 Found", f"https://example.com/{code}")


async def test_a_bot_does_not_use_up_a_one_time_link(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink
) -> None:
    await make_link("once", "https://example.com/secret", max_clicks=1)
    for _ in range(3):  # a link preview, fetched again and again
        resp = await redirect_client.get("/once", headers=BOT, follow_redirects=False)
        assert resp.status_code == 302
    assert (await redirect_client.get("/once", headers=HUMAN, follow_redirects=False)).status_code == 302
    assert (await redirect_client.get("/once", headers=HUMAN, follow_redirects=False)).status_code == 410


async def test_head_of_a_one_time_link_shows_no_location_and_the_get_still_redirects(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink
) -> None:
    await make_link("once2", "https://example.com/secret", max_clicks=1)
    for _ in range(2):
        head = await redirect_client.head("/once2", headers=HUMAN, follow_redirects=False)
        assert head.status_code == 302
        assert "location" not in head.headers
        assert head.headers["cache-control"] == "no-store"
    get = await redirect_client.get("/once2", headers=HUMAN, follow_redirects=False)
    assert (get.status_code, get.headers["location"]) == (302, "https://example.com/secret")
    assert (await redirect_client.head("/once2", headers=HUMAN, follow_redirects=False)).status_code == 410
