"""Unique visitors end to end: clicks from chosen IPs and agents through the redirect, exact uniques from the API.

The redirect (in-process, trusting 127.0.0.0/8, so X-Forwarded-For sets the client IP) keys each click; an
in-process IngestWorker stores it; the admin API answers. Expected counts are the distinct (IP, agent) pairs per
bucket of the clicks as stored: each IP below is in its own /24, so the stored anonymised IP names it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from litestar.testing import AsyncTestClient
from tests.conftest import serving
from tests.integration.admin.test_stats import CHROME, GOOGLEBOT, IPHONE, ingest, iso
from tests.polling import eventually

from linkpulse.admin.stats.service import StatsService
from linkpulse.admin.stats.window import overview_window, series_window
from linkpulse.localstack.process import free_port
from linkpulse.redirect.app import create_app
from linkpulse.redirect.settings import RedirectSettings

__all__ = ["ingest"]  # the fixture, used by name

# (link, client IP, user agent, clicks)
CLICKS = [
    ("uv", "198.51.100.1", CHROME, 3),  # one visitor, three clicks
    ("uv", "198.51.101.1", CHROME, 1),  # another address: another visitor
    ("uv", "198.51.100.1", IPHONE, 1),  # the same address with another agent: another visitor
    ("uv", "198.51.102.1", GOOGLEBOT, 2),  # a bot visitor, counted apart
    ("uv2", "198.51.100.1", CHROME, 1),  # the same person on another link: that link's visitor
]


@pytest.fixture
async def redirect(service_env: dict[str, str], tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The redirect under a real uvicorn on 127.0.0.1, which it trusts as a proxy; a client of it."""
    env = {**service_env, "LINKPULSE_PUBLISHER_SPILL_DIR": str(tmp_path / "spill"),
           "LINKPULSE_PUBLISHER_LINGER": "0.001", "LINKPULSE_PROXY_TRUSTED": "127.0.0.0/8"}  # fmt: skip
    port = free_port()
    config = uvicorn.Config(create_app(RedirectSettings.from_env(env)), host="127.0.0.1", port=port, lifespan="on",
                            log_level="warning", proxy_headers=False)  # fmt: skip
    async with serving(config), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client


def uniques(rows: list[asyncpg.Record], bucket: str) -> dict[datetime, tuple[int, int]]:
    """Bucket start → (human, bot) distinct (IP, agent) pairs among the stored clicks."""
    steps = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
    seen: dict[datetime, tuple[set[Any], set[Any]]] = {}
    for r in rows:
        ts = r["ts"].astimezone(UTC)
        start = datetime.fromtimestamp(ts.timestamp() // steps[bucket].total_seconds() * steps[bucket].total_seconds(),
                                       UTC)  # fmt: skip
        humans, bots = seen.setdefault(start, (set(), set()))
        (bots if r["is_bot"] else humans).add((str(r["ip"]), r["ua"]))
    return {start: (len(h), len(b)) for start, (h, b) in seen.items()}


