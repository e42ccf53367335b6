"""Fixtures for the redirect service: the app in-process against real servers, and link rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from linkpulse.redirect.app import create_app
from linkpulse.redirect.settings import RedirectSettings


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
