"""Every stats answer names the bot rules behind it; a changed rule and `reclassify` show in every series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from tests.integration.ingest.conftest import CHROME, click
from tests.integration.ingest.test_reclassify import CHANGED, ZEBRA

from linkpulse.bots import BOT_RULES_VERSION
from linkpulse.db.reclassify import reclassify
from linkpulse.ingest.batch import click_row
from linkpulse.ingest.store import prepare_connection, write_batch

STATS = "/api/v1/links/{code}/stats"
OVERVIEW = "/api/v1/stats/overview"
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def totals(series: list[dict[str, Any]]) -> tuple[int, int]:
    return sum(p["clicks"] for p in series), sum(p["bots"] for p in series)


async def answers(client: AsyncTestClient) -> dict[str, dict[str, Any]]:
    """The link's stats at each interval over DAY, and the overview of DAY."""
    window = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat()}
    found = {
        interval: (await client.get(STATS.format(code="zeb"), params={**window, "interval": interval})).json()
        for interval in ("hour", "day")
    }
    # A minute series of the first hours (at most 1000 points).
    found["minute"] = (
        await client.get(
            STATS.format(code="zeb"),
            params={"from": DAY.isoformat(), "to": (DAY + timedelta(hours=6)).isoformat(), "interval": "minute"},
        )
    ).json()
    found["overview"] = (await client.get(OVERVIEW, params=window)).json()
    return found


async def test_stats_name_the_rules_and_follow_a_reclassify(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    created = await client.post("/api/v1/links", json={"url": "https://example.com/z", "code": "zeb"})
    assert created.status_code == 201
    before_ingest = await answers(client)
    assert before_ingest["day"]["bot_rules"] is None and before_ingest["overview"]["bot_rules"] is None

    # Stored as ingest stores them: three Zebrafish clicks among five humans, in the first hours of DAY.
    link = await db.fetchval("SELECT id FROM links WHERE code = 'zeb'")
    agents = [CHROME, ZEBRA, CHROME, ZEBRA, ZEBRA]
    rows = [click_row(click("zeb", link, int((DAY + timedelta(minutes=50 * n)).timestamp() * 1000), ua=ua))
            for n, ua in enumerate(agents)]  # fmt: skip
    await prepare_connection(db)
    async with db.transaction():
        await write_batch(db, rows, [])
    ingested = await answers(client)
    for answer in ingested.values():
        assert answer["bot_rules"]["version"] == BOT_RULES_VERSION
        assert answer["bot_rules"]["reclassified_at"] is None
    assert all(totals(ingested[i]["series"]) == (5, 0) for i in ("minute", "hour", "day"))

    await reclassify(db, CHANGED)

    moved = await answers(client)
    for interval in ("minute", "hour", "day"):
        assert totals(moved[interval]["series"]) == (2, 3)
        assert (moved[interval]["total"], moved[interval]["bots"]) == (2, 3)
        # Bucket by bucket: the clicks stay where they were, only their class changes.
        assert [p["clicks"] + p["bots"] for p in moved[interval]["series"]] == [
            p["clicks"] + p["bots"] for p in ingested[interval]["series"]
        ]
        assert moved[interval]["top"]["devices"] == [{"value": "desktop", "clicks": 2}]
    assert (moved["overview"]["clicks"], moved["overview"]["bots"]) == (2, 3)
    rules = moved["day"]["bot_rules"]
    assert rules["version"] == CHANGED.version == moved["overview"]["bot_rules"]["version"]
    assert datetime.fromisoformat(rules["since"]) <= DAY
    assert datetime.fromisoformat(rules["reclassified_at"]) > DAY


async def test_openapi_describes_the_rules_in_both_answers(client: AsyncTestClient) -> None:
    del client.headers["Authorization"]  # the schema is public
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    for answer in ("LinkStats", "Overview"):
        assert "bot rules" in schemas[answer]["properties"]["bot_rules"]["description"], answer
    rules = schemas["BotRulesUsed"]
    assert set(rules["properties"]) == {"version", "since", "reclassified_at"}
    assert "reclassify" in rules["properties"]["reclassified_at"]["description"]
