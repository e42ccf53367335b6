"""PATCH and DELETE of `/api/v1/links/{code}` against real servers: rows, outbox, LinkChanged, Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext

from linkpulse.admin.auth import hash_key
from linkpulse.events import LinkChanged, decode_link_changed
from linkpulse.links import LinkRecord, decode_record
from linkpulse.messaging.streams import LINKS_STREAM, link_subject

LINKS = "/api/v1/links"
FUTURE = datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client on the test Redis, to read the records the admin API writes through."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def record(cache: redis.asyncio.Redis, code: str) -> LinkRecord:
    raw = await cache.get(f"link:{code}")
    assert raw is not None, f"no Redis record for {code}"
    return decode_record(raw)


async def events_on(js: JetStreamContext, code: str) -> list[tuple[str, LinkChanged]]:
    """Every message on `links.<code>` in stream order, as (Nats-Msg-Id, event)."""
    info = await js.stream_info(LINKS_STREAM)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(LINKS_STREAM, seq)
        if msg.subject == link_subject(code):
            assert msg.headers is not None and msg.data is not None
            found.append((msg.headers["Nats-Msg-Id"], decode_link_changed(msg.data)))
    return found


async def create(client: AsyncTestClient, code: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(LINKS, json={"url": "https://example.com/old", "code": code, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def read_only(db: asyncpg.Connection) -> dict[str, str]:
    """Headers with a key that has only `links:read` (stored as its hash, as the keys API does)."""
    key = "lp_read-only-key-for-change-tests"
    await db.execute(
        "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('reader', $1, $2, '{links:read}')",
        key[:8],
        hash_key(key),
    )
    return {"Authorization": f"Bearer {key}"}


# Each field PATCH can change: (body, what the API then shows, what the Redis record then holds).
CHANGES = [
    ({"url": "https://example.com/new"}, {"url": "https://example.com/new"}, {"url": "https://example.com/new"}),
    ({"url": "https://Bücher.example/x"}, {"url": "https://xn--bcher-kva.example/x"}, {}),
    ({"redirect_type": 301}, {"redirect_type": 301}, {"redirect_type": 301}),
    ({"expires_at": FUTURE.isoformat()}, {"expires_at": "2999-01-02T03:04:05Z"}, {"expires_at": 32472241445000}),
    ({"expires_at": None}, {"expires_at": None}, {"expires_at": None}),
    ({"max_clicks": 9}, {"max_clicks": 9}, {"max_clicks": 9}),
    ({"max_clicks": None}, {"max_clicks": None}, {"max_clicks": None}),
    ({"tags": ["b", "a", "b"]}, {"tags": ["b", "a"]}, {}),
    ({"tags": []}, {"tags": []}, {}),
    ({"title": "New title"}, {"title": "New title"}, {}),
    ({"title": None}, {"title": None}, {}),
    ({"active": False}, {"active": False}, {"active": False}),
    ({"forward_query": True}, {"forward_query": True}, {"forward_query": True}),
]


@pytest.mark.parametrize(("body", "shown", "cached"), CHANGES)
async def test_patch_changes_each_field_bumps_version_and_announces_it(
    client: AsyncTestClient,
    db: asyncpg.Connection,
    js: JetStreamContext,
    cache: redis.asyncio.Redis,
    body: dict[str, Any],
    shown: dict[str, Any],
    cached: dict[str, Any],
) -> None:
    # A link with every optional field set, so clearing one is visible.
    before = await create(client, "chg", expires_at="2998-01-01T00:00:00Z", max_clicks=5, tags=["x"], title="Old title")
    response = await client.patch(f"{LINKS}/chg", json=body)
    assert response.status_code == 200, response.text
    after = response.json()
    # The fields sent changed, nothing else did (apart from version and updated_at).
    assert {k: after[k] for k in shown} == shown
    untouched = set(before) - set(shown) - {"version", "updated_at"}
    assert {k: after[k] for k in untouched} == {k: before[k] for k in untouched}
    assert after["version"] == 2
    assert after["updated_at"] > before["updated_at"]
    # GET shows the same link.
    assert (await client.get(f"{LINKS}/chg")).json() == after
    # One outbox row per change, published, with the new version.
    rows = await db.fetch("SELECT op, version, published_at, payload FROM link_events WHERE code = 'chg' ORDER BY 2")
    assert [(r["op"], r["version"]) for r in rows] == [("created", 1), ("updated", 2)]
    assert all(r["published_at"] is not None for r in rows)
    # The stream holds the same two events, each with its id as Nats-Msg-Id.
    published = await events_on(js, "chg")
    assert [(e.op, e.version) for _, e in published] == [("created", 1), ("updated", 2)]
    assert all(msg_id == e.id for msg_id, e in published)
    assert published[1][1] == decode_link_changed(rows[1]["payload"])
    # Redis holds the new record for redirect pods.
    cached_now = await record(cache, "chg")
    assert cached_now.version == 2 and cached_now.url == after["url"]
    assert {k: getattr(cached_now, k) for k in cached} == cached


async def test_several_changes_in_one_patch_and_in_a_row(
    client: AsyncTestClient, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis
) -> None:
    await create(client, "many")
    for version, url in enumerate(["https://example.com/2", "https://example.com/3", "https://example.com/4"], 2):
        response = await client.patch(f"{LINKS}/many", json={"url": url, "redirect_type": 307, "active": True})
        assert response.status_code == 200, response.text
        assert (response.json()["version"], response.json()["url"]) == (version, url)
    assert await db.fetchval("SELECT version FROM links WHERE code = 'many'") == 4
    assert await db.fetchval("SELECT count(*) FROM link_events WHERE code = 'many' AND published_at IS NULL") == 0
    assert [e.version for _, e in await events_on(js, "many")] == [1, 2, 3, 4]
    assert (await record(cache, "many")).url == "https://example.com/4"


async def test_patch_returns_the_click_totals(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    await create(client, "clicked")
    await db.execute("INSERT INTO link_totals (link_id, clicks, bot_clicks) SELECT id, 12, 1 FROM links")
    body = (await client.patch(f"{LINKS}/clicked", json={"title": "t"})).json()
    assert (body["clicks"], body["bot_clicks"]) == (12, 1)


BAD_PATCHES = [
    ({}, "nothing to change"),
    ({"url": "javascript:alert(1)"}, "scheme"),
    ({"url": "https://example.com/a\r\nX: y"}, "control characters"),
    ({"url": "https://lp.example.test/loop"}, "loop"),
    ({"url": "https://user:pw@example.com"}, "credentials"),
    ({"url": None}, "url: Expected `str`, got `null`"),
    ({"url": 5}, "url: Expected `str`, got `int`"),
    ({"redirect_type": 303}, "redirect_type: Invalid enum value 303"),
    ({"redirect_type": "301"}, "redirect_type: Expected `int`, got `str`"),
    ({"redirect_type": None}, "redirect_type: Expected `int`, got `null`"),
    ({"active": None}, "active: Expected `bool`, got `null`"),
    ({"active": "false"}, "active: Expected `bool`, got `str`"),
    ({"max_clicks": 0}, "max_clicks: Expected `int` >= 1"),
    ({"tags": None}, "tags: Expected `array`, got `null`"),
    ({"tags": ["a\tb"]}, "tags must not contain control characters"),
    ({"title": "x\x00"}, "title must not contain control characters"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at must be in the future"),
    ({"expires_at": "2999-01-01T00:00:00"}, "expires_at: Expected `datetime` with"),
    ({"code": "renamed"}, "unknown field `code`"),
    ({"colour": "red"}, "unknown field `colour`"),
    ([], "Expected `object`, got `array`"),
]


async def test_bad_patches_are_422_with_the_reason_and_change_nothing(
    client: AsyncTestClient, db: asyncpg.Connection
) -> None:
    await create(client, "strict")
    for body, reason in BAD_PATCHES:
        response = await client.patch(f"{LINKS}/strict", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["status"] == 422
        assert reason in response.json()["detail"], (body, response.json())
    assert await db.fetchval("SELECT version FROM links WHERE code = 'strict'") == 1
    assert await db.fetchval("SELECT count(*) FROM link_events") == 1


async def test_malformed_and_missing_patch_bodies_are_400(client: AsyncTestClient) -> None:
    await create(client, "body")
    headers = {"Content-Type": "application/json"}
    assert (await client.patch(f"{LINKS}/body", content=b'{"url":', headers=headers)).status_code == 400
    empty = await client.patch(f"{LINKS}/body", content=b"", headers=headers)
    assert (empty.status_code, empty.json()["detail"]) == (400, "a JSON request body is required")


async def test_patch_of_an_unknown_or_deleted_code_is_404(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    missing = await client.patch(f"{LINKS}/nope", json={"title": "x"})
    assert missing.json() == {"status": 404, "detail": "no link with code 'nope'"}
    await create(client, "del")
    assert (await client.delete(f"{LINKS}/del")).status_code == 204
    assert (await client.patch(f"{LINKS}/del", json={"active": True})).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM link_events WHERE code IN ('nope', 'del')") == 2


async def test_changes_need_links_write(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    await create(client, "guarded")
    headers = await read_only(db)
    patched = await client.patch(f"{LINKS}/guarded", json={"title": "x"}, headers=headers)
    assert patched.json() == {"status": 403, "detail": "this API key lacks the 'links:write' scope"}
    deleted = await client.delete(f"{LINKS}/guarded", headers=headers)
    assert deleted.status_code == 403
    assert await db.fetchval("SELECT (version, deleted_at) FROM links WHERE code = 'guarded'") == (1, None)
    del client.headers["Authorization"]
    assert (await client.patch(f"{LINKS}/guarded", json={"title": "x"})).status_code == 401
    assert (await client.delete(f"{LINKS}/guarded")).status_code == 401


async def test_delete_is_soft_keeps_the_code_taken_and_tells_redirects(
    client: AsyncTestClient, db: asyncpg.Connection, js: JetStreamContext, cache: redis.asyncio.Redis
) -> None:
    await create(client, "bye")
    response = await client.delete(f"{LINKS}/bye")
    assert response.status_code == 204 and response.content == b""
    # The API no longer shows it: GET and a second DELETE are 404 (redirects answer 410, see e2e).
    assert (await client.get(f"{LINKS}/bye")).status_code == 404
    assert (await client.delete(f"{LINKS}/bye")).status_code == 404
    # The row stays, marked, with a new version; the code cannot be created again.
    row = await db.fetchrow("SELECT deleted_at, version, url FROM links WHERE code = 'bye'")
    assert row["deleted_at"] is not None and row["version"] == 2 and row["url"] == "https://example.com/old"
    again = await client.post(LINKS, json={"url": "https://example.com/again", "code": "bye"})
    assert again.json() == {"status": 409, "detail": "code 'bye' is already taken"}
    # A `deleted` event, published, and a Redis record saying so (redirects answer 410 from it).
    assert await db.fetchval("SELECT count(*) FROM link_events WHERE published_at IS NULL") == 0
    assert [(e.op, e.version) for _, e in await events_on(js, "bye")] == [("created", 1), ("deleted", 2)]
    cached = await record(cache, "bye")
    assert cached.deleted is True and cached.version == 2


async def test_delete_of_an_unknown_code_is_404(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    response = await client.delete(f"{LINKS}/never")
    assert response.json() == {"status": 404, "detail": "no link with code 'never'"}
    assert await db.fetchval("SELECT count(*) FROM link_events") == 0


async def test_expired_link_can_get_a_new_expiry(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    # Expiry passed (set directly: the API refuses past dates); PATCH may move it to the future.
    await create(client, "late", expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    await db.execute("UPDATE links SET expires_at = now() - interval '1 day' WHERE code = 'late'")
    response = await client.patch(f"{LINKS}/late", json={"expires_at": FUTURE.isoformat()})
    assert response.status_code == 200, response.text
    assert response.json()["expires_at"] == "2999-01-02T03:04:05Z"
