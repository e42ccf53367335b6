"""Stats people can slice, against real Postgres: timezones, filters, languages, exact-window top lists, freshness.

Clicks are stored as ingest stores them: rows of click_events and the rollups built from exactly those rows, by the
SQL below (the statements of migration 0010's backfill, over linkpulse.dimensions), so every rollup the admin reads
agrees with the clicks whatever it is served from. Expected counts are worked out by hand from the table of clicks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from linkpulse.admin.stats.filters import provide_filters
from linkpulse.admin.stats.service import StatsService
from linkpulse.admin.stats.window import parse_tz, series_window
from linkpulse.dimensions import lateral_values, located_only_sql

STATS = "/api/v1/links/{code}/stats"
OVERVIEW = "/api/v1/stats/overview"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Click(NamedTuple):
    ts: datetime
    country: str
    device: str
    lang: str
    visitor: bytes
    is_bot: bool = False
    city: str = ""


V1, V2, V3, BOT = b"v1" * 8, b"v2" * 8, b"v3" * 8, b"b0" * 8
# Around Berlin's autumn DST change: 2026-10-25 runs from 2026-10-24T22:00Z (CEST) to 2026-10-25T23:00Z (CET).
AUTUMN = [
    Click(utc(2026, 10, 24, 21, 59), "AT", "desktop", "de-AT", V3),  # Berlin 10-24 23:59: the day before
    Click(utc(2026, 10, 24, 22, 30), "DE", "desktop", "de-DE", V1, city="Munich, DE-BY"),  # Berlin 10-25 00:30
    Click(utc(2026, 10, 25, 1, 30), "US", "mobile", "en", BOT, is_bot=True),  # a bot, Berlin 10-25 02:30 CET
    Click(utc(2026, 10, 25, 22, 30), "DE", "mobile", "en-US", V1, city="Munich, DE-BY"),  # Berlin 10-25 23:30
    Click(utc(2026, 10, 25, 22, 45), "DE", "mobile", "EN-us", V2, city="Berlin, DE-BE"),  # Berlin 10-25 23:45
    Click(utc(2026, 10, 25, 23, 30), "FR", "desktop", "fr", V3),  # Berlin 10-26 00:30
]
# Around Kolkata's midnight (+05:30): 2026-11-11 runs from 2026-11-10T18:30Z to 2026-11-11T18:30Z.
KOLKATA = [
    Click(utc(2026, 11, 10, 18, 29), "IN", "mobile", "hi", V1),  # Kolkata 11-10 23:59
    Click(utc(2026, 11, 10, 18, 30), "IN", "mobile", "hi", V1),  # Kolkata 11-11 00:00
    Click(utc(2026, 11, 11, 3, 0), "IN", "desktop", "en-IN", V2),  # Kolkata 11-11 08:30
    Click(utc(2026, 11, 11, 18, 29, 59), "IN", "mobile", "hi", V3),  # Kolkata 11-11 23:59:59
    Click(utc(2026, 11, 11, 18, 30), "IN", "mobile", "hi", V3),  # Kolkata 11-12 00:00
]

_INSERT = """
INSERT INTO click_events (id, ts, link_id, code, country, device, lang, visitor, is_bot, city, browser, os)
SELECT gen_random_uuid(), ts, $1, $2, country, device, lang, visitor, is_bot, city, 'Firefox', 'Linux'
FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::boolean[], $9::text[])
     AS c(ts, country, device, lang, visitor, is_bot, city)
