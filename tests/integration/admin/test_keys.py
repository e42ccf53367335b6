"""API keys API against real Postgres: scopes, the key shown once and stored hashed, revocation, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import asyncpg
import pytest
import structlog
from litestar.testing import AsyncTestClient

from linkpulse.admin.keys.schemas import Scope
from linkpulse.apikeys import SCOPES, hash_key

KEYS = "/api/v1/keys"
LISTED_FIELDS = {"id", "name", "prefix", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at"}


async def create_key(client: AsyncTestClient, scopes: list[str], **fields: Any) -> dict[str, Any]:
    """Create a key with the bootstrap admin key; returns the 201 body."""
    response = await client.post(KEYS, json={"name": fields.pop("name", "test key"), "scopes": scopes, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_create_returns_the_key_once_and_stores_only_its_hash(
    client: AsyncTestClient, db: asyncpg.Connection
) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    response = await client.post(
        KEYS,
        json={
            "name": "CI deploy",
            "scopes": ["stats:read", "links:read", "stats:read"],
            "expires_at": expires.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    # The answer holding the secret must not be cached anywhere.
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    key = body["key"]
    assert set(body) == {"id", "name", "prefix", "scopes", "created_at", "expires_at", "key"}
    assert key.startswith("lp_") and len(key) == 46
    assert (body["name"], body["prefix"], body["scopes"]) == ("CI deploy", key[:8], ["links:read", "stats:read"])
    assert datetime.fromisoformat(body["expires_at"]) == expires
    # The row holds the SHA-256 and the display prefix; no column, as text, holds the key.
    row = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", body["id"])
    assert bytes(row["key_hash"]) == hash_key(key)
    dump = await db.fetchval("SELECT string_agg(t::text, ' ') FROM api_keys t")
    assert key not in dump and key[8:] not in dump
    # Listing shows the key's record, never the key.
    listing = await client.get(KEYS)
    assert listing.status_code == 200
    assert key[8:] not in listing.text
    listed = next(k for k in listing.json() if k["id"] == body["id"])
    assert set(listed) == LISTED_FIELDS
    assert (listed["prefix"], listed["revoked_at"], listed["last_used_at"]) == (key[:8], None, None)
    # The key works; then it shows when it was last used.
    assert (await client.get("/api/v1/links/none", headers=bearer(key))).status_code == 404
    listed = next(k for k in (await client.get(KEYS)).json() if k["id"] == body["id"])
    assert listed["last_used_at"] is not None


# Each request is one that exactly one scope (or admin) allows.
REQUESTS = {
    "read link": ("GET", "/api/v1/links/probe", None, "links:read", 200),
    "create link": ("POST", "/api/v1/links", {"url": "https://example.com/new"}, "links:write", 201),
    "link stats": ("GET", "/api/v1/links/probe/stats", None, "stats:read", 200),
    "overview": ("GET", "/api/v1/stats/overview", None, "stats:read", 200),
    "list keys": ("GET", KEYS, None, "admin", 200),
    "create key": ("POST", KEYS, {"name": "made by a key", "scopes": ["links:read"]}, "admin", 201),
}


@pytest.mark.parametrize("scope", ["links:read", "links:write", "stats:read", "admin"])
async def test_each_scope_allows_what_it_names_and_nothing_else(client: AsyncTestClient, scope: str) -> None:
    assert (
        await client.post("/api/v1/links", json={"url": "https://example.com/", "code": "probe"})
    ).status_code == 201
    key = (await create_key(client, [scope], name=f"only {scope}"))["key"]
    for name, (method, path, body, needed, ok) in REQUESTS.items():
        response = await client.request(method, path, json=body, headers=bearer(key))
        if scope in (needed, "admin"):
            assert response.status_code == ok, (scope, name, response.text)
        else:
            assert response.status_code == 403, (scope, name, response.text)
            assert response.json()["detail"] == f"this API key lacks the {needed!r} scope"


async def test_revoked_key_is_401_on_the_next_request(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    created = await create_key(client, ["links:read"])
    assert (await client.get("/api/v1/links/none", headers=bearer(created["key"]))).status_code == 404
    revoked = await client.delete(f"{KEYS}/{created['id']}")
    assert revoked.status_code == 204
    assert revoked.content == b""
    # No grace period, no cache: the very next request is refused.
    after = await client.get("/api/v1/links/none", headers=bearer(created["key"]))
    assert (after.status_code, after.json()["detail"]) == (401, "API key revoked")
    listed = next(k for k in (await client.get(KEYS)).json() if k["id"] == created["id"])
    assert listed["revoked_at"] is not None
    # Revoking again is harmless and keeps the first revocation time.
    assert (await client.delete(f"{KEYS}/{created['id']}")).status_code == 204
    again = next(k for k in (await client.get(KEYS)).json() if k["id"] == created["id"])
    assert again["revoked_at"] == listed["revoked_at"]


async def test_a_key_can_revoke_itself(client: AsyncTestClient) -> None:
    # A leaked key can be killed by whoever holds it; `linkpulse keys` stays as the way back in.
    created = await create_key(client, ["admin"])
    own = bearer(created["key"])
    assert (await client.delete(f"{KEYS}/{created['id']}", headers=own)).status_code == 204
    assert (await client.get(KEYS, headers=own)).status_code == 401
    assert (await client.get(KEYS)).status_code == 200  # the other admin key is untouched


async def test_revoking_an_unknown_id_is_404(client: AsyncTestClient) -> None:
    response = await client.delete(f"{KEYS}/999999")
    assert response.json() == {"status": 404, "detail": "no API key with id 999999"}
    assert (await client.delete(f"{KEYS}/not-a-number")).status_code == 404


async def test_expired_key_is_401(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    created = await create_key(client, ["links:read"], expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    key = bearer(created["key"])
    assert (await client.get("/api/v1/links/none", headers=key)).status_code == 404
    # Time passes (moved in the row rather than waited for): the next request is refused.
    await db.execute("UPDATE api_keys SET expires_at = now() - interval '1 millisecond' WHERE id = $1", created["id"])
    response = await client.get("/api/v1/links/none", headers=key)
    assert (response.status_code, response.json()["detail"]) == (401, "API key expired")


def test_the_api_accepts_exactly_the_scopes_libs_defines() -> None:
    # The body's enum (for OpenAPI and 422s) and the scope set the guards and the CLI use agree.
    assert set(get_args(Scope)) == SCOPES


BAD_BODIES = [
    ({"name": "x", "scopes": ["links:read"], "colour": "red"}, "unknown field `colour`"),
    ({"name": "x", "scopes": []}, "scopes: Expected `array` of length >= 1"),
    ({"name": "x", "scopes": ["links:delete"]}, "scopes[0]: Invalid enum value 'links:delete'"),
    ({"name": "x", "scopes": "admin"}, "scopes: Expected `array`, got `str`"),
    ({"name": "x", "scopes": [None]}, "scopes[0]: Expected `str`, got `null`"),
    ({"name": "", "scopes": ["admin"]}, "name: Expected `str` of length >= 1"),
    ({"name": "   ", "scopes": ["admin"]}, "name must not be blank"),
    ({"name": "x" * 101, "scopes": ["admin"]}, "name: Expected `str` of length <= 100"),
    ({"name": "a\r\nb", "scopes": ["admin"]}, "name must not contain control characters"),
    ({"name": 7, "scopes": ["admin"]}, "name: Expected `str`, got `int`"),
    ({"name": "x", "scopes": ["admin"], "expires_at": "2030-01-01T00:00:00"}, "expires_at: Expected `datetime` with"),
    ({"name": "x", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at must be in the future"),
    ({"name": "x", "scopes": ["admin"], "expires_at": "soon"}, "expires_at: Invalid RFC3339 encoded datetime"),
    ({"scopes": ["admin"]}, "missing required field `name`"),
    ({"name": "x"}, "missing required field `scopes`"),
    ({"name": "x", "scopes": ["admin"], "key": "lp_chosen-by-the-client"}, "unknown field `key`"),
]


async def test_bad_bodies_are_422_and_store_nothing(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    for payload, reason in BAD_BODIES:
        response = await client.post(KEYS, json=payload)
        assert response.status_code == 422, (payload, response.text)
        assert reason in response.json()["detail"], (payload, response.json())
    assert await db.fetchval("SELECT count(*) FROM api_keys") == 1  # the bootstrap key only


async def test_plain_keys_never_reach_the_logs(
    client: AsyncTestClient, admin_key: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with structlog.testing.capture_logs() as events:
        # Every path a key travels: created, used, refused for a scope, revoked, refused after.
        created = await create_key(client, ["links:read"])
        key = bearer(created["key"])
        await client.get("/api/v1/links/none", headers=key)
        await client.post("/api/v1/links", json={"url": "https://example.com/"}, headers=key)
        await client.delete(f"{KEYS}/{created['id']}")
        await client.get("/api/v1/links/none", headers=key)
        await client.post(KEYS, json={"name": "x", "scopes": ["bad"]})
    out, err = capfd.readouterr()
    captured = repr(events) + out + err + caplog.text
    # The service's own lines were captured, so their absence of keys means something.
    names = [e["event"] for e in events]
    assert "api_key.created" in names and "api_key.revoked" in names
    assert any(e.get("prefix") == created["key"][:8] for e in events)
    for secret in (created["key"], admin_key):
        assert secret not in captured
        assert secret[8:] not in captured


@pytest.mark.parametrize("key_id", ["9223372036854775808", "99999999999999999999", "-9223372036854775809", "0", "-1"])
async def test_revoking_an_id_no_bigint_holds_is_404_not_500(client: AsyncTestClient, key_id: str) -> None:
    response = await client.delete(f"{KEYS}/{key_id}")
    assert response.json() == {"status": 404, "detail": f"no API key with id {key_id}"}
    assert (await client.get(KEYS)).status_code == 200  # the bootstrap key still works


async def test_an_expiry_past_what_a_timestamp_holds_is_422(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    # 9999-12-31T23:59:59-02:00 is in year 10000 in UTC: asyncpg could not send it (a 500 before).
    body = {"name": "x", "scopes": ["admin"], "expires_at": "9999-12-31T23:59:59-02:00"}
    response = await client.post(KEYS, json=body)
    assert (response.status_code, response.json()["detail"]) == (422, "expires_at is out of range")
    assert await db.fetchval("SELECT count(*) FROM api_keys") == 1  # the bootstrap key only
