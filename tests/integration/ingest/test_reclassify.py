"""`linkpulse reclassify` on real PostgreSQL: exactly the clicks whose class changes move, in every rollup."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest
from tests.integration.ingest.conftest import CHROME, click
from tests.integration.ingest.test_rollups import GOOGLEBOT, IPHONE, ms

from linkpulse.bots import BOT_RULES_VERSION, BotRules, is_bot
from linkpulse.cli.main import main
from linkpulse.db.reclassify import reclassify
from linkpulse.dimensions import lateral_values, located_only_sql
from linkpulse.ingest.batch import ClickRow, click_row
from linkpulse.ingest.store import prepare_connection, write_batch

# A browser's user agent the default rules count as human; the changed rule below makes it a bot.
ZEBRA = CHROME + " Zebrafish/2.0"
CHANGED = BotRules(extra=[r"Zebrafish/"])

MakeLink = Callable[..., Awaitable[int]]

# What every rollup holds, recounted from click_events; rows at zero in both columns are left out, since a
# rollup row whose clicks all moved stays behind at 0/0.
_RECOUNT: dict[str, str] = {
    "link_totals": "SELECT link_id, count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot) "
    "FROM click_events GROUP BY 1",
    **{
        f"link_clicks_{step}": f"SELECT link_id, date_trunc('{step}', ts, 'UTC'), count(*) FILTER (WHERE NOT is_bot), "
        "count(*) FILTER (WHERE is_bot) FROM click_events GROUP BY 1, 2"
        for step in ("minute", "hour", "day")
    },
    **{
        f"link_dimension_{step}": f"SELECT link_id, {bucket}, d.dimension, d.value, "
        f"count(*) FILTER (WHERE NOT is_bot), count(*) FILTER (WHERE is_bot) FROM click_events "
        f"{lateral_values('d')} WHERE {located_only_sql('d')} GROUP BY 1, 2, 3, 4"
        for step, bucket in (("day", "(ts AT TIME ZONE 'UTC')::date"), ("hour", "date_trunc('hour', ts, 'UTC')"))
    },
    "link_visitors_day": "SELECT DISTINCT link_id, (ts AT TIME ZONE 'UTC')::date, is_bot, visitor FROM click_events "
    "WHERE visitor IS NOT NULL",
    "link_visitor_counts_day": "SELECT link_id, (ts AT TIME ZONE 'UTC')::date, "
    "count(DISTINCT visitor) FILTER (WHERE NOT is_bot), count(DISTINCT visitor) FILTER (WHERE is_bot) "
    "FROM click_events WHERE visitor IS NOT NULL GROUP BY 1, 2",
}
_STORED: dict[str, str] = {
    "link_totals": "SELECT link_id, clicks, bot_clicks FROM link_totals",
    **{
        f"link_clicks_{step}": f"SELECT link_id, bucket, clicks, bot_clicks FROM link_clicks_{step}"
        for step in ("minute", "hour", "day")
    },
    **{
        f"link_dimension_{step}": "SELECT link_id, bucket, dimension, value, clicks, bot_clicks "
        f"FROM link_dimension_{step}"
        for step in ("day", "hour")
    },
    "link_visitors_day": "SELECT link_id, day, is_bot, visitor FROM link_visitors_day",
    "link_visitor_counts_day": "SELECT link_id, day, visitors, bot_visitors FROM link_visitor_counts_day",
}

Rollups = dict[str, set[tuple[Any, ...]]]


async def rollups(db: asyncpg.Connection) -> Rollups:
    """Every rollup row, without the ones at zero."""
    return {table: {tuple(r) for r in await db.fetch(sql) if r[-1] or r[-2]} for table, sql in _STORED.items()}


def dimension(state: Rollups, name: str, value: str, step: str = "day") -> dict[tuple[int, Any], tuple[int, int]]:
    """(link, day or hour) → (humans, bots) of one value of one dimension, from link_dimension_<step>."""
    return {(r[0], r[1]): (r[4], r[5]) for r in state[f"link_dimension_{step}"] if r[2] == name and r[3] == value}


async def recount(db: asyncpg.Connection) -> Rollups:
    return {table: {tuple(r) for r in await db.fetch(sql)} for table, sql in _RECOUNT.items()}


async def store(db: asyncpg.Connection, rows: list[ClickRow]) -> None:
    """Store rows as ingest does: one transaction, the rollups with them."""
    async with db.transaction():
        await write_batch(db, rows, [])


def visitor_key(address: int, ua: str, code: str, ts: int) -> str:
    """A stand-in for the redirect's key: 32 hex characters, one per (address, agent, link, UTC day)."""
    return hashlib.blake2b(f"{address}\0{ua}\0{code}\0{ts // 86_400_000}".encode(), digest_size=16).hexdigest()


