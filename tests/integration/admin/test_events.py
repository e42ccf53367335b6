"""The events list and the analytics CSVs against the real admin app and Postgres.

Clicks are enriched and stored by ingest's own code (`click_row`, `write_batch`: the statement a pod runs, rollups
included), straight into the test's database; the CSVs of the stats are compared with the JSON answers of the
same queries over the clicks `test_stats` sends through JetStream.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from tests.integration.admin.conftest import ServeAdmin
from tests.integration.admin.test_stats import (  # noqa: F401  (fixtures used by name)
    DAY1,
    DAY2,
    OVERVIEW,
    STATS,
    TODAY,
    at,
    clicked,
    ingest,
    iso,
)
from tests.integration.ingest.conftest import CHROME, click
from tests.polling import eventually

from linkpulse.admin.settings import AdminSettings
from linkpulse.admin.stats.events import EventsService, decode_cursor, encode_cursor, events_query, page_sql
from linkpulse.admin.stats.events_schemas import CLICK_FIELDS
from linkpulse.admin.stats.filters import parse_filters
from linkpulse.apikeys import generate_key, hash_key, key_prefix
from linkpulse.dimensions import DIMENSIONS
from linkpulse.ingest.batch import click_row
from linkpulse.ingest.store import prepare_connection, write_batch

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
EVENTS = "/api/v1/links/{code}/events"
EVENTS_CSV = "/api/v1/links/{code}/events.csv"
SERIES_CSV = "/api/v1/links/{code}/stats/series.csv"
TOP_CSV = "/api/v1/links/{code}/stats/top.csv"
OVERVIEW_CSV = "/api/v1/stats/overview.csv"


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


async def store(db: asyncpg.Connection, code: str, clicks: Sequence[dict[str, Any]]) -> list[str]:
    """Store clicks of link `code` as ingest does (one transaction); each dict holds ClickEvent fields. Event ids."""
    link_id = await db.fetchval("SELECT id FROM links WHERE code = $1", code)
    events = [click(code, link_id, **fields) for fields in clicks]
    await prepare_connection(db)
    async with db.transaction():
        result = await write_batch(db, [click_row(e) for e in events], [])
    assert result.inserted == len(events)
    return [str(e.id) for e in events]


async def walk(client: AsyncTestClient, code: str, **params: str) -> tuple[list[dict[str, Any]], int]:
    """Every page of a link's events; the events in order, and how many pages it took."""
    events: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(EVENTS.format(code=code), params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["events"]) <= int(params.get("limit", 100))
        events += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return events, pages
        assert pages < 1000, "the walk does not end"


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def as_cells(event: dict[str, Any]) -> dict[str, str]:
    """A list event as its CSV row shows it."""
    return {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in event.items()}


@pytest.fixture
async def many(db: asyncpg.Connection, make_link: Any) -> list[str]:
    """Link "many": 23 clicks over a few seconds, three groups sharing one millisecond each, plus one bot;
    link "else": two clicks of its own. The ids of "many", in storing order."""
    await make_link("many")
    await make_link("else")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    stamps = [base + timedelta(seconds=s) for s in (0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5, 5, 5, 6, 7, 8, 9, 10, 11)]
    stamps += [base + timedelta(seconds=12, milliseconds=1)] * 4
    ids = await store(db, "many", [{"ts": ms(ts), "ua": CHROME} for ts in stamps])
    await store(db, "else", [{"ts": ms(base)}, {"ts": ms(base + timedelta(seconds=5))}])
    return ids


