"""Admin service surface: bootstrap key storage, logs, OpenAPI, health and readiness."""

from __future__ import annotations

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from linkpulse.admin.app import create_app
from linkpulse.admin.auth import hash_key, key_prefix
from linkpulse.admin.settings import AdminSettings


async def test_bootstrap_key_is_stored_only_as_a_hash(
    client: AsyncTestClient, db: asyncpg.Connection, admin_key: str
) -> None:
    row = await db.fetchrow("SELECT * FROM api_keys")
    assert row["name"] == "bootstrap" and row["scopes"] == ["admin"]
    assert bytes(row["key_hash"]) == hash_key(admin_key)
    assert row["prefix"] == key_prefix(admin_key) and len(row["prefix"]) == 8
    # No column, in any text form, holds the key.
    dump = await db.fetchval("SELECT string_agg(t::text, ' ') FROM api_keys t")
    assert admin_key not in dump
    assert admin_key[8:] not in dump
    assert hash_key(admin_key).hex() in dump.replace("\\x", "")


async def test_bootstrap_upsert_is_idempotent_and_keeps_a_revocation(
    admin_settings: AdminSettings, db: asyncpg.Connection, admin_key: str
) -> None:
    async with AsyncTestClient(app=create_app(admin_settings)):
        pass
    await db.execute("UPDATE api_keys SET revoked_at = now()")
    # A restart with the same variable upserts the same row, and does not undo the revocation.
    async with AsyncTestClient(app=create_app(admin_settings)) as client:
        response = await client.get("/api/v1/links/x", headers={"Authorization": f"Bearer {admin_key}"})
    assert response.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM api_keys") == 1


async def test_the_key_never_reaches_the_logs(
    client: AsyncTestClient,
    admin_key: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    # Every path a key travels: success, 4xx after authentication, and 404.
    await client.post("/api/v1/links", json={"url": "https://example.com", "code": "logged"})
    await client.post("/api/v1/links", json={"url": "javascript:x"})
    await client.get("/api/v1/links/missing")
    await client.get("/api/v1/links/x", headers={"Authorization": f"Bearer {admin_key}x"})
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "link.created" in logs  # the capture does see the service's log lines
    assert admin_key not in logs


async def test_openapi_lists_the_link_endpoints(client: AsyncTestClient) -> None:
    del client.headers["Authorization"]  # the schema is public
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"createLink", "getLink"} <= operations
    assert "/api/v1/links" in schema["paths"] and "/api/v1/links/{code}" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "/healthz" not in schema["paths"]


async def test_health_and_readiness(client: AsyncTestClient) -> None:
    del client.headers["Authorization"]
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}