# Browsers send a language tag in any case; the lang dimension counts them as one value (lower-cased).
LANGS = ["de-DE", "en-US", "de-de", ""]


def seed(links: dict[str, int]) -> list[ClickRow]:
    """Clicks over two days and many minutes, humans, bots and Zebrafish, one in 2001 (the default partition).

    Seven addresses click: a visitor key is one of them with a user agent, a link and a day, as the redirect's is.
    """
    agents = [CHROME, IPHONE, GOOGLEBOT, ZEBRA, ZEBRA, CHROME]
    rows = []
    for n in range(240):
        code = "a" if n % 3 else "b"
        ts = ms(2026, 11, 30, 22, 0, 0) + n * 37_000  # across midnight, many minutes and hours
        ua = agents[n % len(agents)]
        rows.append(click_row(click(code, links[code], ts, ua=ua, country="DE" if n % 2 else "",
                                    referrer="https://news.example/x" if n % 5 else "", lang=LANGS[n % 4],
                                    visitor=visitor_key(n % 7, ua, code, ts))))  # fmt: skip
    rows.append(click_row(click("a", links["a"], ms(2001, 5, 1, 12, 0, 0), ua=ZEBRA)))
    return rows


@pytest.fixture
async def links(make_link: MakeLink) -> dict[str, int]:
    return {"a": await make_link("a"), "b": await make_link("b")}


