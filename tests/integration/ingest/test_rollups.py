"""Rollups kept by ingest: per minute, hour and day, and per dimension, with bots counted apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

import asyncpg
from nats.js import JetStreamContext
from tests.integration.ingest.conftest import CHROME, RunWorker, click, publish, stored
from tests.polling import eventually

from linkpulse.ingest.batch import click_row
from linkpulse.ingest.store import write_batch
from linkpulse.settings import ClicksSettings

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


ROLLUP_TABLES = (
    "link_clicks_day",
    "link_clicks_hour",
    "link_clicks_minute",
    "link_dimension_day",
    "link_dimension_hour",
    "link_totals",
)


def ms(*args: int) -> int:
    """Epoch milliseconds of a UTC time."""
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def test_rollups_match_the_known_mix(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: Callable[[str], Awaitable[int]],
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link = await make_link("mix")
    other = await make_link("other")
    # Two days, three hours, four minutes; one bot; a click for another link that must stay apart.
    mix = [
        click(
            "mix",
            link,
            ms(2025, 3, 10, 10, 15, 5),
            ua=CHROME,
            country="de",
            referrer="https://www.google.com/s",
            lang="de-DE",
        ),
        click("mix", link, ms(2025, 3, 10, 10, 15, 40), ua=IPHONE, country="US", lang="en-US"),
        click("mix", link, ms(2025, 3, 10, 10, 16, 0), ua=GOOGLEBOT, country="US"),
        click(
            "mix",
            link,
            ms(2025, 3, 10, 11, 0, 0),
            ua=CHROME,
            country="DE",
            referrer="https://news.ycombinator.com/",
            lang="DE-de",
        ),
        click("mix", link, ms(2025, 3, 11, 0, 0, 1), ua=IPHONE, referrer="https://t.co/x", lang="en-us"),
    ]
    # Published in several envelopes and stored in batches of two, so upserts add up across batches.
    for i in range(0, len(mix), 2):
        await publish(js, mix[i : i + 2], clicks_settings.shards)
    await publish(js, [click("other", other, ms(2025, 3, 10, 10, 15, 0))], clicks_settings.shards)

    async with run_worker(LINKPULSE_INGEST_BATCH_SIZE="2"):
        await eventually(lambda: stored(db, js, clicks_settings, 6), "6 clicks stored and acked")

    async def series(table: str) -> list[tuple[datetime, int, int]]:
        rows = await db.fetch(
            f"SELECT bucket, clicks, bot_clicks FROM {table} WHERE link_id = $1 ORDER BY bucket", link
        )
        return [tuple(r) for r in rows]

    assert await series("link_clicks_minute") == [
        (utc(2025, 3, 10, 10, 15), 2, 0),
        (utc(2025, 3, 10, 10, 16), 0, 1),
        (utc(2025, 3, 10, 11, 0), 1, 0),
        (utc(2025, 3, 11, 0, 0), 1, 0),
    ]
    assert await series("link_clicks_hour") == [
        (utc(2025, 3, 10, 10), 2, 1),
        (utc(2025, 3, 10, 11), 1, 0),
        (utc(2025, 3, 11, 0), 1, 0),
    ]
    assert await series("link_clicks_day") == [(utc(2025, 3, 10), 3, 1), (utc(2025, 3, 11), 1, 0)]

    totals = await db.fetchrow("SELECT clicks, bot_clicks, last_click_at FROM link_totals WHERE link_id = $1", link)
    assert tuple(totals) == (4, 1, utc(2025, 3, 11, 0, 0, 1))
    assert tuple(await db.fetchrow("SELECT clicks, bot_clicks FROM link_totals WHERE link_id = $1", other)) == (1, 0)

    dims = await db.fetch(
        "SELECT bucket, dimension, value, clicks, bot_clicks FROM link_dimension_day WHERE link_id = $1", link
    )
    d1, d2 = date(2025, 3, 10), date(2025, 3, 11)
    # "" is "unknown" (no country header, no referrer, unrecognised OS): kept so each dimension sums to the total.
    assert sorted(tuple(r) for r in dims) == sorted(
        [
            (d1, "country", "DE", 2, 0),
            (d1, "country", "US", 1, 1),
            (d1, "referrer", "google.com", 1, 0),
            (d1, "referrer", "news.ycombinator.com", 1, 0),
            (d1, "referrer", "", 1, 1),
            (d1, "browser", "Chrome", 2, 0),
            (d1, "browser", "Mobile Safari", 1, 0),
            (d1, "browser", "Googlebot", 0, 1),
            (d1, "os", "Windows", 2, 0),
            (d1, "os", "iOS", 1, 0),
            (d1, "os", "", 0, 1),
            (d1, "device", "desktop", 2, 0),
            (d1, "device", "mobile", 1, 0),
            (d1, "device", "bot", 0, 1),
            (d1, "lang", "de-de", 2, 0),
            (d1, "lang", "en-us", 1, 0),
            (d1, "lang", "", 0, 1),
            (d2, "country", "", 1, 0),
            (d2, "referrer", "t.co", 1, 0),
            (d2, "browser", "Mobile Safari", 1, 0),
            (d2, "os", "iOS", 1, 0),
            (d2, "device", "mobile", 1, 0),
            (d2, "lang", "en-us", 1, 0),
        ]
    )
    # Per UTC hour, the same dimensions: the hours of each day add up to its day rows.
    hours = await db.fetch(
        "SELECT bucket, dimension, value, clicks, bot_clicks FROM link_dimension_hour WHERE link_id = $1", link
    )
    by_day: dict[tuple[date, str, str], tuple[int, int]] = {}
    for r in hours:
        key = (r["bucket"].astimezone(UTC).date(), r["dimension"], r["value"])
        humans, bots = by_day.get(key, (0, 0))
        by_day[key] = (humans + r["clicks"], bots + r["bot_clicks"])
    assert by_day == {(r["bucket"], r["dimension"], r["value"]): (r["clicks"], r["bot_clicks"]) for r in dims}
    h10, h11, h0 = utc(2025, 3, 10, 10), utc(2025, 3, 10, 11), utc(2025, 3, 11, 0)
    assert sorted(tuple(r) for r in hours if r["dimension"] in ("device", "lang")) == sorted(
        [
            (h10, "device", "desktop", 1, 0),
            (h10, "device", "mobile", 1, 0),
            (h10, "device", "bot", 0, 1),
            (h11, "device", "desktop", 1, 0),
            (h0, "device", "mobile", 1, 0),
            (h10, "lang", "de-de", 1, 0),
            (h10, "lang", "en-us", 1, 0),
            (h10, "lang", "", 0, 1),
            (h11, "lang", "de-de", 1, 0),
            (h0, "lang", "en-us", 1, 0),
        ]
    )
    # The event rows keep the enrichment too, and their time is the event's, not the insert's.
    row = await db.fetchrow("SELECT * FROM click_events WHERE id = $1::uuid", mix[2].id)
    assert (row["ts"], row["is_bot"], row["browser"], row["device"], row["country"]) == (
        utc(2025, 3, 10, 10, 16, 0),
        True,
        "Googlebot",
        "bot",
        "US",
    )


async def test_buckets_are_utc_whatever_the_sessions_time_zone(
    ingest_db: asyncpg.Connection, make_link: Callable[[str], Awaitable[int]]
) -> None:
    """A pod's Postgres session may carry any TimeZone (a cluster default, a role setting): buckets stay UTC."""
    link = await make_link("tz")
    # 23:45 UTC is 05:15 the next day in Kolkata (+05:30): a local bucket would move the hour, the day and
    # the dimension row's date.
    rows = [click_row(click("tz", link, ms(2025, 3, 10, 23, 45, 0), country="IN")) for _ in range(2)]
    async with ingest_db.transaction():
        await ingest_db.execute("SET LOCAL TimeZone = 'Asia/Kolkata'")
        result = await write_batch(ingest_db, [*rows, rows[0]], [])  # the repeat is a duplicate, stored once
    assert (result.inserted, result.duplicates) == (2, 1)
    for table, bucket in (
        ("link_clicks_minute", utc(2025, 3, 10, 23, 45)),
        ("link_clicks_hour", utc(2025, 3, 10, 23)),
        ("link_clicks_day", utc(2025, 3, 10)),
    ):
        found = await ingest_db.fetch(f"SELECT bucket, clicks FROM {table} WHERE link_id = $1", link)
        assert [tuple(r) for r in found] == [(bucket, 2)], table
    dims = await ingest_db.fetch(
        "SELECT bucket, value FROM link_dimension_day WHERE link_id = $1 AND dimension = 'country'", link
    )
    assert [tuple(r) for r in dims] == [(date(2025, 3, 10), "IN")]
    hours = await ingest_db.fetch(
        "SELECT bucket, value FROM link_dimension_hour WHERE link_id = $1 AND dimension = 'country'", link
    )
    assert [tuple(r) for r in hours] == [(utc(2025, 3, 10, 23), "IN")]


async def test_rollup_tables_leave_room_for_in_place_updates(db: asyncpg.Connection) -> None:
    """Every batch updates its links' rollup rows: half-full pages keep those updates HOT (no new index entries)."""
    options = await db.fetch(
        "SELECT relname, reloptions FROM pg_class WHERE relname = ANY($1::text[]) ORDER BY relname",
        [*ROLLUP_TABLES],
    )
    assert {r["relname"]: r["reloptions"] for r in options} == {name: ["fillfactor=50"] for name in ROLLUP_TABLES}
