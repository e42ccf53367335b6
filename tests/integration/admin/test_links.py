"""Links API against real Postgres, Redis and NATS: create, read, refuse bad input, publish, cache."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
import redis.asyncio
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from linkpulse.admin.app import create_app
from linkpulse.admin.auth import hash_key
from linkpulse.admin.settings import AdminSettings
from linkpulse.events import decode_link_changed
from linkpulse.links import decode_record
from linkpulse.messaging.streams import LINKS_STREAM, link_subject

LINKS = "/api/v1/links"


async def test_create_with_random_code_returns_the_link(client: AsyncTestClient) -> None:
    # Only the URL is given: the code is 7 random base62 characters, the rest are defaults.
    response = await client.post(LINKS, json={"url": "https://example.com/a?b=c"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert re.fullmatch(r"[0-9A-Za-z]{7}", body["code"])
    assert body["url"] == "https://example.com/a?b=c"
    assert body["short_url"] == f"https://lp.example.test/{body['code']}"
    assert body["redirect_type"] == 302
    assert body["active"] is True
    assert body["clicks"] == 0
    assert body["version"] == 1


async def test_create_with_custom_code_and_every_field(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    payload = {
        "url": "https://example.com/x",
        "code": "Summer_Sale-1",
        "redirect_type": 308,
        "expires_at": expires.isoformat(),
        "max_clicks": 10,
        "tags": ["promo", "mail", "promo"],
        "title": "Summer sale",
        "forward_query": True,
    }
    response = await client.post(LINKS, json=payload)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["code"] == "Summer_Sale-1"
    assert body["redirect_type"] == 308
    assert datetime.fromisoformat(body["expires_at"]) == expires
    assert (body["max_clicks"], body["tags"], body["title"], body["forward_query"]) == (
        10,
        ["promo", "mail"],
        "Summer sale",
        True,
    )
    # The row says the same.
    row = await db.fetchrow("SELECT * FROM links WHERE code = $1", "Summer_Sale-1")
    assert row["redirect_type"] == 308 and row["max_clicks"] == 10 and row["tags"] == ["promo", "mail"]


async def test_duplicate_code_is_409_and_changes_nothing(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    first = await client.post(LINKS, json={"url": "https://example.com/1", "code": "taken"})
    assert first.status_code == 201
    second = await client.post(LINKS, json={"url": "https://example.com/2", "code": "taken"})
    assert second.status_code == 409
    assert second.json() == {"status": 409, "detail": "code 'taken' is already taken"}
    assert await db.fetchval("SELECT url FROM links WHERE code = 'taken'") == "https://example.com/1"
    assert await db.fetchval("SELECT count(*) FROM link_events") == 1


BAD_URLS = {
    "javascript:alert(1)": "scheme",
    "data:text/html,<script>alert(1)</script>": "scheme",
    "file:///etc/passwd": "scheme",
    "ftp://example.com/x": "scheme",
    "https://user:secret@example.com/": "credentials",
    "https://example.com/a\r\nSet-Cookie: x=1": "control characters",
    "https://example.com/\n": "control characters",
    "https://example.com/" + "a" * 2040: "2048 bytes",
    "https:///path-only": "host",
    "https://": "host",
    "not a url": "spaces",
    "https://lp.example.test/abc": "loop",
    "https://GO.example.test/abc": "loop",
}


async def test_bad_urls_are_422_with_the_reason_and_store_nothing(
    client: AsyncTestClient, db: asyncpg.Connection
) -> None:
    for url, reason in BAD_URLS.items():
        response = await client.post(LINKS, json={"url": url})
        assert response.status_code == 422, (url, response.text)
        body = response.json()
        assert body["status"] == 422
        assert reason in body["detail"], (url, body)
    assert await db.fetchval("SELECT count(*) FROM links") == 0
    assert await db.fetchval("SELECT count(*) FROM link_events") == 0


BAD_BODIES = [
    ({"url": "https://example.com", "code": "api"}, "reserved"),
    ({"url": "https://example.com", "code": "healthz"}, "reserved"),
    ({"url": "https://example.com", "code": "HealthZ"}, "reserved"),
    ({"url": "https://example.com", "code": "bad code"}, "code must be"),
    ({"url": "https://example.com", "code": "a/b"}, "code must be"),
    ({"url": "https://example.com", "code": "ab\r\nc"}, "code must be"),
    ({"url": "https://example.com", "code": ""}, "code must be"),
    ({"url": "https://example.com", "code": "x" * 65}, "code must be"),
    ({"url": "https://example.com", "colour": "red"}, "unknown field `colour`"),
    ({"url": 42}, "url: Expected `str`, got `int`"),
    ({"url": "https://example.com", "redirect_type": "301"}, "redirect_type: Expected `int`, got `str`"),
    ({"url": "https://example.com", "redirect_type": 303}, "redirect_type: Invalid enum value 303"),
    ({"url": "https://example.com", "max_clicks": "5"}, "max_clicks: Expected `int | null`, got `str`"),
    ({"url": "https://example.com", "max_clicks": 0}, "max_clicks: Expected `int` >= 1"),
    ({"url": "https://example.com", "forward_query": "true"}, "forward_query: Expected `bool`, got `str`"),
    ({"url": "https://example.com", "tags": "promo"}, "tags: Expected `array`, got `str`"),
    ({"url": "https://example.com", "tags": ["x"] * 21}, "tags: Expected `array` of length <= 20"),
    ({"url": "https://example.com", "tags": ["x" * 65]}, "tags[0]: Expected `str` of length <= 64"),
    ({"url": "https://example.com", "tags": ["a\nb"]}, "tags must not contain control characters"),
    ({"url": "https://example.com", "title": "t" * 201}, "title: Expected `str` of length <= 200"),
    ({"url": "https://example.com", "expires_at": "2030-01-01T00:00:00"}, "expires_at: Expected `datetime` with"),
    ({"url": "https://example.com", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at must be in the future"),
    ({"url": "https://example.com", "expires_at": "9999-12-31T23:00:00-02:00"}, "expires_at is out of range"),
    ({}, "missing required field `url`"),
    ([], "Expected `object`, got `array`"),
]


async def test_bad_bodies_are_422_naming_the_field(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    for payload, reason in BAD_BODIES:
        response = await client.post(LINKS, json=payload)
        assert response.status_code == 422, (payload, response.text)
        assert reason in response.json()["detail"], (payload, response.json())
    assert await db.fetchval("SELECT count(*) FROM links") == 0


async def test_malformed_empty_and_oversized_bodies(client: AsyncTestClient) -> None:
    headers = {"Content-Type": "application/json"}
    malformed = await client.post(LINKS, content=b'{"url": "https://example.com",', headers=headers)
    assert malformed.status_code == 400
    assert malformed.json()["detail"].startswith("malformed JSON")
    empty = await client.post(LINKS, content=b"", headers=headers)
    assert (empty.status_code, empty.json()["detail"]) == (400, "a JSON request body is required")
    # The test settings cap bodies at 16 KiB.
    oversized = await client.post(LINKS, json={"url": "https://example.com", "title": "x" * 20_000})
    assert oversized.status_code == 413
    assert oversized.json()["status"] == 413


async def test_idn_host_is_stored_as_punycode(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    response = await client.post(LINKS, json={"url": "https://Bücher.example/straße", "code": "idn"})
    assert response.status_code == 201, response.text
    assert response.json()["url"] == "https://xn--bcher-kva.example/straße"
    assert await db.fetchval("SELECT url FROM links WHERE code = 'idn'") == "https://xn--bcher-kva.example/straße"


async def test_get_returns_the_link_with_clicks_from_link_totals(
    client: AsyncTestClient, db: asyncpg.Connection
) -> None:
    created = await client.post(LINKS, json={"url": "https://example.com/c", "code": "counted"})
    assert created.status_code == 201
    # Ingest keeps link_totals; here the row is written directly.
    await db.execute(
        "INSERT INTO link_totals (link_id, clicks, bot_clicks) SELECT id, 41, 3 FROM links WHERE code = 'counted'"
    )
    response = await client.get(f"{LINKS}/counted")
    assert response.status_code == 200
    body = response.json()
    assert (body["code"], body["url"], body["clicks"], body["bot_clicks"]) == (
        "counted",
        "https://example.com/c",
        41,
        3,
    )
    assert body["created_at"] == created.json()["created_at"]


async def test_get_unknown_code_is_404(client: AsyncTestClient) -> None:
    response = await client.get(f"{LINKS}/nope")
    assert response.status_code == 404
    assert response.json() == {"status": 404, "detail": "no link with code 'nope'"}


async def test_create_writes_the_outbox_publishes_and_caches(
    client: AsyncTestClient, db: asyncpg.Connection, js: JetStreamContext, redis_url: str
) -> None:
    response = await client.post(LINKS, json={"url": "https://example.com/p", "code": "pub", "max_clicks": 5})
    assert response.status_code == 201
    # The outbox row committed with the link, and was marked published after the ack.
    event_row = await db.fetchrow("SELECT * FROM link_events WHERE code = 'pub'")
    assert event_row["op"] == "created" and event_row["version"] == 1
    assert event_row["published_at"] is not None
    stored = decode_link_changed(event_row["payload"])
    assert (stored.code, stored.op, stored.id) == ("pub", "created", str(event_row["id"]))
    # The same event is the last message on links.pub, with the event id as Nats-Msg-Id.
    msg = await js.get_last_msg(LINKS_STREAM, link_subject("pub"))
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == stored.id
    assert msg.data is not None and decode_link_changed(msg.data) == stored
    # Redis holds the record redirect pods read.
    cache = redis.asyncio.Redis.from_url(redis_url)
    try:
        raw = await cache.get("link:pub")
    finally:
        await cache.aclose()
    assert raw is not None
    record = decode_record(raw)
    assert (record.code, record.url, record.max_clicks, record.version) == ("pub", "https://example.com/p", 5, 1)
    assert record.id == await db.fetchval("SELECT id FROM links WHERE code = 'pub'")


async def test_expires_at_is_cached_as_epoch_ms(client: AsyncTestClient, redis_url: str) -> None:
    expires = datetime(2999, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    response = await client.post(
        LINKS, json={"url": "https://example.com/e", "code": "exp", "expires_at": expires.isoformat()}
    )
    assert response.status_code == 201
    cache = redis.asyncio.Redis.from_url(redis_url)
    try:
        record = decode_record(await cache.get("link:exp"))
    finally:
        await cache.aclose()
    assert record.expires_at == int(expires.timestamp()) * 1000 + 678


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "missing API key"),
        ("Basic dXNlcjpwdw==", "missing API key"),
        ("Bearer ", "missing API key"),
        ("Bearer lp_not-a-real-key", "invalid API key"),
    ],
)
async def test_requests_without_a_valid_key_are_401(
    client: AsyncTestClient, authorization: str | None, detail: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    del client.headers["Authorization"]
    for response in (
        await client.post(LINKS, json={"url": "https://example.com"}, headers=headers),
        await client.get(f"{LINKS}/x", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["status"] == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["detail"].startswith(detail)


async def test_revoked_and_expired_keys_are_401(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    await db.execute(
        """INSERT INTO api_keys (name, prefix, key_hash, scopes, revoked_at, expires_at) VALUES
           ('old', 'lp_revok', $1, '{admin}', now(), NULL),
           ('tmp', 'lp_expir', $2, '{admin}', NULL, now() - interval '1 second')""",
        hash_key("lp_revoked-key"),
        hash_key("lp_expired-key"),
    )
    revoked = await client.get(f"{LINKS}/x", headers={"Authorization": "Bearer lp_revoked-key"})
    assert (revoked.status_code, revoked.json()["detail"]) == (401, "API key revoked")
    expired = await client.get(f"{LINKS}/x", headers={"Authorization": "Bearer lp_expired-key"})
    assert (expired.status_code, expired.json()["detail"]) == (401, "API key expired")


async def test_key_without_the_scope_is_403(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    # A read-only key, inserted the way the keys API will: only its hash is stored.
    reader = "lp_read-only-key-for-this-test"
    await db.execute(
        "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('reader', $1, $2, '{links:read}')",
        reader[:8],
        hash_key(reader),
    )
    headers = {"Authorization": f"Bearer {reader}"}
    denied = await client.post(LINKS, json={"url": "https://example.com"}, headers=headers)
    assert denied.status_code == 403
    assert denied.json() == {"status": 403, "detail": "this API key lacks the 'links:write' scope"}
    assert await db.fetchval("SELECT count(*) FROM links") == 0
    # The scope it has is enough to read.
    assert (await client.post(LINKS, json={"url": "https://example.com", "code": "r"})).status_code == 201
    allowed = await client.get(f"{LINKS}/r", headers=headers)
    assert allowed.status_code == 200
    assert await db.fetchval("SELECT last_used_at IS NOT NULL FROM api_keys WHERE name = 'reader'")


async def test_redis_down_still_creates_the_link_and_leaves_the_event_to_the_relay(
    admin_settings: AdminSettings, admin_key: str, db: asyncpg.Connection, js: JetStreamContext
) -> None:
    # Port 1 refuses at once: the write-through fails, the link is stored anyway. The event is not
    # published yet (pods would re-read the old record from Redis): the relay takes it (test_outbox.py).
    settings = msgspec.structs.replace(
        admin_settings, redis=msgspec.structs.replace(admin_settings.redis, url="redis://127.0.0.1:1/0")
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.post(
            LINKS,
            json={"url": "https://example.com", "code": "noredis"},
            headers={"Authorization": f"Bearer {admin_key}"},
        )
    assert response.status_code == 201, response.text
    assert await db.fetchval("SELECT published_at IS NULL FROM link_events WHERE code = 'noredis'")
    assert (await js.stream_info(LINKS_STREAM)).state.messages == 0


async def test_publish_failure_leaves_the_event_pending_in_the_outbox(
    client: AsyncTestClient, db: asyncpg.Connection, js: JetStreamContext
) -> None:
    # Without the LINKS stream nothing acknowledges the publish.
    await js.delete_stream(LINKS_STREAM)
    response = await client.post(LINKS, json={"url": "https://example.com", "code": "pending"})
    assert response.status_code == 201, response.text
    row = await db.fetchrow("SELECT op, published_at FROM link_events WHERE code = 'pending'")
    assert row["op"] == "created" and row["published_at"] is None