async def test_pages_walk_every_click_once_newest_first_ties_broken_by_id(
    client: AsyncTestClient, db: asyncpg.Connection, many: list[str]
) -> None:
    expected = await db.fetch("SELECT id, ts FROM click_events WHERE code = 'many'")
    # Newest first; clicks of one millisecond by id, highest first (Postgres and Python order uuids alike).
    order = [str(r["id"]) for r in sorted(expected, key=lambda r: (r["ts"], r["id"]), reverse=True)]
    for limit in ("1", "4", "5", "23", "1000"):
        events, pages = await walk(client, "many", limit=limit)
        assert [e["id"] for e in events] == order, limit
        assert pages == max(1, -(-len(order) // int(limit))), limit
    # Equal times did occur across page boundaries (four at 12.001 s with pages of 1, 4 and 5).
    times = [e["ts"] for e in events]
    assert times == sorted(times, reverse=True) and len(set(times)) < len(times)
    # The default page is 100.
    first = (await client.get(EVENTS.format(code="many"))).json()
    assert (len(first["events"]), first["next_cursor"]) == (23, None)


async def test_a_click_stored_during_a_walk_never_shifts_it(
    client: AsyncTestClient, db: asyncpg.Connection, many: list[str]
) -> None:
    page = (await client.get(EVENTS.format(code="many"), params={"limit": "10"})).json()
    # A newer click arrives between two pages: the walk goes on below where it was.
    await store(db, "many", [{"ts": ms(datetime.now(UTC))}])
    rest = (await client.get(EVENTS.format(code="many"), params={"limit": "100", "cursor": page["next_cursor"]})).json()
    ids = [e["id"] for e in page["events"] + rest["events"]]
    assert sorted(ids) == sorted(many) and len(ids) == len(set(ids))


async def test_each_event_has_the_enriched_fields(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: Any
) -> None:
    await make_link("rich")
    when = datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC)
    human, bot = await store(
        db,
        "rich",
        [
            {
                "ts": ms(when),
                "ua": IPHONE,
                "country": "de",
                "lang": "de-DE",
                "referrer": "https://www.google.com/search",
                "ip": "198.51.100.0",
            },
            {"ts": ms(when) + 1, "ua": GOOGLEBOT},
        ],
    )
    events = (await client.get(EVENTS.format(code="rich"))).json()["events"]
    assert [e["id"] for e in events] == [bot, human]
    assert list(events[1]) == list(CLICK_FIELDS)  # and never the address
    assert events[1] == {
        "id": human,
        "ts": "2026-11-20T10:00:00.123000Z",
        "bot": False,
        "country": "DE",
        "region": "",
        "city": "",
        "asn": "",
        "referrer": "https://www.google.com/search",
        "referrer_host": "google.com",
        "lang": "de-DE",
        "browser": "Mobile Safari",
        "os": "iOS",
        "device": "mobile",
        "ua": IPHONE,
    }
    assert (events[0]["bot"], events[0]["ua"], events[0]["ts"]) == (True, GOOGLEBOT, "2026-11-20T10:00:00.124000Z")


async def test_the_window_and_the_filters_narrow_the_list(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: Any
) -> None:
    await make_link("sliced")
    day = datetime(2026, 11, 20, tzinfo=UTC)
    ids = await store(
        db,
        "sliced",
        [
            {"ts": ms(day), "ua": IPHONE, "country": "DE", "lang": "de-DE"},
            {"ts": ms(day + timedelta(hours=1)), "ua": CHROME, "country": "DE", "lang": "en-US"},
            {"ts": ms(day + timedelta(hours=2)), "ua": IPHONE, "country": "FR", "lang": "DE-de"},
            {"ts": ms(day + timedelta(hours=3)), "ua": IPHONE, "lang": "fr"},
        ],
    )

    async def listed(**params: str) -> list[str]:
        response = await client.get(EVENTS.format(code="sliced"), params=params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["events"]]

    assert await listed() == ids[::-1]
    # `from` inclusive, `to` exclusive, either alone.
    assert await listed(**{"from": "2026-11-20T01:00:00Z", "to": "2026-11-20T03:00:00Z"}) == [ids[2], ids[1]]
    assert await listed(**{"from": "2026-11-20T02:00:00+01:00"}) == [ids[3], ids[2], ids[1]]
    assert await listed(to="2026-11-20") == []
    # Filters as the stats take them: normalised, combined with AND, "" for unknown.
    assert await listed(country="de") == [ids[1], ids[0]]
    assert await listed(country="de", device="mobile") == [ids[0]]
    assert await listed(lang="de-de") == [ids[2], ids[0]]
    assert await listed(country="") == [ids[3]]
    assert await listed(browser="Mobile Safari", **{"from": "2026-11-20T01:00:00Z"}) == [ids[3], ids[2]]
    # Pages of a filtered list hold only matching clicks.
    first = (await client.get(EVENTS.format(code="sliced"), params={"device": "mobile", "limit": "2"})).json()
    assert [e["id"] for e in first["events"]] == [ids[3], ids[2]]
    rest = await listed(device="mobile", limit="2", cursor=first["next_cursor"])
    assert rest == [ids[0]]
    # The CSV takes the same window and filters.
    exported = await client.get(EVENTS_CSV.format(code="sliced"), params={"country": "DE", "to": "2026-11-20T01:00Z"})
    assert [r["id"] for r in rows(exported.text)] == [ids[0]]


def tampered_cursor() -> str:
    raw = msgspec.json.encode([10**20, str(uuid.uuid4())])  # a time past datetime's range
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


BAD = [
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "1e2"}, "limit"),
    ({"cursor": "garbage!"}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'[1, "not-a-uuid"]').decode()}, "cursor"),
    ({"cursor": tampered_cursor()}, "cursor"),
    ({"cursor": "A" * 5000}, "cursor"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-11-20T10:00:00"}, "to: give a timezone"),
    ({"from": "2026-11-21", "to": "2026-11-20"}, "from must be before to"),
    ({"country": "Germany"}, "country"),
    ({"device": "toaster"}, "device"),
    ({"city": "x" * 300}, "city"),
]


