"""Geography end to end: clicks with given anonymised IPs go through a real ingest worker with GeoIP databases
(built by the test) into PostgreSQL, and the admin API's top lists name exactly their countries, regions,
cities and networks; a new database file is taken while ingest runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from tests.geoip_files import Place, write_asn, write_city
from tests.integration.ingest.conftest import click, publish, stored
from tests.polling import eventually

from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.worker import IngestWorker
from linkpulse.settings import ClicksSettings

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
STATS = "/api/v1/links/{code}/stats"

# (anonymised IP as the redirect sends it, country of the trusted proxy's header, user agent or None)
CLICKS: list[tuple[str, str, str | None]] = [
    ("203.0.113.0", "", None),  # Munich
    ("203.0.113.0", "", None),
    ("203.0.113.0", "DE", None),  # the header agrees with the database: region and city kept
    ("203.0.113.0", "FR", None),  # the header wins: France, and no German region or city
    ("2001:db8:1::", "", None),  # Tokyo, over IPv6
    ("2001:db8:2::", "", None),  # Berlin
    ("192.0.2.0", "", None),  # Springfield, Illinois
    ("100.64.0.0", "", None),  # a country-only record: Brazil
    ("8.8.8.0", "", None),  # not in the database: unknown
    ("203.0.113.0", "", GOOGLEBOT),  # a bot from Munich: counted apart, in no human top list
]


def ranked(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"value": v, "clicks": c} for v, c in pairs]


@pytest.fixture
def databases(tmp_path: Path) -> tuple[Path, Path]:
    return write_city(tmp_path / "geoip" / "city.mmdb"), write_asn(tmp_path / "geoip" / "asn.mmdb")


@pytest.fixture
async def ingest(service_env: dict[str, str], databases: tuple[Path, Path]) -> AsyncIterator[None]:
    """An IngestWorker with both GeoIP databases, configured by its environment variables as a pod is."""
    city, asn = databases
    settings = IngestSettings.from_env({
        **service_env,
        "LINKPULSE_INGEST_MAX_WAIT": "0.1",
        "LINKPULSE_GEOIP_DATABASE": str(city),
        "LINKPULSE_GEOIP_ASN_DATABASE": str(asn),
        "LINKPULSE_GEOIP_CHECK_INTERVAL": "0.1",
    })  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(IngestWorker(settings).run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 15)


async def link(client: AsyncTestClient, db: asyncpg.Connection, code: str) -> int:
    created = await client.post("/api/v1/links", json={"url": f"https://example.com/{code}", "code": code})
    assert created.status_code == 201, created.text
    return await db.fetchval("SELECT id FROM links WHERE code = $1", code)


@pytest.mark.usefixtures("ingest")
async def test_clicks_land_in_their_country_region_and_city(
    client: AsyncTestClient,
    db: asyncpg.Connection,
    js: JetStreamContext,
    clicks_settings: ClicksSettings,
    databases: tuple[Path, Path],
) -> None:
    geo = await link(client, db, "geo")
    events = [click("geo", geo, ip=ip, country=country, **({"ua": ua} if ua else {})) for ip, country, ua in CLICKS]
    await publish(js, events, clicks_settings.shards)
    await eventually(lambda: stored(db, js, clicks_settings, len(events)), "geo clicks stored")

    body = (await client.get(STATS.format(code="geo"), params={"interval": "day"})).json()
    assert (body["total"], body["bots"]) == (9, 1)
    top = body["top"]
    assert top["countries"] == ranked(("DE", 4), ("", 1), ("BR", 1), ("FR", 1), ("JP", 1), ("US", 1))
    assert top["regions"] == ranked(("DE-BY", 3), ("DE-BE", 1), ("JP-13", 1), ("US-IL", 1))
    assert top["cities"] == ranked(("Munich, DE-BY", 3), ("Berlin, DE-BE", 1), ("Springfield, US-IL", 1),
                                   ("Tokyo, JP-13", 1))  # fmt: skip
    assert top["asns"] == ranked(("AS3320 Deutsche Telekom AG", 4), ("AS2516 KDDI CORPORATION", 1))
    # The raw click keeps its place too, from the anonymised address alone.
    row = await db.fetchrow("SELECT country, region, city, asn FROM click_events WHERE ip = '2001:db8:1::'")
    assert tuple(row) == ("JP", "JP-13", "Tokyo, JP-13", "AS2516 KDDI CORPORATION")

    # A new database version, put in place while ingest runs, is taken without a restart.
    city, _ = databases
    write_city(city.with_suffix(".new"), {"203.0.113.0/24": Place("AT", "9", "Wien", "Vienna")})
    os.replace(city.with_suffix(".new"), city)
    probe = await link(client, db, "probe")
    sent = len(events)

    async def probe_placed() -> str:
        nonlocal sent
        await publish(js, [click("probe", probe, ip="203.0.113.0")], clicks_settings.shards)
        sent += 1
        await eventually(lambda: stored(db, js, clicks_settings, sent), "probe stored")
        return await db.fetchval("SELECT city FROM click_events WHERE link_id = $1 ORDER BY ingested_at DESC LIMIT 1",
                                 probe)  # fmt: skip

    await eventually(probe_placed, "a click placed by the new file", accept=lambda city: city == "Vienna, AT-9")
    await publish(
        js, [click("geo", geo, ip="203.0.113.0"), click("geo", geo, ip="198.51.100.0")], clicks_settings.shards
    )
    await eventually(lambda: stored(db, js, clicks_settings, sent + 2), "clicks after the reload stored")
    top = (await client.get(STATS.format(code="geo"), params={"interval": "day"})).json()["top"]
    assert top["cities"] == ranked(("Munich, DE-BY", 3), ("Berlin, DE-BE", 1), ("Springfield, US-IL", 1),
                                   ("Tokyo, JP-13", 1), ("Vienna, AT-9", 1))  # fmt: skip
    assert top["countries"] == ranked(("DE", 4), ("", 2), ("AT", 1), ("BR", 1), ("FR", 1), ("JP", 1), ("US", 1))


async def test_openapi_describes_the_geography_lists(client: AsyncTestClient) -> None:
    del client.headers["Authorization"]  # the schema is public
    top = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]["TopValues"]
    assert {"countries", "regions", "cities", "asns"} <= set(top["properties"])
    assert "ISO 3166-2" in top["properties"]["regions"]["description"]
    assert "Munich, DE-BY" in top["properties"]["cities"]["description"]
    assert "AS3320" in top["properties"]["asns"]["description"]
    assert "header" in top["properties"]["countries"]["description"]
