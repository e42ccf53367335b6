"""The ingest worker against real NATS and Postgres: exactly once per event, sharding, poison, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from nats.js import JetStreamContext
from prometheus_client import REGISTRY
from tests.integration.ingest.conftest import RunWorker, click, consumers_idle, publish, stored
from tests.polling import eventually

from linkpulse.ids import shard_for
from linkpulse.ingest.batch import prepare
from linkpulse.ingest.store import prepare_connection, store_batch
from linkpulse.localstack.servers import PostgresServer
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import CLICKS_STREAM, click_subject, ingest_durable
from linkpulse.settings import ClicksSettings

MakeLink = Callable[[str], Awaitable[int]]


def _duplicates() -> float:
    return REGISTRY.get_sample_value("linkpulse_ingest_events_total", {"result": "duplicate"}) or 0.0


async def test_publisher_retry_and_repacked_events_are_stored_once(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("dup")
    events = [click("dup", link_id) for _ in range(3)]
    # 1. The same envelope twice (a publisher retry): JetStream drops the second by its Nats-Msg-Id.
    first = await publish(js, events, clicks_settings.shards, envelope_id="env-1")
    retry = await publish(js, events, clicks_settings.shards, envelope_id="env-1")
    assert (bool(first.duplicate), retry.duplicate) == (False, True)
    # 2. The same events in a new envelope (e.g. replayed from a spill file): only the event ids can tell.
    repacked = await publish(js, events, clicks_settings.shards, envelope_id="env-2")
    assert not repacked.duplicate  # None or False: new to JetStream

    async with run_worker():
        await eventually(lambda: stored(db, js, clicks_settings, 3), "3 clicks stored and acked")

    assert await db.fetchval("SELECT count(DISTINCT id) FROM click_events") == 3
    assert await db.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", link_id) == 3


async def test_redelivery_after_a_committed_but_unacked_batch_counts_once(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
    database_url: str,
) -> None:
    link_id = await make_link("redo")
    await publish(js, [click("redo", link_id) for _ in range(4)], clicks_settings.shards)
    shard = shard_for("redo", clicks_settings.shards)

    # 1. A worker that commits the batch and dies before acking: store it, then hand the message back.
    sub = await js.pull_subscribe_bind(durable=ingest_durable(shard), stream=CLICKS_STREAM)
    [msg] = await sub.fetch(10, timeout=5)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, init=prepare_connection)
    try:
        batch = prepare([msg])
        result = await store_batch(pool, batch.rows, batch.dead_letters, timeout=5)
        assert result.inserted == 4
    finally:
        await pool.close()
    await msg.nak()
    await sub.unsubscribe()

    # 2. A real worker gets the redelivery: every event is a duplicate, so nothing is added twice.
    duplicates_before = _duplicates()
    async with run_worker():
        await eventually(lambda: stored(db, js, clicks_settings, 4), "4 clicks stored and acked")
    assert _duplicates() - duplicates_before == 4
    assert await db.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", link_id) == 4
    assert await db.fetchval("SELECT sum(clicks) FROM link_clicks_day WHERE link_id = $1", link_id) == 4


async def _publish_many_codes(
    js: JetStreamContext, make_link: MakeLink, settings: ClicksSettings, codes: int, per_code: int
) -> dict[int, int]:
    """Publish `per_code` clicks for each of `codes` links, one envelope per code; link id → clicks."""
    expected: dict[int, int] = {}
    for i in range(codes):
        code = f"c{i}"
        link_id = await make_link(code)
        await publish(js, [click(code, link_id) for _ in range(per_code)], settings.shards)
        expected[link_id] = per_code
    return expected


async def test_events_land_on_their_shard_and_two_workers_store_each_once(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    expected = await _publish_many_codes(js, make_link, clicks_settings, codes=40, per_code=5)
    # 1. Every stored message sits on the subject of its code's shard, and all shards are used.
    info = await js.stream_info(CLICKS_STREAM)
    subjects: Counter[str] = Counter()
    for seq in range(1, info.state.messages + 1):
        stored_msg = await js.get_msg(CLICKS_STREAM, seq)
        code = stored_msg.data.split(b'"code":"', 1)[1].split(b'"', 1)[0].decode()
        assert stored_msg.subject == click_subject(shard_for(code, clicks_settings.shards))
        subjects[stored_msg.subject] += 1
    assert len(subjects) == clicks_settings.shards

    # 2. Two workers share the durable consumers; small batches make them interleave.
    async with run_worker(LINKPULSE_INGEST_BATCH_SIZE="3"), run_worker(LINKPULSE_INGEST_BATCH_SIZE="3"):
        await eventually(lambda: stored(db, js, clicks_settings, 200), "200 clicks stored and acked")

    totals = dict(await db.fetch("SELECT link_id, clicks FROM link_totals"))
    assert totals == expected


async def _until_line(proc: asyncio.subprocess.Process, needle: bytes) -> None:
    assert proc.stderr is not None
    while needle not in (line := await proc.stderr.readline()):
        assert line, f"ingest exited before logging {needle!r}"


async def test_two_worker_processes_store_each_event_once(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    ingest_env: dict[str, str],
    clicks_settings: ClicksSettings,
) -> None:
    # `python -m linkpulse.ingest` twice, as two pods would run it.
    env = {**os.environ, **ingest_env, "LINKPULSE_INGEST_BATCH_SIZE": "5"}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "linkpulse.ingest",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,  # its log: JSON lines, read until it says it consumes
        )
        for _ in range(2)
    ]
    try:
        # Both consuming before anything is published (a process still starting has no SIGTERM handler yet).
        for proc in procs:
            await asyncio.wait_for(_until_line(proc, b"ingest.started"), 60)
        expected = await _publish_many_codes(js, make_link, clicks_settings, codes=20, per_code=10)
        await eventually(lambda: stored(db, js, clicks_settings, 200), "200 clicks stored and acked", timeout=30)
        assert dict(await db.fetch("SELECT link_id, clicks FROM link_totals")) == expected
        # SIGTERM is a clean stop: both finish, drain and exit 0.
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [await asyncio.wait_for(p.wait(), 15) for p in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_poison_message_is_kept_as_a_dead_letter_and_the_shard_moves_on(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("poison")
    shard = shard_for("poison", clicks_settings.shards)
    await publish(js, [click("poison", link_id) for _ in range(2)], clicks_settings.shards)
    garbage = await publish_with_id(js, click_subject(shard), b"\x00 not an envelope {", "garbage-1")
    await publish(js, [click("poison", link_id) for _ in range(3)], clicks_settings.shards)

    async with run_worker():
        await eventually(lambda: stored(db, js, clicks_settings, 5), "5 clicks stored and acked")
        dead = await eventually(lambda: db.fetch("SELECT * FROM dead_letters"), "a dead letter")

    [row] = dead
    assert (row["stream"], row["subject"], row["stream_seq"], row["msg_id"], row["payload"]) == (
        CLICKS_STREAM,
        click_subject(shard),
        garbage.seq,
        "garbage-1",
        b"\x00 not an envelope {",
    )
    assert "DecodeError" in row["error"]
    assert await db.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", link_id) == 5
    info = await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_postgres_outage_holds_the_batch_unacked_until_it_is_back(
    js: JetStreamContext,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
    postgres_server: PostgresServer,
) -> None:
    link_id = await make_link("outage")
    shard = shard_for("outage", clicks_settings.shards)
    await publish(js, [click("outage", link_id) for _ in range(3)], clicks_settings.shards)
    before = _db_errors()
    name = "ingest_outage"
    async with _database_down(postgres_server, name) as url:
        # 1. The worker starts anyway, keeps the batch in hand and acks nothing.
        async with run_worker(LINKPULSE_DATABASE_URL=url):
            await eventually(lambda: _db_failed(2, before), "two more Postgres failures counted")
            info = await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))
            # Held, not naked: the redelivery budget (max_deliver) is not spent during an outage.
            assert (info.num_ack_pending, info.num_redelivered) == (1, 0)
        # 2. Stopping during the outage hands the message back; a worker started after recovery stores it.
        async with _database_back(postgres_server, name) as conn:
            async with run_worker(LINKPULSE_DATABASE_URL=url):
                await eventually(lambda: stored(conn, js, clicks_settings, 3), "3 clicks stored and acked")
            assert await conn.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", link_id) == 3
    assert await consumers_idle(js, clicks_settings)


def _db_errors() -> float:
    return REGISTRY.get_sample_value("linkpulse_ingest_db_errors_total") or 0.0


async def _db_failed(times: int, since: float) -> bool:
    """True once the worker has counted `times` more Postgres failures than `since`."""
    return _db_errors() >= since + times


@asynccontextmanager
async def _database_down(postgres_server: PostgresServer, name: str) -> AsyncIterator[str]:
    """The URL of database `name`, not created yet: a Postgres that is down. Dropped on exit, if created."""
    try:
        yield postgres_server.url_for(name)
    finally:
        await asyncio.to_thread(postgres_server.psql, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")


@asynccontextmanager
async def _database_back(postgres_server: PostgresServer, name: str) -> AsyncIterator[asyncpg.Connection]:
    """Postgres is back: database `name` created (migrated), and a connection to it."""
    await asyncio.to_thread(postgres_server.create_database, name, "linkpulse_template")
    conn = await asyncpg.connect(postgres_server.url_for(name))
    try:
        yield conn
    finally:
        await conn.close()


async def test_message_postgres_rejects_is_dead_lettered_and_its_batch_mates_are_stored(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    # A constraint stands in for any value Postgres refuses (SQLSTATE 22/23) that decoding let through.
    await db.execute("ALTER TABLE click_events ADD CONSTRAINT no_evil CHECK (code <> 'evil')")
    shard = shard_for("evil", clicks_settings.shards)
    good = next(c for c in (f"g{i}" for i in range(100)) if shard_for(c, clicks_settings.shards) == shard)
    evil_id, good_id = await make_link("evil"), await make_link(good)
    await publish(js, [click(good, good_id)], clicks_settings.shards)
    rejected = await publish(js, [click("evil", evil_id)], clicks_settings.shards)
    await publish(js, [click(good, good_id) for _ in range(2)], clicks_settings.shards)

    # One batch: the whole transaction fails, then each message is retried alone.
    async with run_worker():
        await eventually(lambda: stored(db, js, clicks_settings, 3), "3 clicks stored and acked")
        dead = await eventually(lambda: db.fetch("SELECT stream_seq, error FROM dead_letters"), "a dead letter")

    assert [r["stream_seq"] for r in dead] == [rejected.seq]
    assert "CheckViolationError" in dead[0]["error"]
    assert await db.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", good_id) == 3
    assert await db.fetchval("SELECT count(*) FROM link_totals WHERE link_id = $1", evil_id) == 0


def _batches() -> tuple[float, float]:
    """(batches stored, messages in them) so far: the worker's batch size histogram."""
    count = REGISTRY.get_sample_value("linkpulse_ingest_batch_size_count") or 0.0
    return count, REGISTRY.get_sample_value("linkpulse_ingest_batch_size_sum") or 0.0