@pytest.mark.parametrize(("params", "named"), BAD)
async def test_bad_parameters_are_422_naming_them(
    client: AsyncTestClient, make_link: Any, params: dict[str, str], named: str
) -> None:
    await make_link("strict")
    paths = [EVENTS] if {"limit", "cursor"} & set(params) else [EVENTS, EVENTS_CSV]
    for path in paths:
        response = await client.get(path.format(code="strict"), params=params)
        assert response.status_code == 422, (path, response.text)
        assert named in response.json()["detail"], (path, response.text)


async def test_the_next_cursor_of_one_link_pages_another_only_by_position(
    client: AsyncTestClient, many: list[str]
) -> None:
    # A cursor is a position, not a capability: on "else" it only bounds by (ts, id), and never leaks "many".
    page = (await client.get(EVENTS.format(code="many"), params={"limit": "20"})).json()
    other = (await client.get(EVENTS.format(code="else"), params={"cursor": page["next_cursor"]})).json()
    assert {e["id"] for e in other["events"]}.isdisjoint(many)


async def test_unknown_or_deleted_link_is_404(client: AsyncTestClient, db: asyncpg.Connection, many: list[str]) -> None:
    await db.execute("UPDATE links SET deleted_at = now() WHERE code = 'else'")
    for code in ("nope", "else", "bad%20code", "x" * 65):
        for path in (EVENTS, EVENTS_CSV, SERIES_CSV, TOP_CSV):
            response = await client.get(path.format(code=code))
            assert response.status_code == 404, (path, code, response.text)
            assert "content-disposition" not in response.headers
    # A live link without clicks: an empty list, an empty CSV.
    await db.execute("INSERT INTO links (code, url) VALUES ('empty', 'https://example.com/')")
    assert (await client.get(EVENTS.format(code="empty"))).json() == {"events": [], "next_cursor": None}
    assert (await client.get(EVENTS_CSV.format(code="empty"))).text == ",".join(CLICK_FIELDS) + "\r\n"


async def test_events_and_exports_need_a_key_with_stats_read(
    client: AsyncTestClient, db: asyncpg.Connection, many: list[str]
) -> None:
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
    for path in (EVENTS, EVENTS_CSV, SERIES_CSV, TOP_CSV, OVERVIEW_CSV):
        url = path.format(code="many")
        anonymous = await client.get(url, headers={"Authorization": ""})
        assert anonymous.status_code == 401, url
        denied = await client.get(url, headers=keys["links:read"])
        assert denied.json() == {"status": 403, "detail": "this API key lacks the 'stats:read' scope"}, url
        assert (await client.get(url, headers=keys["stats:read"])).status_code == 200, url


