"""Stats API against real servers: clicks go through the real ingest path, stats come back exact.

A known mix of click envelopes is published on JetStream and stored by an in-process
IngestWorker (the same code a pod runs); the admin API then answers from the rollups it kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from tests.integration.ingest.conftest import CHROME, click, publish, stored
from tests.polling import eventually

from linkpulse.apikeys import generate_key, hash_key, key_prefix
from linkpulse.events import ClickEvent
from linkpulse.ingest.settings import IngestSettings
from linkpulse.ingest.worker import IngestWorker
from linkpulse.settings import ClicksSettings

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:120.0) Gecko/20100101 Firefox/120.0"
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CURL = "curl/8.4.0"

# Fixed days in the recent past (their click_events partitions exist): DAY0 < DAY1 < DAY2 < TODAY.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY0, DAY1, DAY2 = (TODAY - timedelta(days=n) for n in (3, 2, 1))


def at(day: datetime, hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> datetime:
    return day + timedelta(hours=hour, minutes=minute, seconds=second, milliseconds=ms)


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


# Link "mix": humans and bots across minutes, two hours and two days, plus one click just outside
# each edge of the windows queried below. Countries come in the event's `country` field (set at
# redirect time from the trusted edge header); referrers of one host with different paths add up.
MIX: list[tuple[datetime, str, str, str]] = [
    (at(DAY0, 23, 59, 59, 999), CHROME, "BR", ""),  # 1 ms before DAY1: just outside the day window
    (at(DAY1, 10, 14, 59, 999), CHROME, "JP", "https://www.google.com/search?q=a"),  # 1 ms before 10:15
    (at(DAY1, 10, 15, 5), CHROME, "de", "https://www.google.com/search?q=b"),
    (at(DAY1, 10, 15, 40), IPHONE, "US", "https://google.com/maps"),
    (at(DAY1, 10, 16), GOOGLEBOT, "US", ""),  # bot
    (at(DAY1, 10, 59, 59), FIREFOX, "FR", "https://news.ycombinator.com/item?id=1"),
    (at(DAY1, 11), CURL, "FR", "https://example.org/"),  # bot
    (at(DAY1, 11, 30), IPHONE, "DE", "https://WWW.Google.com/"),  # exactly at the minute window's `to`
    (at(DAY2, 9), ANDROID, "", "https://t.co/x"),
    (at(DAY2, 9, 0, 30), CHROME, "DE", ""),
    (TODAY, CHROME, "CA", ""),  # exactly at the day window's `to`
]
# Other links, for the overview: equal human clicks ranked by bots then code, a bots-only link last.
OTHERS: dict[str, list[tuple[datetime, str]]] = {
    "other": [(at(DAY1, 12), CHROME), (at(DAY1, 12, 1), IPHONE), (at(DAY1, 13), ANDROID), (at(DAY1, 12), CURL)],
    "alpha": [(at(DAY2, 8), CHROME), (at(DAY2, 8), FIREFOX), (at(DAY2, 8, 30), CHROME), (at(DAY2, 8), CURL)],
    "quiet": [(at(DAY2, 7), GOOGLEBOT)],
}
STATS = "/api/v1/links/{code}/stats"
OVERVIEW = "/api/v1/stats/overview"


@pytest.fixture
async def ingest(service_env: dict[str, str]) -> AsyncIterator[None]:
    """An IngestWorker running in-process on this test's servers for the test's duration."""
    settings = IngestSettings.from_env(
        {**service_env, "LINKPULSE_INGEST_MAX_WAIT": "0.1", "LINKPULSE_INGEST_RETRY_DELAY": "0.1"}
    )
    stop = asyncio.Event()
    task = asyncio.create_task(IngestWorker(settings).run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 15)


@pytest.fixture
async def clicked(
    client: AsyncTestClient,
    db: asyncpg.Connection,
    js: JetStreamContext,
    clicks_settings: ClicksSettings,
    ingest: None,
) -> None:
    """The links above created through the API and their clicks stored by ingest."""
    events: dict[str, list[ClickEvent]] = {}
    for code in ("mix", *OTHERS):
        created = await client.post("/api/v1/links", json={"url": f"https://example.com/{code}", "code": code})
        assert created.status_code == 201, created.text
        link_id = await db.fetchval("SELECT id FROM links WHERE code = $1", code)
        if code == "mix":
            events[code] = [
                click(code, link_id, epoch_ms(ts), ua=ua, country=country, referrer=referrer)
                for ts, ua, country, referrer in MIX
            ]
        else:
            events[code] = [click(code, link_id, epoch_ms(ts), ua=ua) for ts, ua in OTHERS[code]]
    # One envelope per link (an envelope holds one shard's events), as the redirect publisher sends them.
    for batch in events.values():
        await publish(js, batch, clicks_settings.shards)
    total = sum(len(batch) for batch in events.values())
    await eventually(lambda: stored(db, js, clicks_settings, total), f"{total} clicks stored and acked")


def nonzero(series: list[dict[str, Any]]) -> list[tuple[datetime, int, int]]:
    return [(datetime.fromisoformat(p["ts"]), p["clicks"], p["bots"]) for p in series if p["clicks"] or p["bots"]]


def ranked(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"value": v, "clicks": c} for v, c in pairs]


# Humans of DAY1 and DAY2 (the days every multi-day window below touches).
TOP_TWO_DAYS = {
    "countries": ranked(("DE", 3), ("", 1), ("FR", 1), ("JP", 1), ("US", 1)),
    "referrers": ranked(("google.com", 4), ("", 1), ("news.ycombinator.com", 1), ("t.co", 1)),
    "browsers": ranked(("Chrome", 3), ("Mobile Safari", 2), ("Chrome Mobile", 1), ("Firefox", 1)),
    "os": ranked(("Windows", 3), ("iOS", 2), ("Android", 1), ("Mac OS X", 1)),
    "devices": ranked(("desktop", 4), ("mobile", 3)),
    # No GeoIP database in this test: nothing placed, and no "" row for these three.
    "regions": [],
    "cities": [],
    "asns": [],
    # No Accept-Language on these clicks.
    "languages": ranked(("", 7)),
}


@pytest.mark.usefixtures("clicked")
async def test_minute_series_counts_exactly_the_clicks_in_the_window(client: AsyncTestClient) -> None:
    # [10:15, 11:30): the click 1 ms before `from` and the one at `to` are outside.
    start, end = at(DAY1, 10, 15), at(DAY1, 11, 30)
    response = await client.get(
        STATS.format(code="mix"), params={"from": iso(start), "to": iso(end), "interval": "minute"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["code"], body["interval"]) == ("mix", "minute")
    assert (datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])) == (start, end)
    # Zero-filled: one point per minute, oldest first.
    assert [datetime.fromisoformat(p["ts"]) for p in body["series"]] == [
        start + timedelta(minutes=i) for i in range(75)
    ]
    assert nonzero(body["series"]) == [
        (at(DAY1, 10, 15), 2, 0),
        (at(DAY1, 10, 16), 0, 1),  # Googlebot
        (at(DAY1, 10, 59), 1, 0),
        (at(DAY1, 11, 0), 0, 1),  # curl
    ]
    # Humans only in the total; bots apart.
    assert (body["total"], body["bots"]) == (3, 2)
    # Top lists of a minute window cover its whole UTC hours, [10:00, 12:00): the humans at 10:14:59.999 and at
    # 11:30 count there, though not in the series.
    assert body["top"] == {
        "countries": ranked(("DE", 2), ("FR", 1), ("JP", 1), ("US", 1)),
        "referrers": ranked(("google.com", 4), ("news.ycombinator.com", 1)),
        "browsers": ranked(("Chrome", 2), ("Mobile Safari", 2), ("Firefox", 1)),
        "os": ranked(("Windows", 2), ("iOS", 2), ("Mac OS X", 1)),
        "devices": ranked(("desktop", 3), ("mobile", 2)),
        "regions": [],
        "cities": [],
        "asns": [],
        "languages": ranked(("", 5)),
    }


@pytest.mark.usefixtures("clicked")
async def test_hour_series_across_two_days(client: AsyncTestClient) -> None:
    start, end = at(DAY1, 10), at(DAY2, 10)
    response = await client.get(
        STATS.format(code="mix"), params={"from": iso(start), "to": iso(end), "interval": "hour"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["series"]) == 24
    assert nonzero(body["series"]) == [(at(DAY1, 10), 4, 1), (at(DAY1, 11), 1, 1), (at(DAY2, 9), 2, 0)]
    assert (body["total"], body["bots"]) == (7, 2)
    # Bots (Googlebot, curl, example.org, the "bot" device) never reach the top lists.
    assert body["top"] == TOP_TWO_DAYS


@pytest.mark.usefixtures("clicked")
async def test_day_series_excludes_the_days_around_the_window(client: AsyncTestClient) -> None:
    # Dates mean midnight UTC; the clicks at DAY0 23:59:59.999 and at TODAY 00:00 are outside.
    response = await client.get(
        STATS.format(code="mix"),
        params={"from": DAY1.date().isoformat(), "to": TODAY.date().isoformat(), "interval": "day"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert nonzero(body["series"]) == [(DAY1, 5, 2), (DAY2, 2, 0)]
    assert len(body["series"]) == 2
    assert (body["total"], body["bots"]) == (7, 2)
    assert body["top"] == TOP_TWO_DAYS
    assert "BR" not in str(body["top"]) and "CA" not in str(body["top"])


@pytest.mark.usefixtures("clicked")
async def test_an_unaligned_window_is_widened_to_whole_buckets_and_echoed(client: AsyncTestClient) -> None:
    # 10:15:30 → 10:00, 11:00:01 → 12:00: the answer says which window it counted.
    response = await client.get(
        STATS.format(code="mix"),
        params={"from": iso(at(DAY1, 10, 15, 30)), "to": iso(at(DAY1, 11, 0, 1)), "interval": "hour"},
    )
    body = response.json()
    assert (datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])) == (at(DAY1, 10), at(DAY1, 12))
    assert (body["total"], body["bots"]) == (5, 2)


@pytest.mark.usefixtures("clicked")
async def test_default_window_is_the_last_seven_days_by_hour(client: AsyncTestClient) -> None:
    body = (await client.get(STATS.format(code="mix"))).json()
    assert body["interval"] == "hour"
    span = datetime.fromisoformat(body["to"]) - datetime.fromisoformat(body["from"])
    assert timedelta(days=7) <= span <= timedelta(days=7, hours=1)
    assert len(body["series"]) == span // timedelta(hours=1)
    # Every click of the mix is within the last seven days.
    assert (body["total"], body["bots"]) == (9, 2)
    assert body["total"] == sum(p["clicks"] for p in body["series"])


@pytest.mark.usefixtures("clicked")
async def test_overview_totals_and_top_links(client: AsyncTestClient) -> None:
    # [DAY1, TODAY): whole days, read from the day rollup.
    params = {"from": DAY1.date().isoformat(), "to": TODAY.date().isoformat()}
    response = await client.get(OVERVIEW, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["clicks"], body["bots"]) == (7 + 3 + 3, 2 + 1 + 1 + 1)
    # By human clicks, then bot clicks, then code.
    assert [(link["code"], link["clicks"], link["bots"]) for link in body["top_links"]] == [
        ("mix", 7, 2),
        ("alpha", 3, 1),
        ("other", 3, 1),
        ("quiet", 0, 1),
    ]
    assert body["top_links"][0]["url"] == "https://example.com/mix"
    # The limit cuts the list, never the totals.
    limited = (await client.get(OVERVIEW, params={**params, "limit": "2"})).json()
    assert [link["code"] for link in limited["top_links"]] == ["mix", "alpha"]
    assert (limited["clicks"], limited["bots"]) == (13, 5)


@pytest.mark.usefixtures("clicked")
async def test_overview_reads_partial_days_from_the_hour_rollup(client: AsyncTestClient) -> None:
    # [DAY0 22:00, TODAY 01:00): two partial days by hour around whole days by day, so the clicks
    # at DAY0 23:59:59.999 and TODAY 00:00 count now; 22:30 is floored to the hour.
    params = {"from": iso(at(DAY0, 22, 30)), "to": iso(at(TODAY, 1))}
    body = (await client.get(OVERVIEW, params=params)).json()
    assert (datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])) == (at(DAY0, 22), at(TODAY, 1))
    assert (body["clicks"], body["bots"]) == (9 + 3 + 3, 5)
    # A window inside one day comes from hours alone: DAY1 10:00-12:00 holds mix's first clicks only.
    inside = (await client.get(OVERVIEW, params={"from": iso(at(DAY1, 10)), "to": iso(at(DAY1, 12))})).json()
    assert (inside["clicks"], inside["bots"]) == (5, 2)
    assert [link["code"] for link in inside["top_links"]] == ["mix"]


async def test_a_link_without_clicks_has_a_zero_series(client: AsyncTestClient) -> None:
    await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "silent"})
    body = (await client.get(STATS.format(code="silent"), params={"interval": "day"})).json()
    assert (body["total"], body["bots"], len(body["series"])) == (0, 0, 8)
    assert all(p["clicks"] == p["bots"] == 0 for p in body["series"])
    assert body["top"] == {key: [] for key in TOP_TWO_DAYS}
    assert (body["as_of"], body["ingest_lag"]) == (None, None)
    overview = (await client.get(OVERVIEW)).json()
    assert (overview["clicks"], overview["bots"], overview["top_links"]) == (0, 0, [])


async def test_stats_routes_do_not_collide_with_the_link_routes(client: AsyncTestClient) -> None:
    # A link may be called "stats": /links/stats is the link, /links/stats/stats its stats.
    created = await client.post("/api/v1/links", json={"url": "https://example.com/s", "code": "stats"})
    assert created.status_code == 201, created.text
    link = await client.get("/api/v1/links/stats")
    assert (link.status_code, link.json()["url"]) == (200, "https://example.com/s")
    stats = await client.get("/api/v1/links/stats/stats")
    assert (stats.status_code, stats.json()["code"], stats.json()["total"]) == (200, "stats", 0)
    assert (await client.get(OVERVIEW)).status_code == 200


async def test_unknown_or_deleted_code_is_404(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    missing = await client.get(STATS.format(code="nope"))
    assert missing.json() == {"status": 404, "detail": "no link with code 'nope'"}
    await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "gone"})
    await db.execute("UPDATE links SET deleted_at = now() WHERE code = 'gone'")
    assert (await client.get(STATS.format(code="gone"))).status_code == 404


BAD_QUERIES = [
    ({"from": "2026-11-20T10:00:00Z", "to": "2026-11-20T10:00:00Z"}, "from must be before to"),
    ({"from": "2026-11-21", "to": "2026-11-20"}, "from must be before to"),
    ({"from": "last tuesday"}, "from: not an ISO 8601 time"),
    ({"to": "2026-11-20T10:00:00"}, "to: give a timezone"),
    ({"to": "2026-02-30"}, "to: not a valid date"),
    ({"interval": "week"}, "interval: must be one of minute, hour, day"),
    ({"interval": "MINUTE"}, "interval: must be one of"),
    ({"from": "2026-01-01", "to": "2026-02-01", "interval": "minute"}, "44640 minute points, at most 1000"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "the window is too long"),
]


@pytest.mark.parametrize(("params", "detail"), BAD_QUERIES)
async def test_bad_queries_are_422_naming_the_parameter(
    client: AsyncTestClient, params: dict[str, str], detail: str
) -> None:
    await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "q"})
    response = await client.get(STATS.format(code="q"), params=params)
    assert response.status_code == 422, response.text
    assert response.json()["status"] == 422
    assert detail in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [({"limit": "0"}, "limit: must be an integer"), ({"limit": "x"}, "limit"), ({"from": "x"}, "from:")],
)
async def test_bad_overview_queries_are_422(client: AsyncTestClient, params: dict[str, str], detail: str) -> None:
    response = await client.get(OVERVIEW, params=params)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]


async def test_stats_need_a_key_with_stats_read(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "guarded"})
    keys = {}
    for scopes in (["links:read", "links:write"], ["stats:read"]):
        key = generate_key()
        await db.execute(
            "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('k', $1, $2, $3)",
            key_prefix(key),
            hash_key(key),
            scopes,
        )
        keys[scopes[0]] = {"Authorization": f"Bearer {key}"}
    for path in (STATS.format(code="guarded"), OVERVIEW):
        anonymous = await client.get(path, headers={"Authorization": ""})
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        denied = await client.get(path, headers=keys["links:read"])
        assert denied.json() == {"status": 403, "detail": "this API key lacks the 'stats:read' scope"}
        assert (await client.get(path, headers=keys["stats:read"])).status_code == 200
    # A stats key reads stats only.
    assert (await client.get("/api/v1/links/guarded", headers=keys["stats:read"])).status_code == 403


# Times at the ends of the calendar (issue 19): each was a 500 (an OverflowError while converting to
# UTC or widening to whole days), now a 422 naming the parameter.
OVERFLOWING = [
    (STATS.format(code="edge"), {"to": "9999-12-31T23:00:00-02:00"}, "to: out of range"),
    (STATS.format(code="edge"), {"from": "9999-12-31T20:00:00Z", "to": "9999-12-31T22:30:00Z"}, "to: out of range"),
    (STATS.format(code="edge"), {"to": "9999-12-31T22:00:00Z", "interval": "minute"}, "to: out of range"),
    (OVERVIEW, {"from": "9999-12-31T01:00:00Z", "to": "9999-12-31T22:00:00Z"}, "to: out of range"),
    (OVERVIEW, {"to": "9999-12-31T23:00:00-02:00"}, "to: out of range"),
    (OVERVIEW, {"from": "0001-01-01T00:00:00+01:00"}, "from: out of range"),
]


@pytest.mark.parametrize(("path", "params", "detail"), OVERFLOWING)
async def test_times_at_the_ends_of_the_calendar_are_422(
    client: AsyncTestClient, path: str, params: dict[str, str], detail: str
) -> None:
    await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "edge"})
    response = await client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]
    # The last whole day still answers, its series and day-wide top lists included.
    last_day = await client.get(STATS.format(code="edge"), params={"from": "9999-12-30", "to": "9999-12-31"})
    assert last_day.status_code == 200, last_day.text
    assert last_day.json()["to"] == "9999-12-31T00:00:00Z"
