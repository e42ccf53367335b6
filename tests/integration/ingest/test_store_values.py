"""Every value of a click row reaches `click_events` exactly as enrich made it, however awkward its text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
from tests.conftest import MakeLink
from tests.integration.ingest.conftest import click

from linkpulse.ingest.batch import MAX_TS, MIN_TS, click_row
from linkpulse.ingest.store import write_batch

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

AWKWARD = [
    'quote " and backslash \\ and \\u0041 as text',
    "line\nbreak, tab\t, bell \x07 and escape \x1b[0m",
    "accents é ü, CJK 短链接, emoji 🔗 outside the BMP, RTL ‮ override",
    "",
]


@pytest.mark.parametrize("text", AWKWARD)
async def test_text_is_stored_byte_for_byte(ingest_db: asyncpg.Connection, make_link: MakeLink, text: str) -> None:
    link = await make_link("awkward")
    row = click_row(click("awkward", link, 1_733_250_000_123, ua=text, referrer=text, lang=text[:35]))
    async with ingest_db.transaction():
        assert (await write_batch(ingest_db, [row], [])).inserted == 1
    stored = await ingest_db.fetchrow("SELECT ua, referrer, lang FROM click_events WHERE id = $1", row.id)
    assert tuple(stored) == (row.ua, row.referrer, row.lang)


async def test_every_column_keeps_its_type_and_value(ingest_db: asyncpg.Connection, make_link: MakeLink) -> None:
    link = await make_link("typed")
    rows = [
        click_row(click("typed", link, 1_733_250_000_007, ip="2001:db8::", referrer="https://www.example.org/x")),
        click_row(click("typed", link, 1_733_250_000_999, ip="not an address", ua="curl/8.0")),
        click_row(click("typed", link, 1_733_250_001_000, ip="198.51.100.0", country="br")),
    ]
    async with ingest_db.transaction():
        assert (await write_batch(ingest_db, rows, [])).inserted == 3
    found = {str(r["id"]): r for r in await ingest_db.fetch("SELECT * FROM click_events WHERE link_id = $1", link)}
    for row in rows:
        stored = found[row.id]
        # Milliseconds exactly (the dedupe key is (id, ts)), text as text, booleans as booleans.
        assert stored["ts"] == EPOCH + timedelta(milliseconds=row.ts)
        assert {key: stored[key] for key in row._fields if key not in ("id", "ts", "ip")} == {
            key: value for key, value in row._asdict().items() if key not in ("id", "ts", "ip")
        }
        assert (None if stored["ip"] is None else str(stored["ip"])) == row.ip
    assert [found[r.id]["is_bot"] for r in rows] == [False, True, False]


# The ends of the accepted range, instants before the epoch (where whole seconds and the rest have opposite
# signs in Postgres's division), and instants past 2**53 microseconds, which float8 alone would round.
EDGE_TS = [MIN_TS, MIN_TS + 1, -1_500, -1, 1, 999, 9_999_999_999_999, 123_456_789_012_345, MAX_TS - 1, MAX_TS]


async def test_the_event_millisecond_is_stored_exactly_across_the_range(
    ingest_db: asyncpg.Connection, make_link: MakeLink
) -> None:
    link = await make_link("edges")
    rows = [click_row(click("edges", link, ts)) for ts in EDGE_TS]
    async with ingest_db.transaction():
        assert (await write_batch(ingest_db, rows, [])).inserted == len(rows)
    stored = await ingest_db.fetch("SELECT id::text, ts FROM click_events WHERE link_id = $1", link)
    assert {r["id"]: r["ts"] for r in stored} == {row.id: EPOCH + timedelta(milliseconds=row.ts) for row in rows}


async def test_an_id_in_another_spelling_is_stored_as_the_same_uuid(
    ingest_db: asyncpg.Connection, make_link: MakeLink
) -> None:
    link = await make_link("spelled")
    event = click("spelled", link, 1_733_250_000_123)
    spellings = [event.id.upper(), "{" + event.id + "}", event.id.replace("-", "")]
    rows = [click_row(msgspec.structs.replace(event, id=spelled)) for spelled in spellings]
    assert {row.id for row in rows} == {event.id}
    async with ingest_db.transaction():
        result = await write_batch(ingest_db, rows, [])
    # One event, however its id was written: the later spellings are duplicates of the first.
    assert (result.inserted, result.duplicates) == (1, 2)
    assert await ingest_db.fetchval("SELECT id::text FROM click_events WHERE link_id = $1", link) == event.id