async def test_a_changed_rule_moves_exactly_its_clicks_in_every_rollup(
    ingest_db: asyncpg.Connection, links: dict[str, int]
) -> None:
    db = ingest_db
    await store(db, seed(links))
    before = await rollups(db)
    assert before == await recount(db)
    zebras = await db.fetch("SELECT link_id, ts FROM click_events WHERE ua = $1", ZEBRA)
    assert len(zebras) == 81 and not is_bot(ZEBRA)

    outcome = await reclassify(db, CHANGED, chunk_pages=1)

    assert (outcome.to_bots, outcome.to_humans, outcome.changed_agents) == (81, 0, 1)
    assert outcome.version == CHANGED.version != BOT_RULES_VERSION
    assert (
        await db.fetchval("SELECT count(*) FROM click_events WHERE ua = $1 AND is_bot AND device = 'bot'", ZEBRA) == 81
    )
    after = await rollups(db)
    assert after == await recount(db)
    # The Zebrafish visitors move to the bots' distinct visitors of their days, as many as there were.
    bot_visitors = [sum(1 for r in state["link_visitors_day"] if r[2]) for state in (before, after)]
    zebra_visitors = await db.fetchval(
        "SELECT count(DISTINCT (link_id, (ts AT TIME ZONE 'UTC')::date, visitor)) FROM click_events "
        "WHERE ua = $1 AND visitor IS NOT NULL",
        ZEBRA,
    )
    assert bot_visitors[1] - bot_visitors[0] == zebra_visitors > 0
    # The totals move by exactly the Zebrafish clicks of each link, humans to bots, and nothing else does.
    per_link = {link: sum(1 for z in zebras if z["link_id"] == link) for link in links.values()}
    totals_before = {r[0]: r[1:] for r in before["link_totals"]}
    assert {r[0]: r[1:] for r in after["link_totals"]} == {
        link: (humans - per_link[link], bots + per_link[link]) for link, (humans, bots) in totals_before.items()
    }
    # Every series keeps its bucket totals; the device dimension moves from desktop to bot.
    for step in ("minute", "hour", "day"):
        table = f"link_clicks_{step}"
        assert {(r[0], r[1], r[2] + r[3]) for r in after[table]} == {(r[0], r[1], r[2] + r[3]) for r in before[table]}
        assert after[table] != before[table]
    per_day: dict[tuple[int, date], int] = {}
    for z in zebras:
        key = (z["link_id"], z["ts"].astimezone(UTC).date())
        per_day[key] = per_day.get(key, 0) + 1
    for key, moved in per_day.items():
        desktop_before, desktop_after = dimension(before, "device", "desktop"), dimension(after, "device", "desktop")
        bot_before, bot_after = dimension(before, "device", "bot"), dimension(after, "device", "bot")
        assert desktop_before[key][0] - desktop_after.get(key, (0, 0))[0] == moved
        assert bot_after[key][1] - bot_before.get(key, (0, 0))[1] == moved
    # Per UTC hour too, and in every dimension the clicks keep their value in: each language's (link, hour)
    # rows move exactly that hour's Zebrafish clicks of the language from humans to bots, and keep their sum.
    zebra_langs = await db.fetch(
        "SELECT link_id, date_trunc('hour', ts, 'UTC') AS hour, lower(lang) AS lang, count(*) AS n "
        "FROM click_events WHERE ua = $1 GROUP BY 1, 2, 3",
        ZEBRA,
    )
    assert {r["lang"] for r in zebra_langs} == {"de-de", "en-us", ""}
    per_hour: dict[tuple[int, datetime], int] = {}
    for r in zebra_langs:
        key = (r["link_id"], r["hour"])
        per_hour[key] = per_hour.get(key, 0) + r["n"]
        lang_before, lang_after = (
            dimension(before, "lang", r["lang"], "hour"),
            dimension(after, "lang", r["lang"], "hour"),
        )
        assert lang_before[key][0] - lang_after[key][0] == r["n"]
        assert lang_after[key][1] - lang_before[key][1] == r["n"]
        assert sum(lang_after[key]) == sum(lang_before[key])
    for key, moved in per_hour.items():
        desktop_before = dimension(before, "device", "desktop", "hour")
        desktop_after = dimension(after, "device", "desktop", "hour")
        bot_before, bot_after = dimension(before, "device", "bot", "hour"), dimension(after, "device", "bot", "hour")
        assert desktop_before[key][0] - desktop_after.get(key, (0, 0))[0] == moved
        assert bot_after[key][1] - bot_before.get(key, (0, 0))[1] == moved
    # A value no Zebrafish click has keeps its hour rows as they were.
    phones = dimension(before, "device", "mobile", "hour")
    assert phones and phones == dimension(after, "device", "mobile", "hour")
    stored_rules = await db.fetchrow("SELECT * FROM bot_rules WHERE version = $1", CHANGED.version)
    assert stored_rules["reclassified_since"] == datetime(2001, 5, 1, 12, tzinfo=UTC)
    assert stored_rules["reclassified_clicks"] == 81

    # Twice changes nothing; the default rules then move the same clicks back, to the state ingest stored.
    again = await reclassify(db, CHANGED, chunk_pages=1)
    assert (again.to_bots, again.to_humans) == (0, 0)
    assert await rollups(db) == after
    back = await reclassify(db, BotRules())
    assert (back.to_bots, back.to_humans) == (0, 81)
    assert await rollups(db) == before


async def test_since_leaves_older_clicks_as_they_were(ingest_db: asyncpg.Connection, links: dict[str, int]) -> None:
    db = ingest_db
    await store(db, seed(links))
    since = datetime(2026, 12, 1, tzinfo=UTC)
    newer = await db.fetchval("SELECT count(*) FROM click_events WHERE ua = $1 AND ts >= $2", ZEBRA, since)

    outcome = await reclassify(db, CHANGED, since)

    assert 0 < outcome.to_bots == newer < 81
    assert await db.fetchval("SELECT count(*) FROM click_events WHERE ua = $1 AND is_bot", ZEBRA) == newer
    assert await rollups(db) == await recount(db)
    assert await db.fetchval("SELECT reclassified_since FROM bot_rules WHERE version = $1", CHANGED.version) == since


async def test_since_within_a_day_keeps_a_visitor_in_both_classes_that_day(
    ingest_db: asyncpg.Connection, links: dict[str, int]
) -> None:
    db = ingest_db
    await store(db, seed(links))
    # Ten minutes into the second day: a Zebrafish visitor's earlier clicks that day stay human, later ones move.
    since = datetime(2026, 12, 1, 0, 10, tzinfo=UTC)

    await reclassify(db, CHANGED, since)

    assert await rollups(db) == await recount(db)
    both = await db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM link_visitors_day WHERE day = '2026-12-01' "
        "GROUP BY link_id, visitor HAVING count(*) = 2) AS twice"
    )
    assert both > 0