async def test_the_events_csv_holds_exactly_the_listed_events(client: AsyncTestClient, many: list[str]) -> None:
    listed, _ = await walk(client, "many", limit="7")
    response = await client.get(EVENTS_CSV.format(code="many"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="many-events.csv"'
    assert response.text.startswith(",".join(CLICK_FIELDS) + "\r\n")
    assert rows(response.text) == [as_cells(e) for e in listed]


async def test_every_csv_neutralises_formulas(client: AsyncTestClient, db: asyncpg.Connection, make_link: Any) -> None:
    link_id = await make_link("formula", "https://example.com/=1")
    evil = ['=HYPERLINK("https://evil.example")', "+1+2", "-3", "@SUM(A1)", "\tcmd", "\rcmd", "'=x", "ok"]
    when = datetime.now(UTC) - timedelta(minutes=5)
    # Values ingest would never produce, written straight into the tables: what a CSV shows must hold anyway.
    for n, value in enumerate(evil):
        await db.execute(
            "INSERT INTO click_events (id, ts, link_id, code, ua, referrer, city, asn, lang) "
            "VALUES ($1, $2, $3, 'formula', $4, $4, $4, $4, $4)",
            uuid.uuid4(), when + timedelta(seconds=n), link_id, value,
        )  # fmt: skip
        await db.execute(
            "INSERT INTO link_dimension_day (link_id, bucket, dimension, value, clicks, bot_clicks) "
            "VALUES ($1, $2, 'referrer', $3, $4, 0)",
            link_id, when.date(), value, 100 - n,
        )  # fmt: skip
    expected = ["'" + v for v in evil[:-1]] + ["ok"]
    events = rows((await client.get(EVENTS_CSV.format(code="formula"))).text)
    for field in ("ua", "referrer", "city", "asn", "lang"):
        assert [r[field] for r in events] == expected[::-1], field
    # A whole UTC day: its top lists come from the day rollup written above (edge hours would read the hour one).
    day = {"from": when.date().isoformat(), "to": (when.date() + timedelta(days=1)).isoformat()}
    top = rows((await client.get(TOP_CSV.format(code="formula"), params=day)).text)
    assert [r["value"] for r in top if r["dimension"] == "referrer"] == expected


async def test_the_admin_role_reads_the_events_and_never_the_address(
    db: asyncpg.Connection, database_url: str, many: list[str]
) -> None:
    # The rights of 0009 and 0010 exactly, as the admin login has them.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, server_settings={"role": "linkpulse_admin"})
    try:
        events = EventsService(pool)
        page = await events.page("many", events_query(None, None, (), first_arg=3), 100)
        assert page is not None and len(page.events) == len(many)
        link_id = await events.link_id("many")
        assert link_id is not None
        text = "".join([chunk async for chunk in events.csv(link_id, events_query(None, None, (), first_arg=2))])
        assert len(rows(text)) == len(many)
        async with pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT ip FROM click_events")
    finally:
        await pool.close()


async def test_a_large_events_csv_streams_in_chunks(
    admin_settings: AdminSettings, admin_key: str, serve_admin: ServeAdmin, db: asyncpg.Connection, make_link: Any
) -> None:
    await make_link("big")
    start = datetime.now(UTC) - timedelta(days=1)
    await store(db, "big", [{"ts": ms(start) + n} for n in range(20_000)])
    async with serve_admin(admin_settings) as port, httpx.AsyncClient(timeout=30) as http:
        url = f"http://127.0.0.1:{port}{EVENTS_CSV.format(code='big')}"
        async with http.stream("GET", url, headers={"Authorization": f"Bearer {admin_key}"}) as response:
            assert response.status_code == 200
            assert response.headers["transfer-encoding"] == "chunked"
            chunks = [chunk async for chunk in response.aiter_raw()]
    # About 4 MB of CSV: many chunks, none near the whole.
    text = b"".join(chunks).decode()
    assert len(chunks) > 10
    assert max(len(c) for c in chunks) < len(text) // 10
    lines = rows(text)
    assert len(lines) == 20_000
    assert lines[0]["ts"] > lines[-1]["ts"]


async def test_a_client_gone_mid_export_gives_back_its_connection(
    admin_settings: AdminSettings, admin_key: str, serve_admin: ServeAdmin, db: asyncpg.Connection, make_link: Any
) -> None:
    await make_link("left")
    await store(db, "left", [{"ts": ms(datetime.now(UTC)) - n} for n in range(20_000)])

    async def exporting() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE '%ORDER BY ts DESC%' AND state LIKE 'idle in transaction%'"
        )

    async with serve_admin(admin_settings) as port:
        async with httpx.AsyncClient(timeout=30) as http:
            url = f"http://127.0.0.1:{port}{EVENTS_CSV.format(code='left')}"
            async with http.stream("GET", url, headers={"Authorization": f"Bearer {admin_key}"}) as response:
                # The first chunk is out: the export's transaction is open, waiting for the client to read on.
                await anext(response.aiter_raw())
                await eventually(exporting, "the export's transaction open")
        # The client has gone: the transaction ends and its connection goes back to the pool.
        await eventually(exporting, "the export's transaction closed", accept=lambda n: n == 0)


# The CSVs of the stats against their JSON answers, over `test_stats`' clicks.
WINDOWS = [
    {"from": iso(at(DAY1, 10, 15)), "to": iso(at(DAY1, 11, 30)), "interval": "minute"},
    {"from": iso(at(DAY1, 0)), "to": iso(TODAY), "interval": "hour"},
    {"from": iso(DAY1), "to": iso(TODAY)},
    {},
    # A timezone's days and a filter reach the CSVs as they reach the JSON answer.
    {"from": DAY1.date().isoformat(), "to": TODAY.date().isoformat(), "tz": "Europe/Berlin", "device": "desktop"},
    {"from": iso(at(DAY1, 0)), "to": iso(TODAY), "interval": "hour", "tz": "Asia/Kolkata", "country": "de"},
]


@pytest.mark.usefixtures("clicked")
async def test_series_and_top_csvs_equal_the_json_answer(client: AsyncTestClient) -> None:
    for params in WINDOWS:
        answer = await client.get(STATS.format(code="mix"), params=params)
        assert answer.status_code == 200, answer.text
        stats = answer.json()
        assert stats["tz"] == params.get("tz", "UTC")
        series = await client.get(SERIES_CSV.format(code="mix"), params=params)
        assert series.headers["content-type"] == "text/csv; charset=utf-8"
        assert series.headers["content-disposition"] == 'attachment; filename="mix-series.csv"'
        assert series.text.startswith("ts,clicks,bots,visitors,bot_visitors\r\n")
        assert rows(series.text) == [as_cells(p) for p in stats["series"]], params
        top = await client.get(TOP_CSV.format(code="mix"), params=params)
        assert top.headers["content-disposition"] == 'attachment; filename="mix-top.csv"'
        plural = {d.plural: d.name for d in DIMENSIONS}
        expected = [
            {"dimension": plural[key], "rank": str(rank), "value": r["value"], "clicks": str(r["clicks"])}
            for key, ranked in stats["top"].items()
            for rank, r in enumerate(ranked, start=1)
        ]
        got = rows(top.text)
        assert sorted(got, key=lambda r: (r["dimension"], int(r["rank"]))) == sorted(
            expected, key=lambda r: (r["dimension"], int(r["rank"]))
        )
        assert len(got) > 5
    # Bad parameters are the JSON answer's 422s.
    bad = await client.get(SERIES_CSV.format(code="mix"), params={"interval": "week"})
    assert bad.status_code == 422 and "interval" in bad.json()["detail"]


@pytest.mark.usefixtures("clicked")
async def test_the_overview_csv_equals_the_json_answer(client: AsyncTestClient) -> None:
    params = {"from": iso(DAY1), "to": iso(TODAY), "limit": "3"}
    answer = (await client.get(OVERVIEW, params=params)).json()
    exported = await client.get(OVERVIEW_CSV, params=params)
    assert exported.headers["content-disposition"] == 'attachment; filename="overview.csv"'
    keys = ("code", "url", "clicks", "bots", "visitors", "bot_visitors")
    assert rows(exported.text) == [{k: str(link[k]) for k in keys} for link in answer["top_links"]]
    assert len(answer["top_links"]) == 3
    bad = await client.get(OVERVIEW_CSV, params={"limit": "0"})
    assert bad.status_code == 422 and "limit" in bad.json()["detail"]


async def test_openapi_documents_the_events_and_the_exports(client: AsyncTestClient) -> None:
    del client.headers["Authorization"]  # the schema is public
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    operations = {
        "/api/v1/links/{code}/events": "listLinkEvents",
        "/api/v1/links/{code}/events.csv": "exportLinkEventsCsv",
        "/api/v1/links/{code}/stats/series.csv": "exportLinkSeriesCsv",
        "/api/v1/links/{code}/stats/top.csv": "exportLinkTopCsv",
        "/api/v1/stats/overview.csv": "exportStatsOverviewCsv",
    }
    for path, operation_id in operations.items():
        get = paths[path]["get"]
        assert get["operationId"] == operation_id
        assert get["summary"] and get["description"], path
        assert get["security"] == [{"apiKey": []}], path
        assert all(p.get("description") for p in get["parameters"]), path
        content = get["responses"]["200"]["content"]
        assert list(content) == (["application/json"] if path.endswith("/events") else ["text/csv"]), path
        assert {"401", "403", "422"} <= set(get["responses"]), path
    names = {p["name"] for p in paths["/api/v1/links/{code}/events"]["get"]["parameters"]}
    assert names >= {"code", "from", "to", "limit", "cursor", "country", "device", "lang", "city"}
    click_schema = schema["components"]["schemas"]["Click"]
    assert list(click_schema["properties"]) == list(CLICK_FIELDS)
    assert all(p.get("description") for p in click_schema["properties"].values())
    page = schema["components"]["schemas"]["ClickPage"]
    assert all(p.get("description") for p in page["properties"].values())


async def test_export_slots_bound_concurrent_event_exports(
    client: AsyncTestClient, admin_settings: AdminSettings, many: list[str]
) -> None:
    limits = client.app.state.limits
    # Every export slot taken (by other downloads): one more is refused at once, not queued.
    releases = [limits.export.take() for _ in range(admin_settings.admin.export_concurrency)]
    try:
        refused = await client.get(EVENTS_CSV.format(code="many"))
        assert refused.status_code == 503 and refused.headers["retry-after"]
    finally:
        for release in releases:
            release()
    assert (await client.get(EVENTS_CSV.format(code="many"))).status_code == 200
    assert limits.export.held == 0


def _scanned(plan: dict[str, Any]) -> int:
    """Rows the scans of click_events in an EXPLAIN ANALYZE plan read (returned plus removed by a filter)."""
    own = 0
    if plan.get("Relation Name", "").startswith("click_events"):
        own = plan["Actual Rows"] * plan["Actual Loops"] + plan.get("Rows Removed by Filter", 0)
    return own + sum(_scanned(p) for p in plan.get("Plans", ()))


async def test_a_deep_page_reads_about_limit_rows(db: asyncpg.Connection, make_link: Any) -> None:
    await make_link("deep")
    start = datetime.now(UTC) - timedelta(days=1)
    # 20,000 clicks, ten to a millisecond (ties at every page boundary), and as many of another link between.
    await store(db, "deep", [{"ts": ms(start) + n // 10} for n in range(20_000)])
    await make_link("beside")
    await store(db, "beside", [{"ts": ms(start) + n // 10} for n in range(20_000)])
    await db.execute("ANALYZE click_events")
    deep = await db.fetchrow(
        "SELECT id, ts FROM click_events WHERE code = 'deep' ORDER BY ts DESC, id DESC OFFSET 15005 LIMIT 1"
    )
    position = decode_cursor(encode_cursor(deep["ts"], deep["id"]))
    for filters in ((), parse_filters({"device": "desktop"})):
        query = events_query(None, None, filters, first_arg=3, after=position)
        sql = page_sql(query)
        explained = await db.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, "deep", 51, *query.args)
        plan = json.loads(explained)[0]["Plan"]
        # A page of 50 (+1) below position 15,005: the scan starts at the cursor along the (link_id, ts) index,
        # reading at most the page and the ties of its first millisecond, never the 15,000 clicks above it.
        assert _scanned(plan) <= 51 + 10, json.dumps(plan, indent=1)
