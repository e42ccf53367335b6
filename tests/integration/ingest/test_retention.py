"""Click-data retention on real Postgres: expired monthly partitions and dead letters go, rollups stay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY
from tests.conftest import MakeLink
from tests.integration.ingest.conftest import RunWorker, click
from tests.polling import eventually

from linkpulse.db.roles import SERVICE_ROLES
from linkpulse.ingest.batch import click_row
from linkpulse.ingest.retention import LOCK_ID, apply_retention
from linkpulse.ingest.store import write_batch

DAYS = 400
ROLLUPS = ("link_totals", "link_clicks_minute", "link_clicks_hour", "link_clicks_day", "link_dimension_day")


def month_start(day: date, months: int = 0) -> date:
    """The first day of `day`'s month moved by `months`."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def ms(day: date, hour: int = 12) -> int:
    """Epoch milliseconds of `day` at `hour`:00 UTC."""
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on this test's database with only the ingest role's rights, as the ingest worker has one."""

    async def as_ingest(conn: asyncpg.Connection) -> None:
        # On every acquire: the pool's reset on release (RESET ALL) would bring back the superuser.
        await conn.execute(f"SET ROLE {SERVICE_ROLES['ingest']}")

    async with asyncpg.create_pool(database_url, min_size=0, max_size=4, setup=as_ingest) as created:
        yield created


@pytest.fixture
async def aged(ingest_db: asyncpg.Connection, make_link: MakeLink) -> dict[str, list[str]]:
    """Monthly partitions around the retention's edge, each with stored clicks (rollups too), and dead letters.

    Returns the partitions that are past the retention ("expired") and the ones that are not ("kept").
    """
    db = ingest_db
    link = await make_link("old")
    # The month holding the cutoff has clicks older than the retention, and stays whole until all of it is.
    edge = month_start(datetime.now(UTC).date() - timedelta(days=DAYS))
    months = {"expired": [month_start(edge, -14), month_start(edge, -2), month_start(edge, -1)],
              "kept": [edge, month_start(edge, 1)]}  # fmt: skip
    names: dict[str, list[str]] = {"expired": [], "kept": []}
    rows = []
    for kind, starts in months.items():
        for start in starts:
            name = f"click_events_{start:%Y%m}"
            await db.execute(f"CREATE TABLE {name} PARTITION OF click_events FOR VALUES FROM ('{start}') TO "
                             f"('{month_start(start, 1)}')")  # fmt: skip
            names[kind].append(name)
            rows += [click_row(click("old", link, ms(start, hour))) for hour in (0, 12)]
    # Clicks of months without a partition wait in the default one: an old one expires, a future one stays.
    rows.append(click_row(click("old", link, ms(month_start(edge, -40)))))
    rows.append(click_row(click("old", link, ms(date(2099, 1, 1)))))
    async with db.transaction():
        assert (await write_batch(db, rows, [])).inserted == len(rows)
    await db.execute(
        """INSERT INTO dead_letters (stream, subject, stream_seq, payload, error, received_at)
           VALUES ('CLICKS', 'clicks.1', 1, 'x', 'old', now() - interval '401 days'),
                  ('CLICKS', 'clicks.1', 2, 'y', 'old', now() - interval '5000 days'),
                  ('CLICKS', 'clicks.1', 3, 'z', 'recent', now() - interval '399 days')"""
    )
    return names


async def partitions(db: asyncpg.Connection) -> set[str]:
    """Names of click_events' partitions."""
    rows = await db.fetch("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'click_events'::regclass")
    return {r[0] for r in rows}