@pytest.mark.usefixtures("ingest")
async def test_unique_visitors_are_exact_in_every_series_and_the_overview(
    client: AsyncTestClient, redirect: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    for code in ("uv", "uv2"):
        created = await client.post("/api/v1/links", json={"url": f"https://example.com/{code}", "code": code})
        assert created.status_code == 201, created.text
    # Clicks through the redirect, the client IP set by the trusted proxy's header.
    for code, ip, ua, times in CLICKS:
        for _ in range(times):
            answer = await redirect.get(f"/{code}", headers={"x-forwarded-for": ip, "user-agent": ua},
                                        follow_redirects=False)  # fmt: skip
            assert answer.status_code == 302
    total = sum(c[3] for c in CLICKS)

    async def all_stored() -> bool:
        return await db.fetchval("SELECT count(*) FROM click_events WHERE visitor IS NOT NULL") == total

    await eventually(all_stored, f"{total} clicks stored with visitor keys")
    rows = await db.fetch(
        "SELECT c.ts, c.ip, c.ua, c.is_bot FROM click_events c JOIN links l ON l.id = c.link_id WHERE l.code = 'uv'"
    )
    # The full IP left no trace: the click keeps the anonymised one and the key.
    assert {str(r["ip"]) for r in rows} == {"198.51.100.0", "198.51.101.0", "198.51.102.0"}

    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    windows = {
        "day": (today - timedelta(days=1), today + timedelta(days=1)),
        "hour": (now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2), now + timedelta(hours=1)),
        "minute": (now.replace(second=0, microsecond=0) - timedelta(minutes=30), now + timedelta(minutes=1)),
    }
    for interval, (start, end) in windows.items():
        answer = await client.get("/api/v1/links/uv/stats",
                                  params={"from": iso(start), "to": iso(end), "interval": interval})  # fmt: skip
        assert answer.status_code == 200, answer.text
        stats = answer.json()
        got = {
            datetime.fromisoformat(p["ts"]): (p["visitors"], p["bot_visitors"])
            for p in stats["series"]
            if p["visitors"] or p["bot_visitors"]
        }
        assert got == uniques(rows, interval), interval
        # Over the window: each day's uniques added up, here one day's (two if the clicks straddled midnight).
        per_day = uniques(rows, "day")
        assert (stats["visitors"], stats["bot_visitors"]) == (
            sum(h for h, _ in per_day.values()),
            sum(b for _, b in per_day.values()),
        )
        if len(per_day) == 1:
            assert (stats["visitors"], stats["bot_visitors"], stats["total"], stats["bots"]) == (3, 1, 5, 2)

    answer = await client.get("/api/v1/stats/overview", params={"from": iso(today - timedelta(days=1))})
    assert answer.status_code == 200, answer.text
    overview = answer.json()
    links = {link["code"]: (link["visitors"], link["bot_visitors"]) for link in overview["top_links"]}
    assert links["uv2"] == (1, 0)
    assert links["uv"] == (stats["visitors"], stats["bot_visitors"])
    assert (overview["visitors"], overview["bot_visitors"]) == (links["uv"][0] + 1, links["uv"][1])


@pytest.mark.usefixtures("ingest")
async def test_the_admin_role_reads_unique_visitors_and_no_other_click_column(
    client: AsyncTestClient, redirect: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    created = await client.post("/api/v1/links", json={"url": "https://example.com/r", "code": "role"})
    assert created.status_code == 201, created.text
    answer = await redirect.get("/role", headers={"x-forwarded-for": "198.51.100.1", "user-agent": CHROME})
    assert answer.status_code == 302

    async def one_stored() -> bool:
        return await db.fetchval("SELECT count(*) FROM click_events WHERE visitor IS NOT NULL") == 1

    await eventually(one_stored, "the click stored with its key")
    # The rights of 0009 exactly, as the admin login has them.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, server_settings={"role": "linkpulse_admin"})
    try:
        stats = StatsService(pool)
        now = datetime.now(UTC)
        for interval in ("minute", "hour", "day"):
            window = series_window(iso(now - timedelta(hours=1)), iso(now + timedelta(minutes=1)), interval, now)
            link = await stats.link_stats("role", window)
            assert link is not None and (link.visitors, link.bot_visitors) == (1, 0), interval
        start, end = overview_window(iso(now - timedelta(days=1)), None, now)
        assert (await stats.overview(start, end, 10)).visitors == 1
        async with pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT ip, ua FROM click_events")
    finally:
        await pool.close()


async def test_openapi_describes_unique_visitors_in_every_stats_answer(client: AsyncTestClient) -> None:
    del client.headers["Authorization"]  # the schema is public
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    answers = {name: schema["properties"] for name, schema in schemas.items()
               if name.endswith(("Point", "LinkStats", "LinkCount", "Overview"))}  # fmt: skip
    assert len(answers) == 4
    for properties in answers.values():
        assert "UTC day" in properties["visitors"]["description"]
        assert "bot visitors" in properties["bot_visitors"]["description"]
