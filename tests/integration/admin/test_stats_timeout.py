"""A stats read that outlasts the database's command timeout is a 503 that says what to ask instead, not a 500."""

from __future__ import annotations

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient

from linkpulse.admin.app import create_app
from linkpulse.admin.settings import AdminSettings


async def test_a_stats_read_past_the_command_timeout_is_a_503_naming_what_to_try(
    admin_settings: AdminSettings, admin_key: str, db: asyncpg.Connection
) -> None:
    await db.execute("INSERT INTO links (code, url) VALUES ('big', 'https://example.com/')")
    settings = msgspec.structs.replace(
        admin_settings, database=msgspec.structs.replace(admin_settings.database, command_timeout=0.5)
    )
    # A lock stands in for a read of a big link's clicks: the stats statement waits past the timeout.
    blocker = await asyncpg.connect(dsn=admin_settings.database.url)
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            client.headers["Authorization"] = f"Bearer {admin_key}"
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE link_clicks_hour IN ACCESS EXCLUSIVE MODE")
                for path in ("/api/v1/links/big/stats", "/api/v1/links/big/stats/series.csv", "/api/v1/stats/overview"):
                    resp = await client.get(path, params={"interval": "hour"} if "links" in path else {})
                    assert resp.status_code == 503, (path, resp.text)
                    assert "did not answer in time" in resp.json()["detail"]
                    assert resp.headers["retry-after"] == "10"
            assert (await client.get("/api/v1/links/big/stats", params={"interval": "hour"})).status_code == 200
    finally:
        await blocker.close()
