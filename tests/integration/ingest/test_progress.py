"""Ingest reports its progress per shard to ingest_progress: how many clicks wait, how far behind it is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from tests.integration.ingest.conftest import RunWorker, click, publish, stored
from tests.polling import eventually

from linkpulse.ids import shard_for
from linkpulse.ingest import progress
from linkpulse.settings import ClicksSettings

MakeLink = Callable[[str], Awaitable[int]]
Progress = dict[int, tuple[int, float]]


async def progress_rows(db: asyncpg.Connection) -> Progress:
    """shard → (pending, behind_seconds) as last reported."""
    rows = await db.fetch("SELECT shard, pending, behind_seconds FROM ingest_progress")
    return {r["shard"]: (r["pending"], r["behind_seconds"]) for r in rows}


def _report_errors() -> float:
    return REGISTRY.get_sample_value("linkpulse_ingest_progress_report_errors_total") or 0.0


@pytest.fixture
def quick_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports every 50 ms instead of every second, so a backlog of a second or two is reported several times."""
    monkeypatch.setattr(progress, "REPORT_EVERY", 0.05)


async def test_a_backlog_is_reported_pending_then_caught_up(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
    quick_reports: None,
) -> None:
    link = await make_link("late")
    shard = shard_for("late", clicks_settings.shards)
    # 1. 400 messages wait in one shard before ingest starts: it is behind from its first batch on.
    published_from = time.time()
    for _ in range(400):
        await publish(js, [click("late", link)], clicks_settings.shards)

    # 2. One message per batch, stored at once: the backlog drains batch by batch, each reporting what still waits.
    async with run_worker(LINKPULSE_INGEST_BATCH_SIZE="1", LINKPULSE_INGEST_LINGER="0"):
        behind = await eventually(
            lambda: progress_rows(db), "the shard reported behind", accept=lambda p: p.get(shard, (0, 0.0))[0] > 0
        )
        pending, seconds = behind[shard]
        assert pending < 400
        # Behind by the age of a stored click: more than nothing, less than since the first was published.
        assert 0 < seconds <= time.time() - published_from + 1
        await eventually(lambda: stored(db, js, clicks_settings, 400), "400 clicks stored and acked")
        # 3. Caught up: every shard reports nothing waiting and nothing behind (the idle ones from their first fetch).
        await eventually(
            lambda: progress_rows(db),
            "every shard reported caught up",
            accept=lambda p: p == {s: (0, 0.0) for s in range(clicks_settings.shards)},
        )
    fresh = await db.fetchval("SELECT max(now() - reported_at) FROM ingest_progress")
    assert fresh.total_seconds() < 10


async def test_a_failing_report_never_stops_consuming(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
    quick_reports: None,
) -> None:
    link = await make_link("on")
    # 1. The table is away: every report fails.
    await db.execute("ALTER TABLE ingest_progress RENAME TO ingest_progress_away")
    errors = _report_errors()
    async with run_worker():
        await publish(js, [click("on", link) for _ in range(5)], clicks_settings.shards)
        # 2. The clicks are stored and acked all the same, while the reports keep failing.
        await eventually(lambda: stored(db, js, clicks_settings, 5), "5 clicks stored and acked")
        await eventually(_report_errors, "reports failed", accept=lambda n: n > errors + 1)
        assert await db.fetchval("SELECT count(*) FROM ingest_progress_away") == 0
        # 3. Back: the next reports land, without a restart.
        await db.execute("ALTER TABLE ingest_progress_away RENAME TO ingest_progress")
        await eventually(
            lambda: progress_rows(db),
            "every shard reported",
            accept=lambda p: p == {s: (0, 0.0) for s in range(clicks_settings.shards)},
        )


async def test_the_ingest_role_may_report_and_the_admin_role_read(db: asyncpg.Connection) -> None:
    # Least privilege: ingest writes its own progress (migration 0010), the admin only reads it.
    async with db.transaction():
        await db.execute("SET LOCAL ROLE linkpulse_ingest")
        await db.execute(progress._REPORT, [0, 1], [7, 0], [2.5, 0.0])
        await db.execute(progress._REPORT, [1], [3], [0.5])
    assert await progress_rows(db) == {0: (7, 2.5), 1: (3, 0.5)}
    async with db.transaction():
        await db.execute("SET LOCAL ROLE linkpulse_admin")
        assert await db.fetchval("SELECT sum(pending) FROM ingest_progress") == 10
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.execute(progress._REPORT, [0], [0], [0.0])


async def test_a_report_stalled_by_postgres_does_not_hold_the_stop_up() -> None:
    # A server that accepts connections and never answers: a Postgres frozen mid-outage.
    reached = asyncio.Event()
    accepted: list[asyncio.StreamWriter] = []

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        reached.set()

    silent = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    pool = await asyncpg.create_pool(f"postgresql://ingest@127.0.0.1:{port}/linkpulse", min_size=0, max_size=1)
    try:
        reporter = progress.ProgressReporter(pool, timeout=60, every=0.01)
        reporter.observe(0, 5, time.time())
        stop = asyncio.Event()
        running = asyncio.create_task(reporter.run(stop))
        await eventually(reached.is_set, "a report waiting on the silent server")
        # Stopping abandons the report in flight instead of waiting out its 60 s connection timeout.
        stop.set()
        await asyncio.wait_for(running, 5)
    finally:
        pool.terminate()
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