async def test_clicks_stored_meanwhile_are_counted_once(
    ingest_db: asyncpg.Connection, database_url: str, links: dict[str, int]
) -> None:
    db = ingest_db
    await store(db, seed(links))
    for _ in range(8):
        await store(db, seed(links)[:-1])
    writer = await asyncpg.connect(database_url)
    await prepare_connection(writer)
    stop = asyncio.Event()
    during: list[int] = []

    async def ingest() -> int:
        batches = 0
        while not stop.is_set() or batches < 5:
            await store(writer, seed(links)[:-1][batches % 7 :: 7])
            batches += 1
            if not stop.is_set():
                during.append(batches)
        return batches

    try:
        task = asyncio.create_task(ingest())
        outcome = await reclassify(db, CHANGED, chunk_pages=2)
        stop.set()
        batches = await task
    finally:
        await writer.close()

    assert batches >= 5 and len(during) >= 2 and outcome.to_bots > 0, "ingest stored batches while reclassify ran"
    # Whatever interleaving happened, every rollup equals a recount of the stored clicks: nothing twice, none lost.
    assert await rollups(db) == await recount(db)
    # A second run moves what ingest stored meanwhile with the old rules, and then everything is in its class.
    await reclassify(db, CHANGED)
    assert await db.fetchval("SELECT count(*) FROM click_events WHERE ua = $1 AND NOT is_bot", ZEBRA) == 0
    assert await rollups(db) == await recount(db)


async def test_the_command_moves_clicks_ingest_stored_with_older_rules(
    ingest_db: asyncpg.Connection,
    database_url: str,
    links: dict[str, int],
    capsys: pytest.CaptureFixture[str],
    restored_logging: None,
) -> None:
    db = ingest_db
    old = click_row(click("a", links["a"], ms(2026, 11, 30, 12, 0, 0), ua=GOOGLEBOT))
    # As a release whose rules missed Googlebot would have stored it: a desktop human.
    await store(db, [old._replace(is_bot=False, device="desktop"), click_row(click("a", links["a"], ua=IPHONE))])

    # In a thread: the command runs its own event loop, as from a shell.
    assert await asyncio.to_thread(main, ["reclassify", "--database-url", database_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["to_bots"], out["to_humans"], out["clicks"], out["rules"]) == (1, 0, 2, BOT_RULES_VERSION)
    assert await asyncio.to_thread(main, ["reclassify", "--database-url", database_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to_bots"] == 0
    assert tuple(await db.fetchrow("SELECT clicks, bot_clicks FROM link_totals WHERE link_id = $1", links["a"])) == (
        1,
        1,
    )
    assert await rollups(db) == await recount(db)


def test_the_command_refuses_a_bad_since(capsys: pytest.CaptureFixture[str], restored_logging: None) -> None:
    with pytest.raises(SystemExit):
        main(["reclassify", "--since", "yesterday", "--database-url", "postgresql://127.0.0.1:1/x"])
    assert "not an ISO 8601 date or time" in capsys.readouterr().err


def test_the_command_refuses_bad_operator_patterns_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, restored_logging: None
) -> None:
    monkeypatch.setenv("LINKPULSE_BOTS_PATTERNS", "Zebrafish/\n(unclosed")
    assert main(["reclassify", "--database-url", "postgresql://127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert "LINKPULSE_BOTS: patterns: not a regular expression: '(unclosed'" in err
    assert "database" not in err  # it never got as far as connecting


async def test_the_ingest_role_may_reclassify_and_the_admin_role_read_the_rules(
    ingest_db: asyncpg.Connection, links: dict[str, int]
) -> None:
    db = ingest_db
    await store(db, seed(links))
    # The rights of 0005-0007 exactly, as the ingest login has them (and the admin login for the stats).
    await db.execute("SET ROLE linkpulse_ingest")
    await prepare_connection(db)  # records its rules as an ingest connection does
    outcome = await reclassify(db, CHANGED)
    await db.execute("RESET ROLE")
    assert outcome.to_bots == 81
    assert await rollups(db) == await recount(db)
    await db.execute("SET ROLE linkpulse_admin")
    assert await db.fetchval("SELECT count(*) FROM bot_rules WHERE reclassified_at IS NOT NULL") == 1
    assert await db.fetchval("SELECT last_used_at > first_used_at FROM bot_rules WHERE version = $1", BOT_RULES_VERSION)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE click_events SET is_bot = true")
    await db.execute("RESET ROLE")