"""
# Every rollup of one link, from its stored clicks, as ingest keeps them (UTC buckets).
_ROLLUPS = [
    """INSERT INTO link_totals (link_id, clicks, bot_clicks, last_click_at)
       SELECT link_id, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot), max(ts)
       FROM click_events WHERE link_id = $1 GROUP BY 1""",
    *(
        f"""INSERT INTO link_clicks_{step} (link_id, bucket, clicks, bot_clicks)
            SELECT link_id, date_trunc('{step}', ts, 'UTC'), count(*) FILTER (WHERE NOT is_bot),
                   count(*) FILTER (WHERE is_bot)
            FROM click_events WHERE link_id = $1 GROUP BY 1, 2"""
        for step in ("minute", "hour", "day")
    ),
    *(
        f"""INSERT INTO link_dimension_{table} (link_id, bucket, dimension, value, clicks, bot_clicks)
            SELECT link_id, {bucket}, d.dimension, d.value, count(*) FILTER (WHERE NOT is_bot),
                   count(*) FILTER (WHERE is_bot)
            FROM click_events {lateral_values("d")}
            WHERE link_id = $1 AND {located_only_sql("d")} GROUP BY 1, 2, 3, 4"""
        for table, bucket in (("day", "(ts AT TIME ZONE 'UTC')::date"), ("hour", "date_trunc('hour', ts, 'UTC')"))
    ),
    """INSERT INTO link_visitors_day (link_id, day, is_bot, visitor)
       SELECT DISTINCT link_id, (ts AT TIME ZONE 'UTC')::date, is_bot, visitor FROM click_events WHERE link_id = $1""",
    """INSERT INTO link_visitor_counts_day (link_id, day, visitors, bot_visitors)
       SELECT link_id, day, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot)
       FROM link_visitors_day WHERE link_id = $1 GROUP BY 1, 2""",
]


async def store(client: AsyncTestClient, db: asyncpg.Connection, code: str, clicks: list[Click]) -> int:
    """Create link `code` through the API and store its clicks and their rollups; its id."""
    created = await client.post("/api/v1/links", json={"url": f"https://example.com/{code}", "code": code})
    assert created.status_code == 201, created.text
    link_id: int = await db.fetchval("SELECT id FROM links WHERE code = $1", code)
    columns = list(zip(*clicks, strict=True))
    async with db.transaction():
        await db.execute(_INSERT, link_id, code, *columns)
        for statement in _ROLLUPS:
            await db.execute(statement, link_id)
    return link_id


def points(body: dict[str, Any]) -> list[tuple[str, int, int, int, int]]:
    return [(p["ts"], p["clicks"], p["bots"], p["visitors"], p["bot_visitors"]) for p in body["series"]]


def ranked(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"value": v, "clicks": c} for v, c in pairs]


async def stats(client: AsyncTestClient, code: str, **params: str) -> dict[str, Any]:
    response = await client.get(STATS.format(code=code), params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def autumn(client: AsyncTestClient, db: asyncpg.Connection) -> int:
    """Link "autumn" with the AUTUMN clicks stored; its id."""
    return await store(client, db, "autumn", AUTUMN)


@pytest.fixture
async def kolkata(client: AsyncTestClient, db: asyncpg.Connection) -> int:
    """Link "kolkata" with the KOLKATA clicks stored; its id."""
    return await store(client, db, "kolkata", KOLKATA)


@pytest.mark.usefixtures("autumn")
async def test_berlin_days_are_local_and_the_dst_day_has_25_hours(client: AsyncTestClient) -> None:
    body = await stats(client, "autumn", **{"from": "2026-10-24", "to": "2026-10-27", "interval": "day",
                                            "tz": "Europe/Berlin"})  # fmt: skip
    assert (body["from"], body["to"], body["tz"], body["filters"]) == (
        "2026-10-24T00:00:00+02:00", "2026-10-27T00:00:00+01:00", "Europe/Berlin", {}
    )  # fmt: skip
    # 10-25 holds 22:30Z on the 24th and 22:30Z and 22:45Z on the 25th: 25 hours. Visitors are distinct
    # (UTC day, key) pairs: V1 on two UTC days is two.
    assert points(body) == [
        ("2026-10-24T00:00:00+02:00", 1, 0, 1, 0),
        ("2026-10-25T00:00:00+02:00", 3, 1, 3, 1),
        ("2026-10-26T00:00:00+01:00", 1, 0, 1, 0),
    ]
    assert (body["total"], body["bots"], body["visitors"], body["bot_visitors"]) == (5, 1, 5, 1)
    # The same window in UTC days tells another story: 22:30Z and 23:30Z are on the UTC day before and after.
    utc_days = await stats(client, "autumn", **{"from": "2026-10-24", "to": "2026-10-27", "interval": "day"})
    assert [p[:3] for p in points(utc_days)] == [
        ("2026-10-24T00:00:00Z", 2, 0),
        ("2026-10-25T00:00:00Z", 3, 1),
        ("2026-10-26T00:00:00Z", 0, 0),
    ]


@pytest.mark.usefixtures("autumn")
async def test_berlin_spring_day_has_23_hours_and_every_point_carries_its_offset(client: AsyncTestClient) -> None:
    body = await stats(client, "autumn", **{"from": "2026-03-28", "to": "2026-03-31", "interval": "day",
                                            "tz": "Europe/Berlin"})  # fmt: skip
    assert [p["ts"] for p in body["series"]] == [
        "2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"
    ]  # fmt: skip
    assert body["total"] == 0


@pytest.mark.usefixtures("kolkata")
async def test_kolkata_days_and_hours_are_exact_at_the_half_hour(client: AsyncTestClient) -> None:
    days = await stats(client, "kolkata", **{"from": "2026-11-10", "to": "2026-11-13", "interval": "day",
                                             "tz": "Asia/Kolkata"})  # fmt: skip
    assert points(days) == [
        ("2026-11-10T00:00:00+05:30", 1, 0, 1, 0),
        ("2026-11-11T00:00:00+05:30", 3, 0, 3, 0),  # 18:30Z, 03:00Z and 18:29:59Z; V1 here is its key of UTC day 11-10
        ("2026-11-12T00:00:00+05:30", 1, 0, 1, 0),
    ]
    hours = await stats(client, "kolkata", **{"from": "2026-11-11T00:00:00+05:30", "to": "2026-11-11T02:00:00+05:30",
                                              "interval": "hour", "tz": "Asia/Kolkata"})  # fmt: skip
    assert points(hours) == [("2026-11-11T00:00:00+05:30", 1, 0, 1, 0), ("2026-11-11T01:00:00+05:30", 0, 0, 0, 0)]
    # Under one filter (no dimension rollup per minute: counted from the clicks), still exact.
    filtered = await stats(client, "kolkata", **{"from": "2026-11-11", "to": "2026-11-12", "interval": "day",
                                                 "tz": "Asia/Kolkata", "device": "mobile"})  # fmt: skip
    assert points(filtered) == [("2026-11-11T00:00:00+05:30", 2, 0, 2, 0)]
    assert filtered["top"]["languages"] == ranked(("hi", 2))


@pytest.mark.usefixtures("autumn")
async def test_one_filter_narrows_series_totals_visitors_and_top_lists(client: AsyncTestClient) -> None:
    params = {"from": "2026-10-24", "to": "2026-10-27", "tz": "Europe/Berlin", "country": "de"}
    days = await stats(client, "autumn", interval="day", **params)
    assert days["filters"] == {"country": "DE"}
    assert points(days) == [
        ("2026-10-24T00:00:00+02:00", 0, 0, 0, 0),
        ("2026-10-25T00:00:00+02:00", 3, 0, 3, 0),
        ("2026-10-26T00:00:00+01:00", 0, 0, 0, 0),
    ]
    top = days["top"]
    assert top["countries"] == ranked(("DE", 3))  # the filtered dimension: just its value
    assert top["devices"] == ranked(("mobile", 2), ("desktop", 1))
    assert top["languages"] == ranked(("en-us", 2), ("de-de", 1))  # lower-cased: EN-us and en-US are one
    assert top["cities"] == ranked(("Munich, DE-BY", 2), ("Berlin, DE-BE", 1))
    # The same filter by hour, from the hour rollup of the dimension.
    hours = await stats(client, "autumn", interval="hour", **params)
    assert [(p["ts"], p["clicks"]) for p in hours["series"] if p["clicks"] or p["bots"]] == [
        ("2026-10-25T00:00:00+02:00", 1),
        ("2026-10-25T23:00:00+01:00", 2),
    ]
    assert (hours["total"], hours["visitors"]) == (3, 3)
    # UTC days, the dimension's day rollup.
    utc_days = await stats(client, "autumn", **{"from": "2026-10-24", "to": "2026-10-27", "interval": "day",
                                                "country": "DE"})  # fmt: skip
    assert [p[:2] for p in points(utc_days)] == [
        ("2026-10-24T00:00:00Z", 1), ("2026-10-25T00:00:00Z", 2), ("2026-10-26T00:00:00Z", 0)
    ]  # fmt: skip
    assert (utc_days["visitors"], utc_days["tz"]) == (3, "UTC")


@pytest.mark.usefixtures("autumn")
async def test_several_filters_and_minute_series_count_the_matching_clicks(client: AsyncTestClient) -> None:
    both = await stats(client, "autumn", **{"from": "2026-10-24", "to": "2026-10-27", "interval": "day",
                                            "country": "DE", "device": "mobile", "lang": "EN-US"})  # fmt: skip
    assert both["filters"] == {"country": "DE", "device": "mobile", "lang": "en-us"}
    assert [p[:3] for p in points(both)] == [
        ("2026-10-24T00:00:00Z", 0, 0), ("2026-10-25T00:00:00Z", 2, 0), ("2026-10-26T00:00:00Z", 0, 0)
    ]  # fmt: skip
    assert (both["total"], both["visitors"]) == (2, 2)
    assert (both["top"]["countries"], both["top"]["devices"], both["top"]["languages"]) == (
        ranked(("DE", 2)), ranked(("mobile", 2)), ranked(("en-us", 2))
    )  # fmt: skip
    # Bots are filtered like humans, counted apart.
    bots = await stats(client, "autumn", **{"from": "2026-10-25T01:00:00Z", "to": "2026-10-25T02:00:00Z",
                                            "interval": "minute", "device": "mobile"})  # fmt: skip
    assert [(p["ts"], p["bots"], p["bot_visitors"]) for p in bots["series"] if p["bots"]] == [
        ("2026-10-25T01:30:00Z", 1, 1)
    ]
    assert (bots["total"], bots["bots"], bots["top"]["devices"]) == (0, 1, [])
    # An empty value selects the unknown: no click has an unknown country.
    unknown = await stats(client, "autumn", **{"from": "2026-10-24", "to": "2026-10-27", "country": ""})
    assert (unknown["total"], unknown["filters"], unknown["top"]["countries"]) == (0, {"country": ""}, [])


@pytest.mark.usefixtures("autumn")
async def test_top_lists_cover_exactly_the_window_and_name_languages(client: AsyncTestClient) -> None:
    # [10-25 01:00Z, 10-25 23:00Z), inside one UTC day: hours only. 22:30Z on the 24th and 23:30Z on the 25th are
    # outside, though on the days the window touches.
    inside = await stats(client, "autumn", **{"from": "2026-10-25T01:00:00Z", "to": "2026-10-25T23:00:00Z",
                                              "interval": "hour"})  # fmt: skip
    assert inside["top"]["countries"] == ranked(("DE", 2))
    assert inside["top"]["languages"] == ranked(("en-us", 2))
    # [10-24 22:00Z, 10-26 01:00Z): two edge hours of the 24th, the whole 25th, one hour of the 26th.
    across = await stats(client, "autumn", **{"from": "2026-10-24T22:00:00Z", "to": "2026-10-26T01:00:00Z",
                                              "interval": "hour"})  # fmt: skip
    assert across["top"]["countries"] == ranked(("DE", 3), ("FR", 1))
    assert across["top"]["languages"] == ranked(("en-us", 2), ("de-de", 1), ("fr", 1))
    assert across["total"] == 4
    # Berlin's 10-25 in days: the local day, from whole hours.
    local = await stats(client, "autumn", **{"from": "2026-10-25", "to": "2026-10-26", "tz": "Europe/Berlin"})
    assert local["top"]["countries"] == ranked(("DE", 3))
    assert local["top"]["devices"] == ranked(("mobile", 2), ("desktop", 1))


async def test_as_of_and_ingest_lag_say_how_fresh_an_answer_is(
    client: AsyncTestClient, db: asyncpg.Connection, autumn: int
) -> None:
    before = await stats(client, "autumn", **{"from": "2026-10-24", "to": "2026-10-27"})
    # The newest click, bots included; no ingest has reported yet.
    assert (before["as_of"], before["ingest_lag"]) == ("2026-10-25T23:30:00Z", None)
    await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "never"})
    assert (await stats(client, "never"))["as_of"] is None
    # Two shards report, as the ingest role writes them.
    async with db.transaction():
        await db.execute("SET LOCAL ROLE linkpulse_ingest")
        await db.execute(
            "INSERT INTO ingest_progress (shard, pending, behind_seconds, reported_at) VALUES "
            "(0, 5, 1.5, now()), (1, 7, 3.25, now() - interval '10 seconds')"
        )
    reported = await db.fetchval("SELECT min(reported_at) FROM ingest_progress")
    lag = (await stats(client, "autumn"))["ingest_lag"]
    assert (lag["pending"], lag["seconds"], lag["stale"]) == (12, 3.25, False)
    assert datetime.fromisoformat(lag["reported_at"]) == reported
    overview = (await client.get(OVERVIEW)).json()
    assert (overview["as_of"], overview["ingest_lag"]) == ("2026-10-25T23:30:00Z", lag)
    # A shard that stopped reporting 31 s ago makes the figure stale.
    await db.execute("UPDATE ingest_progress SET reported_at = now() - interval '31 seconds' WHERE shard = 1")
    assert (await stats(client, "autumn"))["ingest_lag"]["stale"] is True


@pytest.mark.usefixtures("autumn", "kolkata")
async def test_overview_has_the_top_countries_and_cities_of_the_window(client: AsyncTestClient) -> None:
    # [10-24 22:00Z, 11-11 04:00Z): an edge hour-pair, whole days, and hours of 11-11 up to 04:00Z.
    body = (await client.get(OVERVIEW, params={"from": "2026-10-24T22:00:00Z", "to": "2026-11-11T04:00:00Z"})).json()
    assert body["countries"] == ranked(("DE", 3), ("IN", 3), ("FR", 1))
    assert body["cities"] == ranked(("Munich, DE-BY", 2), ("Berlin, DE-BE", 1))
    assert (body["clicks"], body["tz"], body["as_of"]) == (7, "UTC", "2026-11-11T18:30:00Z")
    # Dates in a tz are its midnights, floored to UTC hours: Berlin's 10-26 is [10-25 23:00Z, 10-26 23:00Z).
    berlin = (
        await client.get(OVERVIEW, params={"from": "2026-10-26", "to": "2026-10-27", "tz": "Europe/Berlin"})
    ).json()
    assert (berlin["from"], berlin["tz"], berlin["countries"]) == (
        "2026-10-26T00:00:00+01:00", "Europe/Berlin", ranked(("FR", 1))
    )  # fmt: skip


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "tz: not an IANA timezone name"),
        ({"tz": "Europe/" + "B" * 300}, "tz: not an IANA timezone name"),
        ({"tz": "../../etc/passwd"}, "tz: not an IANA timezone name"),
        ({"country": "Germany"}, "country: an ISO 3166-1 alpha-2 code"),
        ({"device": "toaster"}, "device: one of"),
        ({"referrer": "x" * 300}, "referrer: at most 256 characters"),
    ],
)
async def test_bad_tz_or_filters_are_422_naming_the_parameter(
    client: AsyncTestClient, params: dict[str, str], detail: str
) -> None:
    await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "bad"})
    for path in (STATS.format(code="bad"), OVERVIEW):
        if "tz" not in params and path == OVERVIEW:
            continue  # the overview takes no filters
        response = await client.get(path, params=params)
        assert response.status_code == 422, response.text
        assert detail in response.json()["detail"]


async def test_the_admin_role_reads_every_source_of_sliced_stats(
    client: AsyncTestClient, db: asyncpg.Connection, database_url: str, autumn: int
) -> None:
    # The rights of 0010 exactly, as the admin login has them: each table the plans read, and no other column.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, server_settings={"role": "linkpulse_admin"})
    try:
        service = StatsService(pool)
        now = utc(2026, 11, 1)
        cases: list[tuple[str, str, str, str, dict[str, str]]] = [
            ("2026-10-25", "2026-10-26", "day", "UTC", {}),  # the click and dimension rollups
            ("2026-10-25", "2026-10-26", "hour", "Asia/Kolkata", {}),  # the minute rollup, visitors from clicks
            ("2026-10-25", "2026-10-26", "day", "Europe/Berlin", {"country": "DE"}),  # the dimension hour rollup
            ("2026-10-25", "2026-10-26", "day", "UTC", {"country": "DE"}),  # the dimension day rollup
            ("2026-10-25T22:00:00Z", "2026-10-25T23:00:00Z", "minute", "UTC", {"country": "DE", "lang": "en-us"}),
        ]
        for start, end, interval, tz, filters in cases:
            window = series_window(start, end, interval, now, parse_tz(tz))
            answer = await service.link_stats("autumn", window, provide_filters(**filters))
            assert answer is not None and answer.as_of == utc(2026, 10, 25, 23, 30), (interval, tz, filters)
        assert (await service.overview(utc(2026, 10, 24), utc(2026, 10, 27), 10)).countries
    finally:
        await pool.close()


async def test_openapi_describes_tz_filters_and_freshness(client: AsyncTestClient) -> None:
    del client.headers["Authorization"]  # the schema is public
    schema = (await client.get("/schema/openapi.json")).json()
    link = schema["paths"]["/api/v1/links/{code}/stats"]["get"]
    described = {p["name"]: p.get("description", "") for p in link["parameters"]}
    for name in ("tz", "country", "referrer", "browser", "os", "device", "region", "city", "asn", "lang"):
        assert described.get(name), name
    overview = schema["paths"]["/api/v1/stats/overview"]["get"]
    assert any(p["name"] == "tz" and p.get("description") for p in overview["parameters"])
    components = schema["components"]["schemas"]
    for struct, fields in (("LinkStats", ("tz", "filters", "as_of", "ingest_lag", "top")),
                           ("Overview", ("tz", "countries", "cities", "as_of", "ingest_lag")),
                           ("TopValues", ("languages",)), ("IngestLag", ("pending", "seconds", "reported_at", "stale")),
                           ("Point", ("ts",))):  # fmt: skip
        properties = components[struct]["properties"]
        for field in fields:
            text = str(properties[field])
            assert "description" in text, (struct, field)
