"""Bulk upload and CSV export against real Postgres, Redis and NATS: all or nothing, streamed, round trip."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
import redis.asyncio
from litestar.testing import AsyncTestClient
from nats.js import JetStreamContext
from tests.conftest import TEMPLATE_DB, MakeLink

from linkpulse.admin.app import create_app
from linkpulse.admin.auth import LINKS_READ, LINKS_WRITE, generate_key, hash_key, key_prefix
from linkpulse.admin.links import bulk_service
from linkpulse.admin.links.bulk import EXPORT_COLUMNS, MAX_ROWS, BulkRejected, parse_json
from linkpulse.admin.links.bulk_controller import BULK_MAX_BODY_BYTES
from linkpulse.admin.settings import AdminSettings
from linkpulse.events import decode_link_changed
from linkpulse.links import decode_record
from linkpulse.localstack.servers import PostgresServer
from linkpulse.messaging.streams import LINKS_STREAM

LINKS = "/api/v1/links"
BULK = f"{LINKS}/bulk"
EXPORT = f"{LINKS}/export"
CSV = {"Content-Type": "text/csv"}
_second_db = itertools.count()


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client on the test's Redis, to read what the admin API wrote through."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def second_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """Another fresh, migrated database, for restoring an export into an empty install."""
    name = f"test_restore_{next(_second_db)}"
    postgres_server.create_database(name, template=TEMPLATE_DB)
    yield postgres_server.url_for(name)
    postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', database="postgres")


async def _key(db: asyncpg.Connection, *scopes: str) -> dict[str, str]:
    """A new API key with only `scopes`, as an Authorization header."""
    key = generate_key()
    await db.execute(
        "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('scoped', $1, $2, $3)",
        key_prefix(key),
        hash_key(key),
        list(scopes),
    )
    return {"Authorization": f"Bearer {key}"}


async def _counts(db: asyncpg.Connection) -> tuple[int, int]:
    return await db.fetchval("SELECT count(*) FROM links"), await db.fetchval("SELECT count(*) FROM link_events")


async def _stream_messages(js: JetStreamContext) -> int:
    return (await js.stream_info(LINKS_STREAM)).state.messages


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# Uploads that are stored


async def test_json_bulk_of_10000_rows_stores_links_outbox_rows_cache_and_events(
    client: AsyncTestClient, db: asyncpg.Connection, cache: redis.asyncio.Redis, js: JetStreamContext
) -> None:
    # Half the rows bring a code, half get a random one; the body is far over the app's 16 KiB limit.
    rows = [
        {"url": f"https://example.com/p/{i}", **({"code": f"c{i}"} if i % 2 else {}), "tags": ["bulk", f"t{i % 3}"]}
        for i in range(MAX_ROWS)
    ]
    response = await client.post(BULK, json=rows, timeout=120)
    assert response.status_code == 201, response.text[:500]
    body = response.json()
    assert body["created"] == MAX_ROWS
    # Items come back in upload order, custom codes kept.
    items = body["items"]
    assert [item["url"] for item in items] == [row["url"] for row in rows]
    assert all(item["code"] == f"c{i}" for i, item in enumerate(items) if i % 2)
    assert all(item["short_url"] == f"https://lp.example.test/{item['code']}" for item in items)
    codes = [item["code"] for item in items]
    assert len(set(codes)) == MAX_ROWS
    # Every link is in Postgres with its tags, and one `created` outbox row each, all published.
    assert await db.fetchval("SELECT count(*) FROM links WHERE tags @> '{bulk}'") == MAX_ROWS
    assert await db.fetchval("SELECT tags FROM links WHERE code = 'c7'") == ["bulk", "t1"]
    events = await db.fetchrow(
        """SELECT count(*) AS n, count(DISTINCT link_id) AS links, bool_and(op = 'created') AS created,
                  count(published_at) AS published
           FROM link_events"""
    )
    assert dict(events) == {"n": MAX_ROWS, "links": MAX_ROWS, "created": True, "published": MAX_ROWS}
    # Redis holds every record, as redirect pods read it.
    cached = await cache.mget([f"link:{code}" for code in codes])
    assert all(raw is not None for raw in cached)
    record = decode_record(cached[7])
    assert (record.code, record.url, record.version) == ("c7", "https://example.com/p/7", 1)
    assert record.id == await db.fetchval("SELECT id FROM links WHERE code = 'c7'")
    # And every LinkChanged reached the LINKS stream.
    assert await _stream_messages(js) == MAX_ROWS


async def test_csv_upload_with_quoted_fields_tags_and_every_column(
    client: AsyncTestClient, db: asyncpg.Connection, cache: redis.asyncio.Redis
) -> None:
    body = (
        "url,code,redirect_type,expires_at,max_clicks,tags,title,forward_query,active\r\n"
        '"https://example.com/a?x=1,2",sale,308,2999-01-02T03:04:05.678+00:00,5,promo|mail| promo ,'
        '"Sale, ""big"" one",true,false\r\n'
        "https://Bücher.example/b,,,,,,,,\r\n"
    )
    response = await client.post(BULK, content=body.encode(), headers=CSV)
    assert response.status_code == 201, response.text
    assert response.json()["created"] == 2
    sale = await db.fetchrow("SELECT * FROM links WHERE code = 'sale'")
    assert sale["url"] == "https://example.com/a?x=1,2"
    assert (sale["redirect_type"], sale["max_clicks"], sale["forward_query"], sale["active"]) == (308, 5, True, False)
    assert sale["tags"] == ["promo", "mail"]
    assert sale["title"] == 'Sale, "big" one'
    assert sale["expires_at"] == datetime(2999, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    # The row without a code got a random one and the defaults; its IDN host is stored as punycode.
    other = await db.fetchrow("SELECT * FROM links WHERE code <> 'sale'")
    assert other["url"] == "https://xn--bcher-kva.example/b"
    assert (other["redirect_type"], other["active"], other["tags"], other["title"]) == (302, True, [], None)
    # The cached record carries what redirects need: disabled, expiry in epoch ms, the click limit.
    record = decode_record(await cache.get("link:sale"))
    assert (record.active, record.max_clicks, record.redirect_type) == (False, 5, 308)
    assert record.expires_at == int(datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()) * 1000 + 678


async def test_outbox_payloads_are_the_created_events_on_the_stream(
    client: AsyncTestClient, db: asyncpg.Connection, js: JetStreamContext
) -> None:
    response = await client.post(BULK, json=[{"url": "https://example.com/1", "code": "ev1"}])
    assert response.status_code == 201
    row = await db.fetchrow("SELECT * FROM link_events WHERE code = 'ev1'")
    event = decode_link_changed(row["payload"])
    assert (event.id, event.op, event.version) == (str(row["id"]), "created", 1)
    msg = await js.get_last_msg(LINKS_STREAM, "links.ev1")
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == event.id


async def test_an_empty_upload_creates_nothing(client: AsyncTestClient) -> None:
    for response in (
        await client.post(BULK, json=[]),
        await client.post(BULK, content=b"url,code\r\n", headers=CSV),
    ):
        assert response.status_code == 201
        assert response.json() == {"created": 0, "items": []}


async def test_a_random_code_that_collides_is_drawn_again(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: MakeLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first random code drawn is already in the database: the insert skips it and draws again.
    await make_link("Coll1de")
    draws = iter(["Coll1de", "Fresh01", "Fresh02"])
    monkeypatch.setattr(bulk_service, "random_code", lambda: next(draws))
    response = await client.post(BULK, json=[{"url": "https://example.com/a"}, {"url": "https://example.com/b"}])
    assert response.status_code == 201, response.text
    assert [item["code"] for item in response.json()["items"]] == ["Fresh02", "Fresh01"]
    assert await db.fetchval("SELECT url FROM links WHERE code = 'Coll1de'") == "https://example.com/landing"
    assert await db.fetchval("SELECT count(*) FROM link_events") == 2


async def test_a_failed_publish_leaves_the_links_stored_and_their_events_pending(
    admin_settings: AdminSettings, admin_key: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(*_: Any, **__: Any) -> None:
        raise TimeoutError

    monkeypatch.setattr(bulk_service, "publish_link_changed", unreachable)
    # The relay makes its first pass at startup and no other during this test.
    quiet = msgspec.structs.replace(
        admin_settings, admin=msgspec.structs.replace(admin_settings.admin, relay_interval=3600)
    )
    async with AsyncTestClient(app=create_app(quiet)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        response = await client.post(BULK, json=[{"url": f"https://example.com/{i}"} for i in range(3)])
    # Stored and answered 201; the outbox rows wait for the relay.
    assert response.status_code == 201
    assert await _counts(db) == (3, 3)
    assert await db.fetchval("SELECT count(*) FROM link_events WHERE published_at IS NULL") == 3


# Uploads that are refused, whole


async def test_one_bad_row_among_1000_is_422_naming_it_and_nothing_is_written(
    client: AsyncTestClient, db: asyncpg.Connection, cache: redis.asyncio.Redis, js: JetStreamContext
) -> None:
    existing = await client.post(LINKS, json={"url": "https://example.com/before", "code": "before"})
    assert existing.status_code == 201
    before = await _counts(db), await cache.dbsize(), await _stream_messages(js)
    rows: list[dict[str, Any]] = [{"url": f"https://example.com/{i}"} for i in range(1000)]
    rows[536]["url"] = "javascript:alert(1)"
    response = await client.post(BULK, json=rows)
    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "detail": "1 of 1000 rows are invalid; nothing was stored",
        "errors": [{"row": 537, "field": "url", "message": "url scheme must be http or https"}],
    }
    assert (await _counts(db), await cache.dbsize(), await _stream_messages(js)) == before


async def test_every_failing_row_is_listed(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    rows = [
        {"url": "https://example.com/ok"},
        {"url": "https://user:pw@example.com/"},
        {"url": "https://example.com", "code": "bulk"},
        {"url": "https://example.com", "max_clicks": 0},
        {"url": "https://example.com", "colour": "red"},
        {"url": "https://lp.example.test/loop", "code": "a b"},
    ]
    response = await client.post(BULK, json=rows)
    assert response.status_code == 422
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [
        (2, "url"),
        (3, "code"),
        (4, "max_clicks"),
        (5, "colour"),
        (6, "url"),
        (6, "code"),
    ]
    assert response.json()["detail"] == "5 of 6 rows are invalid; nothing was stored"
    assert await _counts(db) == (0, 0)


async def test_codes_repeated_in_the_upload_or_taken_in_the_database_are_422(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: MakeLink
) -> None:
    await make_link("taken")
    # A deleted link keeps its code: it answers 410, so the code stays taken.
    await make_link("gone", deleted_at=datetime.now(UTC))
    rows = [
        {"url": "https://example.com/1", "code": "taken"},
        {"url": "https://example.com/2", "code": "twice"},
        {"url": "https://example.com/3", "code": "fine"},
        {"url": "https://example.com/4", "code": "twice"},
        {"url": "https://example.com/5", "code": "gone"},
        {"url": "https://example.com/6"},
    ]
    response = await client.post(BULK, json=rows)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"row": 1, "field": "code", "message": "code 'taken' is already taken"},
        {"row": 2, "field": "code", "message": "code 'twice' appears more than once (rows 2, 4)"},
        {"row": 4, "field": "code", "message": "code 'twice' appears more than once (rows 2, 4)"},
        {"row": 5, "field": "code", "message": "code 'gone' is already taken"},
    ]
    assert await _counts(db) == (2, 0)


async def test_a_code_taken_between_the_check_and_the_insert_rolls_everything_back(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: MakeLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer takes "raced" after the check: simulated by a check that sees nothing.
    await make_link("raced")

    async def sees_nothing(*_: Any) -> list[Any]:
        return []

    monkeypatch.setattr(bulk_service.LinkBulkService, "_taken", sees_nothing)
    rows = [{"url": "https://example.com/1"}, {"url": "https://example.com/2", "code": "raced"}]
    response = await client.post(BULK, json=rows)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"row": 2, "field": "code", "message": "code 'raced' is already taken"}]
    # The random-code row inserted in the same statement was rolled back with it.
    assert await _counts(db) == (1, 0)


async def test_concurrent_uploads_sharing_codes_store_one_and_refuse_the_other(
    admin_settings: AdminSettings,
    db: asyncpg.Connection,
    cache: redis.asyncio.Redis,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both uploads pass the check for taken codes before either inserts (a barrier holds the first).
    barrier = asyncio.Barrier(2)
    check = bulk_service.LinkBulkService._taken

    async def check_then_wait(self: bulk_service.LinkBulkService, rows: Any) -> Any:
        errors = await check(self, rows)
        await asyncio.wait_for(barrier.wait(), 30)
        return errors

    monkeypatch.setattr(bulk_service.LinkBulkService, "_taken", check_then_wait)
    # The same 2,000 codes in opposite orders: unserialised, the inserts would deadlock. One upload
    # is stored whole and the other finds every shared code taken.
    forward = [{"url": f"https://example.com/{i}", "code": f"shared{i}"} for i in range(2000)]
    uploads = [parse_json(msgspec.json.encode(rows)) for rows in (forward, forward[::-1])]
    pool = await asyncpg.create_pool(admin_settings.database.url, min_size=2, max_size=2)
    try:
        service = bulk_service.LinkBulkService(pool, cache, js, options=admin_settings.admin, redis_ttl=60)
        results = await asyncio.gather(*(service.create(u) for u in uploads), return_exceptions=True)
    finally:
        await pool.close()
    stored = [r for r in results if isinstance(r, bulk_service.BulkCreated)]
    refused = [r for r in results if isinstance(r, BulkRejected)]
    assert (len(stored), len(refused)) == (1, 1), results
    assert stored[0].created == 2000
    assert {e.message for e in refused[0].errors} == {f"code 'shared{i}' is already taken" for i in range(2000)}
    assert await _counts(db) == (2000, 2000)


async def test_more_than_10000_rows_is_422(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    too_many = [{"url": "https://example.com"}] * (MAX_ROWS + 1)
    csv_body = ("url\r\n" + "https://example.com\r\n" * (MAX_ROWS + 1)).encode()
    for response in (await client.post(BULK, json=too_many), await client.post(BULK, content=csv_body, headers=CSV)):
        assert response.status_code == 422
        assert response.json() == {
            "status": 422,
            "detail": "an upload holds at most 10000 rows; split the file",
        }
    assert await _counts(db) == (0, 0)


async def test_bodies_that_cannot_be_read_are_refused_with_a_reason(
    client: AsyncTestClient, db: asyncpg.Connection
) -> None:
    cases = [
        (b"url,code\r\nhttps://example.com/\xff\xfe,x\r\n", CSV, 400, "not valid UTF-8"),
        (b'url,code\r\n"https://example.com,x\r\n', CSV, 400, "malformed CSV at line 2"),
        (b'url,code\r\n"https://example.com"oops,x\r\n', CSV, 400, "malformed CSV at line 2"),
        (b"link\r\nhttps://example.com\r\n", CSV, 422, "unknown column 'link'"),
        (b'[{"url": "https://example.com"}', {"Content-Type": "application/json"}, 400, "malformed JSON"),
        (b'{"url": "https://example.com"}', {"Content-Type": "application/json"}, 422, "must be a JSON array"),
        (b"", {"Content-Type": "application/json"}, 400, "a request body is required"),
        (b"url\nhttps://example.com\n", {"Content-Type": "text/plain"}, 415, "application/json"),
        (b"url\nhttps://example.com\n", {"Content-Type": "text/csv; charset=latin-1"}, 415, "UTF-8"),
    ]
    for content, headers, status, reason in cases:
        response = await client.post(BULK, content=content, headers=headers)
        assert response.status_code == status, (content, response.text)
        assert response.json()["status"] == status
        assert reason in response.json()["detail"], (content, response.json())
    assert await _counts(db) == (0, 0)


async def test_bulk_bodies_may_reach_8_mib_and_no_further(client: AsyncTestClient) -> None:
    oversized = b"url\r\n" + b"https://example.com/" + b"a" * BULK_MAX_BODY_BYTES
    response = await client.post(BULK, content=oversized, headers=CSV)
    assert response.status_code == 413
    # Other routes keep the app's limit (16 KiB in these tests).
    single = await client.post(LINKS, json={"url": "https://example.com", "title": "x" * 20_000})
    assert single.status_code == 413


async def test_scopes_guard_bulk_and_export(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    read_only = await _key(db, LINKS_READ)
    write_only = await _key(db, LINKS_WRITE)
    upload = [{"url": "https://example.com"}]
    denied = await client.post(BULK, json=upload, headers=read_only)
    assert denied.status_code == 403
    assert denied.json() == {"status": 403, "detail": "this API key lacks the 'links:write' scope"}
    assert (await client.get(EXPORT, headers=write_only)).status_code == 403
    assert (await client.post(BULK, json=upload, headers=write_only)).status_code == 201
    assert (await client.get(EXPORT, headers=read_only)).status_code == 200
    del client.headers["Authorization"]
    assert (await client.post(BULK, json=upload)).status_code == 401
    assert (await client.get(EXPORT)).status_code == 401
    assert await _counts(db) == (1, 1)


async def test_bulk_and_export_are_not_taken_for_link_codes(client: AsyncTestClient, make_link: MakeLink) -> None:
    # Even a link row that somehow has the code "export" cannot shadow the export route.
    await make_link("export")
    export = await client.get(EXPORT)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    # GET on the bulk path is not a lookup of a link called "bulk".
    assert (await client.get(BULK)).status_code == 405
    # Neither word can become a code, and ordinary codes still resolve.
    for code in ("bulk", "export", "Export"):
        refused = await client.post(LINKS, json={"url": "https://example.com", "code": code})
        assert refused.status_code == 422 and "reserved" in refused.json()["detail"]
    created = await client.post(LINKS, json={"url": "https://example.com", "code": "bulky"})
    assert created.status_code == 201
    assert (await client.get(f"{LINKS}/bulky")).json()["code"] == "bulky"


# Export


async def test_export_streams_every_live_link_with_the_columns(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: MakeLink
) -> None:
    uploaded = await client.post(
        BULK,
        json=[
            {
                "url": "https://example.com/a",
                "code": "a",
                "redirect_type": 301,
                "expires_at": "2999-01-01T00:00:00Z",
                "max_clicks": 9,
                "tags": ["x", "y"],
                "title": 'A, "quoted"',
                "forward_query": True,
            },
            {"url": "https://example.com/b", "code": "b", "active": False},
        ],
    )
    assert uploaded.status_code == 201
    await make_link("deleted", deleted_at=datetime.now(UTC))
    await db.execute("INSERT INTO link_totals (link_id, clicks, bot_clicks) SELECT id, 41, 2 FROM links WHERE code='a'")
    response = await client.get(EXPORT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="links.csv"'
    assert response.text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    rows = _csv(response.text)
    created_a = await db.fetchval("SELECT created_at FROM links WHERE code = 'a'")
    assert rows[0] == {
        "code": "a",
        "url": "https://example.com/a",
        "short_url": "https://lp.example.test/a",
        "redirect_type": "301",
        "active": "true",
        "expires_at": "2999-01-01T00:00:00+00:00",
        "max_clicks": "9",
        "tags": "x|y",
        "title": 'A, "quoted"',
        "forward_query": "true",
        "created_at": created_a.isoformat(),
        "clicks": "41",
        "bot_clicks": "2",
    }
    # Oldest first; the deleted link is left out.
    assert [r["code"] for r in rows] == ["a", "b"]
    assert (rows[1]["active"], rows[1]["expires_at"], rows[1]["tags"], rows[1]["clicks"]) == ("false", "", "", "0")


async def test_export_filters_by_tag(client: AsyncTestClient) -> None:
    rows = [
        {"url": "https://example.com/1", "code": "t1", "tags": ["promo"]},
        {"url": "https://example.com/2", "code": "t2", "tags": ["mail", "promo"]},
        {"url": "https://example.com/3", "code": "t3", "tags": ["mail"]},
        {"url": "https://example.com/4", "code": "t4"},
    ]
    assert (await client.post(BULK, json=rows)).status_code == 201
    for tag, codes in (("promo", ["t1", "t2"]), ("mail", ["t2", "t3"]), ("none", [])):
        response = await client.get(EXPORT, params={"tag": tag})
        assert response.status_code == 200
        assert [r["code"] for r in _csv(response.text)] == codes
    # A tag no link can carry is refused before anything streams.
    for bad in ("a\x00b", "x" * 65):
        refused = await client.get(EXPORT, params={"tag": bad})
        assert refused.status_code == 422
        assert refused.json()["detail"] == "tag must be at most 64 characters, without control characters"


async def test_export_escapes_cells_a_spreadsheet_would_run(client: AsyncTestClient) -> None:
    rows = [
        {"url": "https://example.com/1", "code": "-dash", "title": '=HYPERLINK("https://evil.example","x")'},
        {"url": "https://example.com/2", "code": "plus", "title": "+1+1", "tags": ["@ops", "b"]},
        {"url": "https://example.com/3", "code": "quote", "title": "'=already"},
        {"url": "https://example.com/4", "code": "plain", "title": "a = b - c"},
    ]
    assert (await client.post(BULK, json=rows)).status_code == 201
    exported = {r["short_url"].rsplit("/", 1)[1]: r for r in _csv((await client.get(EXPORT)).text)}
    assert exported["-dash"]["code"] == "'-dash"
    assert exported["-dash"]["title"] == '\'=HYPERLINK("https://evil.example","x")'
    assert (exported["plus"]["title"], exported["plus"]["tags"]) == ("'+1+1", "'@ops|b")
    assert exported["quote"]["title"] == "''=already"
    assert exported["plain"]["title"] == "a = b - c"


async def test_export_reads_in_batches_and_yields_chunks(
    admin_settings: AdminSettings,
    client: AsyncTestClient,
    cache: redis.asyncio.Redis,
    js: JetStreamContext,
) -> None:
    # 3,000 links make about 400 KiB of CSV: several chunks, none holding every row.
    rows = [{"url": f"https://example.com/{'x' * 60}/{i}", "title": "t" * 40} for i in range(3000)]
    assert (await client.post(BULK, json=rows, timeout=60)).status_code == 201
    pool = await asyncpg.create_pool(admin_settings.database.url, min_size=1, max_size=1)
    try:
        service = bulk_service.LinkBulkService(pool, cache, js, options=admin_settings.admin, redis_ttl=60)
        chunks = [chunk async for chunk in service.export()]
    finally:
        await pool.close()
    assert len(chunks) > 3
    assert all(len(chunk) < 100 * 1024 for chunk in chunks)
    text = "".join(chunks)
    assert len(_csv(text)) == 3000
    assert text == (await client.get(EXPORT)).text


async def test_an_export_reimports_into_an_empty_database(
    client: AsyncTestClient, admin_settings: AdminSettings, admin_key: str, second_database_url: str
) -> None:
    # A varied set of links: custom and random codes, every field, escaped cells, disabled, expired.
    rows = [
        {
            "url": "https://example.com/a?q=1,2",
            "code": "-a",
            "redirect_type": 307,
            "expires_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            "max_clicks": 100,
            "tags": ["@team", "promo"],
            "title": '=cmd, "quoted"\u00e9 ',
            "forward_query": True,
        },
        {"url": "https://xn--bcher-kva.example/straße", "active": False},
        {"url": "https://example.com/expired", "code": "old", "expires_at": "2001-01-01T00:00:00Z"},
        *({"url": f"https://example.com/{i}", "tags": [f"t{i % 4}"]} for i in range(200)),
    ]
    assert (await client.post(BULK, json=rows)).status_code == 201
    exported = (await client.get(EXPORT)).text
    # Restore into a new install: same servers, a database with no links.
    fresh = msgspec.structs.replace(
        admin_settings, database=msgspec.structs.replace(admin_settings.database, url=second_database_url)
    )
    async with AsyncTestClient(app=create_app(fresh)) as restored:
        restored.headers["Authorization"] = f"Bearer {admin_key}"
        imported = await restored.post(BULK, content=exported.encode(), headers=CSV)
        assert imported.status_code == 201, imported.text[:1000]
        assert imported.json()["created"] == len(rows)
        again = (await restored.get(EXPORT)).text
    # Everything but the creation times matches, codes included, in the same order.
    kept = [c for c in EXPORT_COLUMNS if c != "created_at"]
    before = [[r[c] for c in kept] for r in _csv(exported)]
    after = [[r[c] for c in kept] for r in _csv(again)]
    assert after == before
    assert (before[0][kept.index("code")], before[0][kept.index("tags")]) == ("'-a", "'@team|promo")


async def test_openapi_documents_bulk_and_export(client: AsyncTestClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    bulk = schema["paths"]["/api/v1/links/bulk"]["post"]
    export = schema["paths"]["/api/v1/links/export"]["get"]
    assert (bulk["operationId"], export["operationId"]) == ("bulkCreateLinks", "exportLinks")
    # Both media types are documented, rows referring to the LinkCreate schema that exists.
    content = bulk["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}
    ref = content["application/json"]["schema"]["items"]["allOf"][0]["$ref"]
    assert ref.rsplit("/", 1)[1] in schema["components"]["schemas"]
    assert {"201", "400", "401", "403", "413", "415", "422"} <= set(bulk["responses"])
    assert "text/csv" in export["responses"]["200"]["content"]
    assert bulk["security"] == export["security"] == [{"apiKey": []}]
