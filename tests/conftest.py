"""Real servers for every test: nats-server, redis-server and PostgreSQL from their wheels.

Servers start once per session (store dir → server on a free port → client, as nats.py does);
each test gets a fresh database cloned from a migrated template, empty streams and an empty Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import redis
import structlog
import uvicorn
from nats.js.errors import NotFoundError, ServerError

from linkpulse.db.migrate import migrate
from linkpulse.localstack.servers import NatsServer, PostgresServer, RedisServer
from linkpulse.messaging.streams import CLICKS_STREAM, LINKS_STREAM, ensure_streams
from linkpulse.settings import ClicksSettings

TEMPLATE_DB = "linkpulse_template"
TEST_SHARDS = 4
STORE_CREATE_FAILED = 10049
"""JetStream's error code for a stream whose store could not be created."""
STORE_RETRIES = 50
_db_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--skip-slow-faults", action="store_true", help="skip fault scenarios marked slow (30 s+)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--skip-slow-faults"):
        skip = pytest.mark.skip(reason="--skip-slow-faults")
        for item in items:
            if "slow" in item.keywords and "fault" in str(item.path):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder holding every session server's data and logs."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def nats_server(servers_dir: Path) -> Iterator[NatsServer]:
    """nats-server with JetStream on a free port, for the whole session."""
    server = NatsServer(servers_dir / "nats", log_path=servers_dir / "logs" / "nats.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[RedisServer]:
    """redis-server on a free port, for the whole session."""
    server = RedisServer(servers_dir / "redis", log_path=servers_dir / "logs" / "redis.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(servers_dir: Path) -> Iterator[PostgresServer]:
    """PostgreSQL on a free port with a migrated template database to clone per test."""
    server = PostgresServer(
        servers_dir / "postgres", log_path=servers_dir / "logs" / "postgres.log", database=TEMPLATE_DB
    ).start()
    asyncio.run(migrate(server.url_for(TEMPLATE_DB)))
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database for one test (a clone of the template)."""
    name = f"test_{next(_db_counter)}"
    postgres_server.create_database(name, template=TEMPLATE_DB)
    yield postgres_server.url_for(name)
    postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', database="postgres")


@pytest.fixture
def clicks_settings() -> ClicksSettings:
    """Stream settings for tests: fewer shards than production keeps consumers cheap."""
    return ClicksSettings(shards=TEST_SHARDS, max_bytes=256 * 1024**2)


@pytest.fixture
async def nats_url(nats_server: NatsServer, clicks_settings: ClicksSettings) -> AsyncIterator[str]:
    """The session NATS server with CLICKS and LINKS recreated empty for this test."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for stream in (CLICKS_STREAM, LINKS_STREAM):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
        for attempt in range(STORE_RETRIES):
            try:
                await ensure_streams(js, clicks_settings)
                break
            except ServerError as exc:
                # 10049, "error creating store for stream": seen once in CI right after the delete above,
                # while the server was still removing the old store. Nothing announces the end of that.
                if exc.err_code != STORE_CREATE_FAILED or attempt == STORE_RETRIES - 1:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await nc.close()
    yield nats_server.url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def service_env(nats_url: str, redis_url: str, database_url: str, clicks_settings: ClicksSettings) -> dict[str, str]:
    """The `LINKPULSE_*` variables that point a service at this test's servers."""
    return {
        "LINKPULSE_NATS_URL": nats_url,
        "LINKPULSE_REDIS_URL": redis_url,
        "LINKPULSE_DATABASE_URL": database_url,
        "LINKPULSE_CLICKS_SHARDS": str(clicks_settings.shards),
        "LINKPULSE_CLICKS_MAX_BYTES": str(clicks_settings.max_bytes),
    }


MakeLink = Callable[..., Awaitable[int]]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to this test's database, for arranging rows and checking them."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
def make_link(db: asyncpg.Connection) -> MakeLink:
    """Insert a link row directly (bypassing the admin API); returns its id."""

    async def make(code: str, url: str = "https://example.com/landing", **columns: Any) -> int:
        names = ["code", "url", *columns]
        values = [code, url, *columns.values()]
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        sql = f"INSERT INTO links ({', '.join(names)}) VALUES ({placeholders}) RETURNING id"
        return int(await db.fetchval(sql, *values))

    return make


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[None]:
    """Run a uvicorn server on this test's loop until the block ends (real sockets, no signal handlers)."""
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # pytest keeps its own
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)  # uvicorn announces its start only by this flag
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@pytest.fixture
def restored_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For a test that configures logging (configure_logging, or `linkpulse` run in process): structlog's
    configuration, the root logger (pytest's capture handlers), logger levels and the exception hooks put back."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    # Other tests' uvicorn servers leave "uvicorn.error" at their log_level (warning): these tests start from
    # the levels a fresh process has, and give the others theirs back.
    loggers = [logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
    for hook in ("excepthook", "unraisablehook"):
        monkeypatch.setattr(sys, hook, getattr(sys, hook))
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    yield
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger, before in levels:
        logger.setLevel(before)
    structlog.configure(**saved)
