"""Every value of a click row reaches `click_events` exactly as enrich made it, however awkward its text."""

from __future__ import annotations

import asyncpg
import pytest
from tests.conftest import MakeLink
from tests.integration.ingest.conftest import click

from linkpulse.ingest.batch import click_row
from linkpulse.ingest.store import write_batch

AWKWARD = [
    'quote " and backslash \\ and \\u0041 as text',
    "line\nbreak, tab\t, bell \x07 and escape \x1b[0m",
    "accents é ü, CJK 短链接, emoji 🔗 outside the BMP, RTL ‮ override",
    "",
]


@pytest.mark.parametrize("text", AWKWARD)
async def test_text_is_stored_byte_for_byte(db: asyncpg.Connection, make_link: MakeLink, text: str) -> None:
    link = await make_link("awkward")
    row = click_row(click("awkward", link, 1_733_250_000_123, ua=text, referrer=text, lang=text[:35]))
    async with db.transaction():
        assert (await write_batch(db, [row], [])).inserted == 1
    stored = await db.fetchrow("SELECT ua, referrer, lang FROM click_events WHERE id = $1", row.id)
    assert tuple(stored) == (row.ua, row.referrer, row.lang)


async def test_every_column_keeps_its_type_and_value(db: asyncpg.Connection, make_link: MakeLink) -> None:
    link = await make_link("typed")
    rows = [
        click_row(click("typed", link, 1_733_250_000_007, ip="2001:db8::", referrer="https://www.example.org/x")),
        click_row(click("typed", link, 1_733_250_000_999, ip="not an address", ua="curl/8.0")),
        click_row(click("typed", link, 1_733_250_001_000, ip="198.51.100.0", country="br")),
    ]
    async with db.transaction():
        assert (await write_batch(db, rows, [])).inserted == 3
    found = {r["id"]: r for r in await db.fetch("SELECT * FROM click_events WHERE link_id = $1", link)}
    for row in rows:
        stored = found[row.id]
        # Milliseconds exactly (the dedupe key is (id, ts)), text as text, booleans as booleans.
        assert {key: stored[key] for key in row._fields if key != "ip"} == {
            key: value for key, value in row._asdict().items() if key != "ip"
        }
        assert (None if stored["ip"] is None else str(stored["ip"])) == row.ip
    assert [found[r.id]["is_bot"] for r in rows] == [False, True, False]