async def rollups(db: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    """Every rollup row, table by table, in a stable order."""
    return {table: await db.fetch(f"SELECT * FROM {table} ORDER BY 1, 2") for table in ROLLUPS}


async def test_retention_drops_exactly_the_expired_partitions_and_dead_letters_and_keeps_rollups(
    ingest_db: asyncpg.Connection, pool: asyncpg.Pool, aged: dict[str, list[str]]
) -> None:
    db = ingest_db
    before, counts = await partitions(db), await rollups(db)
    assert set(aged["expired"]) | set(aged["kept"]) <= before

    result = await apply_retention(pool, DAYS, timeout=10)

    # 1. Exactly the partitions whose every click is past the retention are gone, oldest first.
    assert result.ran and result.busy == []
    assert result.dropped == aged["expired"]
    assert await partitions(db) == before - set(aged["expired"])
    # 2. The kept months still hold all their clicks; from the default partition only the expired one went.
    assert result.default_rows == 1
    stored = await db.fetch("SELECT tableoid::regclass::text AS part, count(*) FROM click_events GROUP BY 1")
    assert {r["part"]: r["count"] for r in stored} == {**{name: 2 for name in aged["kept"]}, "click_events_default": 1}
    # 3. Dead letters older than the retention are purged, a younger one stays.
    assert result.dead_letters == 2
    assert await db.fetchval("SELECT array_agg(error) FROM dead_letters") == ["recent"]
    # 4. The rollups (what the stats API reads) are untouched: every count stays.
    assert await rollups(db) == counts
    assert await db.fetchval("SELECT clicks + bot_clicks FROM link_totals") == 2 * 5 + 2

    # 5. A second run finds nothing more to do.
    again = await apply_retention(pool, DAYS, timeout=10)
    assert (again.dropped, again.default_rows, again.dead_letters) == ([], 0, 0)


async def test_zero_days_keeps_everything(
    ingest_db: asyncpg.Connection, pool: asyncpg.Pool, aged: dict[str, list[str]]
) -> None:
    before = await partitions(ingest_db)
    assert not (await apply_retention(pool, 0, timeout=10)).ran
    assert await partitions(ingest_db) == before
    assert await ingest_db.fetchval("SELECT count(*) FROM dead_letters") == 3


async def test_concurrent_runs_do_not_conflict(
    ingest_db: asyncpg.Connection, pool: asyncpg.Pool, aged: dict[str, list[str]]
) -> None:
    # 1. While another process holds the retention lock, a run steps aside and changes nothing.
    await ingest_db.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    skipped = await apply_retention(pool, DAYS, timeout=10)
    assert not skipped.ran and skipped.dropped == []
    assert set(aged["expired"]) <= await partitions(ingest_db)
    await ingest_db.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    # 2. Several pods at once: no error, and each expired partition is dropped once, by one of them.
    results = await asyncio.gather(*(apply_retention(pool, DAYS, timeout=10) for _ in range(3)))
    dropped = [name for result in results for name in result.dropped]
    assert sorted(dropped) == sorted(aged["expired"])
    assert sum(result.dead_letters for result in results) == 2
    assert await partitions(ingest_db) & set(aged["expired"]) == set()


async def test_a_busy_table_is_left_for_the_next_run_and_blocks_inserts_only_briefly(
    ingest_db: asyncpg.Connection, pool: asyncpg.Pool, database_url: str, aged: dict[str, list[str]]
) -> None:
    # 1. A long transaction (a stuck batch) holds click_events: the detach gives up after its lock timeout.
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE click_events IN ROW EXCLUSIVE MODE")
            started = time.monotonic()
            result = await apply_retention(pool, DAYS, timeout=10, lock_timeout=0.2)
            assert time.monotonic() - started < 5
    finally:
        await holder.close()
    assert result.ran and result.dropped == [] and result.busy == aged["expired"]
    assert set(aged["expired"]) <= await partitions(ingest_db)
    # 2. The next run, with the table free, drops them.
    assert (await apply_retention(pool, DAYS, timeout=10)).dropped == aged["expired"]


async def test_worker_applies_retention_on_start_and_counts_it(
    ingest_db: asyncpg.Connection, aged: dict[str, list[str]], run_worker: RunWorker
) -> None:
    def dropped_total() -> float:
        return REGISTRY.get_sample_value("linkpulse_ingest_retention_partitions_dropped_total") or 0.0

    counted = dropped_total()

    async def expired_gone() -> bool:
        return not await partitions(ingest_db) & set(aged["expired"])

    async with run_worker(LINKPULSE_INGEST_RETENTION_DAYS=str(DAYS)):
        await eventually(expired_gone, "the expired partitions dropped")
    assert set(aged["kept"]) <= await partitions(ingest_db)
    assert dropped_total() - counted == len(aged["expired"])


async def test_the_ingest_role_can_drop_only_partitions_past_the_retention(
    pool: asyncpg.Pool, ingest_db: asyncpg.Connection, aged: dict[str, list[str]]
) -> None:
    # Dropping needs the table's owner, lent to ingest by a function that checks the partition's age: as the
    # ingest role, neither a partition inside the retention nor a retention under a day is had, and plain DDL
    # is refused.
    kept, expired = aged["kept"][0], aged["expired"][0]
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="not a click_events partition older than 400 days"):
            await conn.execute("SELECT linkpulse_drop_click_partition($1::regclass, 400)", kept)
        with pytest.raises(asyncpg.RaiseError, match="at least one day"):
            await conn.execute("SELECT linkpulse_drop_click_partition($1::regclass, 0)", expired)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"DROP TABLE {expired}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM click_events")
    assert {kept, expired} <= await partitions(ingest_db)
