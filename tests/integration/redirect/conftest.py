"""Fixtures for the redirect service: the app in-process against real servers, and link rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from linkpulse.redirect.app import create_app
from linkpulse.redirect.settings import RedirectSettings

MakeLink = Callable[..., Awaitable[int]]


@pytest.fixture
def redirect_env(service_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Redirect settings for this test's servers, with a short linger so clicks leave quickly."""
    return {
        **service_env,
        "LINKPULSE_PUBLISHER_SPILL_DIR": str(tmp_path / "spill"),
        "LINKPULSE_PUBLISHER_LINGER": "0.001",
        "LINKPULSE_PROXY_TRUSTED": "127.0.0.0/8",
    }


@pytest.fixture
async def redirect_client(redirect_env: dict[str, str]) -> AsyncIterator[AsyncTestClient[Any]]:
    """The redirect app with its lifespan running (NATS, Redis, Postgres connected)."""
    app = create_app(RedirectSettings.from_env(redirect_env))
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to this test's database."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
def make_link(db: asyncpg.Connection) -> MakeLink:
    """Insert a link row directly (the admin API is tested on its own); returns its id."""

    async def make(code: str, url: str = "https://example.com/landing", **columns: Any) -> int:
        names = ["code", "url", *columns]
        values = [code, url, *columns.values()]
        placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        return int(
            await db.fetchval(f"INSERT INTO links ({', '.join(names)}) VALUES ({placeholders}) RETURNING id", *values)
        )

    return make