async def _held(js: JetStreamContext, shard: int, messages: int) -> bool:
    """True when the worker holds `messages` of the shard delivered but not yet acked."""
    return (await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))).num_ack_pending == messages


async def test_clicks_that_come_while_a_small_batch_lingers_join_its_transaction(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("linger")
    shard = shard_for("linger", clicks_settings.shards)
    before = _batches()
    # The pause outlasts the two publishes below by far; the test waits for events, never for the pause.
    async with run_worker(LINKPULSE_INGEST_LINGER="5"):
        await publish(js, [click("linger", link_id)], clicks_settings.shards)
        await eventually(lambda: _held(js, shard, 1), "the first click held, lingering")
        assert await db.fetchval("SELECT count(*) FROM click_events") == 0  # in hand, lingering
        for _ in range(2):
            await publish(js, [click("linger", link_id)], clicks_settings.shards)
        await eventually(lambda: stored(db, js, clicks_settings, 3), "3 clicks stored and acked")
    after = _batches()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 3)  # one transaction for the three


async def test_a_batch_that_holds_batch_bytes_is_stored_without_lingering(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("full")
    # A linger of 120 s (capped at a third of the 60 s ack wait): only skipping it stores within the 15 s.
    async with run_worker(LINKPULSE_INGEST_LINGER="120", LINKPULSE_INGEST_BATCH_BYTES="1"):
        await publish(js, [click("full", link_id)], clicks_settings.shards)
        await eventually(lambda: stored(db, js, clicks_settings, 1), "1 click stored and acked", timeout=15)


async def test_a_stop_while_lingering_stores_the_batch_in_hand(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("linger-stop")
    shard = shard_for("linger-stop", clicks_settings.shards)
    async with run_worker(LINKPULSE_INGEST_LINGER="120"):  # run_worker allows the stop 15 s, not 20 or 120
        await publish(js, [click("linger-stop", link_id)], clicks_settings.shards)
        await eventually(lambda: _held(js, shard, 1), "the click held, lingering")
    assert await stored(db, js, clicks_settings, 1)  # stored and acked, not handed back to wait for redelivery
    assert await db.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", link_id) == 1


async def test_a_backlog_fills_its_batch_up_to_batch_bytes_without_lingering(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("backlog")
    for _ in range(10):
        await publish(js, [click("backlog", link_id)], clicks_settings.shards)
    before = _batches()
    # Fetches of 2 come back full, so more is waiting: the worker fetches on at once rather than pausing
    # the linger (120 s, capped at 20), and the ten messages make one transaction within the 15 s.
    async with run_worker(LINKPULSE_INGEST_BATCH_SIZE="2", LINKPULSE_INGEST_LINGER="120"):
        await eventually(lambda: stored(db, js, clicks_settings, 10), "10 clicks stored and acked", timeout=15)
    after = _batches()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 10)


def _codes_on_distinct_shards(count: int, shards: int) -> list[str]:
    by_shard: dict[int, str] = {}
    for code in (f"slot{i}" for i in range(1000)):
        by_shard.setdefault(shard_for(code, shards), code)
    return list(by_shard.values())[:count]


async def test_no_more_than_concurrent_stores_batches_are_in_postgres_at_once(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
    ingest_env: dict[str, str],
) -> None:
    codes = _codes_on_distinct_shards(3, clicks_settings.shards)
    links = {code: await make_link(code) for code in codes}
    # A test transaction locks the rollups, so a batch that reaches Postgres waits there on the lock.
    blocker = await asyncpg.connect(ingest_env["LINKPULSE_DATABASE_URL"])
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("LOCK TABLE link_totals IN EXCLUSIVE MODE")

    async def waiting_on_the_lock() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )

    try:
        async with run_worker(LINKPULSE_INGEST_CONCURRENT_STORES="2", LINKPULSE_INGEST_LINGER="0"):
            for code in codes:
                await publish(js, [click(code, links[code])], clicks_settings.shards)
            await eventually(lambda: _all_held(js, codes, clicks_settings.shards), "every shard holding its click")
            await eventually(waiting_on_the_lock, "two stores waiting on the lock", accept=lambda n: n >= 2)
            # The third batch is fetched and held (kept alive), but waits for a slot outside Postgres.
            assert await waiting_on_the_lock() == 2
            await lock.rollback()
            await eventually(lambda: stored(db, js, clicks_settings, 3), "3 clicks stored and acked")
    finally:
        await blocker.close()
    for code in codes:
        assert await db.fetchval("SELECT clicks FROM link_totals WHERE link_id = $1", links[code]) == 1


async def _all_held(js: JetStreamContext, codes: list[str], shards: int) -> bool:
    return all([await _held(js, shard_for(code, shards), 1) for code in codes])


async def test_a_stop_during_an_outage_hands_back_batches_still_waiting_for_a_slot_untried(
    js: JetStreamContext,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
    postgres_server: PostgresServer,
) -> None:
    codes = _codes_on_distinct_shards(3, clicks_settings.shards)
    links = {code: await make_link(code) for code in codes}
    for code in codes:
        await publish(js, [click(code, links[code])], clicks_settings.shards)
    before = _db_errors()
    name = "ingest_slots_outage"
    async with _database_down(postgres_server, name) as url:
        async with run_worker(LINKPULSE_DATABASE_URL=url, LINKPULSE_INGEST_CONCURRENT_STORES="1"):
            # One batch holds the slot and retries; the other two wait for it, held and kept alive.
            await eventually(lambda: _db_failed(2, before), "two more Postgres failures counted")
            await eventually(lambda: _all_held(js, codes, clicks_settings.shards), "every shard holding its click")
            at_stop = _db_errors()
        # The slot's holder may be mid-try when the stop comes; the two waiters never try a Postgres that
        # was away at the last try (a partitioned one would hold each for a connect or command timeout).
        assert _db_errors() - at_stop <= 1
        async with _database_back(postgres_server, name) as conn, run_worker(LINKPULSE_DATABASE_URL=url):
            # Within 15 s of a 60 s ack wait: all three were handed back (naked), none left to time out.
            await eventually(lambda: stored(conn, js, clicks_settings, 3), "3 clicks stored and acked", timeout=15)


async def test_a_linger_longer_than_a_third_of_the_ack_wait_is_cut_to_it(
    js: JetStreamContext,
    db: asyncpg.Connection,
    make_link: MakeLink,
    run_worker: RunWorker,
    clicks_settings: ClicksSettings,
) -> None:
    link_id = await make_link("capped")
    shard = shard_for("capped", clicks_settings.shards)
    # The first messages are not kept alive while the batch pauses, so the pause must end well within the
    # ack wait: with 3 s, a linger of 120 s pauses 1 s, and the click is stored well within the 15 s.
    async with run_worker(LINKPULSE_INGEST_LINGER="120", LINKPULSE_CLICKS_ACK_WAIT="3"):
        await publish(js, [click("capped", link_id)], clicks_settings.shards)
        await eventually(lambda: stored(db, js, clicks_settings, 1), "1 click stored and acked", timeout=15)
    info = await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))
    assert (info.config.ack_wait, info.num_redelivered) == (3.0, 0)
