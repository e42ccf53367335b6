"""The bench's counting, against the real ingest path: what it calls published and stored is what happened."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from nats.js import JetStreamContext
from tests.bench.geoip_db import places
from tests.conftest import MakeLink
from tests.geoip_files import write_city
from tests.integration.ingest.conftest import RunWorker, click

from linkpulse.bench.counts import (
    ingest_backlog,
    placed_events,
    published_events,
    settled_last_seq,
    stored_events,
    stream_last_seq,
    wait_stored,
)
from linkpulse.bench.seed import publish_clicks
from linkpulse.events import ClickBatch, encode
from linkpulse.ids import new_event_id
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import click_subject
from linkpulse.settings import ClicksSettings


async def test_published_counts_events_after_a_sequence_and_spots_repeated_ids(
    nats_url: str, js: JetStreamContext, make_link: MakeLink
) -> None:
    link_id = await make_link("bc1")
    # 1. An envelope before the run's start sequence: not the run's, so not counted.
    await publish_with_id(js, click_subject(0), encode(ClickBatch(id=new_event_id(), events=[click("bc1", link_id)])),
                          new_event_id())  # fmt: skip
    start = await stream_last_seq(nats_url)
    # 2. The run: 1000 events in envelopes, as the redirect packs them.
    assert await publish_clicks(nats_url, [("bc1", link_id)], 1000, shards=4) == 1000
    # 3. An envelope that repeats one event id: a publisher bug the bench must show, not hide.
    twice = click("bc1", link_id)
    await publish_with_id(js, click_subject(0), encode(ClickBatch(id=new_event_id(), events=[twice, twice])),
                          new_event_id())  # fmt: skip
    assert await settled_last_seq(nats_url, quiet=0.1) == start + 5  # 4 envelopes of 256 at most, then 1

    published = await published_events(nats_url, start)
    assert (published.messages, published.events, published.distinct) == (5, 1002, 1001)


async def test_stored_and_backlog_follow_ingest_until_everything_is_stored_once(
    nats_url: str,
    js: JetStreamContext,
    db: asyncpg.Connection,
    database_url: str,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    links = [(f"bs{i}", await make_link(f"bs{i}")) for i in range(5)]
    ids = [link_id for _, link_id in links]
    other = await make_link("not-the-runs")
    await publish_clicks(nats_url, links, 3000, shards=clicks_settings.shards)
    # Nothing consumes yet: the backlog is every envelope, and nothing is stored.
    assert await ingest_backlog(nats_url, clicks_settings.shards) == (await js.stream_info("CLICKS")).state.messages
    assert (await stored_events(database_url, ids)).rows == 0

    async with run_worker():
        stored, seconds = await wait_stored(database_url, ids, 3000, timeout=60)
        assert stored == 3000 and seconds < 60
    counts = await stored_events(database_url, ids)
    assert (counts.rows, counts.distinct, counts.rollup_total, counts.duplicates) == (3000, 3000, 3000, 0)
    assert await ingest_backlog(nats_url, clicks_settings.shards) == 0

    # A row stored twice under one id (another ts) is what "duplicates" counts; other links never count.
    row = await db.fetchrow("SELECT id, ts FROM click_events WHERE link_id = $1 LIMIT 1", ids[0])
    await db.execute(
        "INSERT INTO click_events (id, ts, link_id, code) VALUES ($1, $2::timestamptz + interval '1 ms', $3, 'bs0'),"
        " ($4::uuid, now(), $5, 'not-the-runs')",
        row["id"], row["ts"], ids[0], new_event_id(), other,
    )  # fmt: skip
    counts = await stored_events(database_url, ids)
    assert (counts.rows, counts.distinct, counts.duplicates) == (3001, 3000, 1)


async def test_the_bench_database_places_every_bench_click(
    nats_url: str,
    database_url: str,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
    tmp_path: Path,
) -> None:
    # The GeoIP half of `linkpulse bench ingest` measures lookups that find a city, as a real database would.
    city = write_city(tmp_path / "bench-city.mmdb", places(extra=1000))
    links = [(f"bg{i}", await make_link(f"bg{i}")) for i in range(3)]
    ids = [i for _, i in links]
    await publish_clicks(nats_url, links, 2000, shards=clicks_settings.shards)
    async with run_worker(LINKPULSE_GEOIP_DATABASE=str(city)):
        assert (await wait_stored(database_url, ids, 2000, timeout=30))[0] == 2000
    assert await placed_events(database_url, ids) == 2000
    # Where the header names a country, the database agrees: the click keeps its region.
    assert await db.fetchval("SELECT count(*) FROM click_events WHERE link_id = ANY($1) AND region = ''", ids) == 0
