"""Target rules through the admin API: non-public and ambiguous hosts refused by create, bulk and PATCH alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from linkpulse.admin.app import create_app
from linkpulse.admin.settings import AdminSettings

LINKS = "/api/v1/links"
BULK = f"{LINKS}/bulk"

# What each target is, as the 422 names it.
NON_PUBLIC = {
    "http://127.0.0.1:6379/": "127.0.0.1 is a loopback address",
    "http://2130706433/admin": "2130706433 (127.0.0.1) is a loopback address",
    "http://0x7f.1/": "0x7f.1 (127.0.0.1) is a loopback address",
    "http://0/": "0 (0.0.0.0) is the unspecified address",
    "http://[::ffff:127.0.0.1]/": "is a loopback address",
    "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
    "http://10.0.0.5/wiki": "10.0.0.5 is a private address",
    "http://localhost:8080/": "localhost is a local name",
    "http://db.internal/": "db.internal is a local name",
}


@pytest.fixture
async def intranet(admin_settings: AdminSettings, admin_key: str) -> AsyncIterator[AsyncTestClient]:
    """The admin app of an intranet install: `LINKPULSE_ADMIN_ALLOW_PRIVATE_TARGETS` on, the rest as `client`."""
    settings = msgspec.structs.replace(
        admin_settings, admin=msgspec.structs.replace(admin_settings.admin, allow_private_targets=True)
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        yield client


async def _stored(db: asyncpg.Connection) -> tuple[int, int]:
    return await db.fetchval("SELECT count(*) FROM links"), await db.fetchval("SELECT count(*) FROM link_events")


async def test_create_refuses_non_public_targets_naming_why(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    for url, reason in NON_PUBLIC.items():
        response = await client.post(LINKS, json={"url": url})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["status"] == 422
        assert reason in response.json()["detail"], (url, response.json())
    assert await _stored(db) == (0, 0)


async def test_create_refuses_hosts_a_browser_reads_otherwise(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    for url, reason in {
        "https://example.com\uff3cevil.com/": "U+FF3C (FULLWIDTH REVERSE SOLIDUS), which reads as '\\\\'",
        "https://exa\u00a0mple.com/": "U+00A0 (NO-BREAK SPACE), which reads as ' '",
        "https://exa\u3000mple.com/": "U+3000 (IDEOGRAPHIC SPACE), which reads as ' '",
        "https://example.com:0/": "port 0",
        "https://lp\uff0eexample\u3002test/": "loop",
    }.items():
        response = await client.post(LINKS, json={"url": url})
        assert response.status_code == 422, (url, response.text)
        assert reason in response.json()["detail"], (url, response.json())
    assert await _stored(db) == (0, 0)


async def test_create_stores_the_host_a_browser_connects_to(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    for code, url, stored in [
        ("idna2008", "https://faß.de/x", "https://xn--fa-hia.de/x"),
        ("numeric", "http://134744072/dns", "http://8.8.8.8/dns"),
        ("octal", "http://010.010.010.010/", "http://8.8.8.8/"),
    ]:
        response = await client.post(LINKS, json={"url": url, "code": code})
        assert response.status_code == 201, response.text
        assert response.json()["url"] == stored
        assert await db.fetchval("SELECT url FROM links WHERE code = $1", code) == stored


async def test_bulk_json_and_csv_refuse_a_non_public_row_and_store_nothing(
    client: AsyncTestClient, db: asyncpg.Connection
) -> None:
    rows = [{"url": "https://example.com/ok"}, {"url": "http://0x7f000001/"}, {"url": "http://printer.local/"}]
    response = await client.post(BULK, json=rows)
    assert response.status_code == 422, response.text
    errors = [(e["row"], e["field"], e["message"]) for e in response.json()["errors"]]
    assert [(row, field) for row, field, _ in errors] == [(2, "url"), (3, "url")]
    assert "(127.0.0.1) is a loopback address" in errors[0][2] and "a local name" in errors[1][2]
    csv = "url,code\nhttps://example.com/ok,ok\nhttp://[fe80::1]/,lan\n"
    response = await client.post(BULK, content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["row"], error["field"]) == (2, "url") and "a link-local address" in error["message"]
    assert await _stored(db) == (0, 0)


async def test_patch_refuses_a_non_public_target_and_changes_nothing(
    client: AsyncTestClient, db: asyncpg.Connection
) -> None:
    assert (await client.post(LINKS, json={"url": "https://example.com/", "code": "moved"})).status_code == 201
    response = await client.patch(f"{LINKS}/moved", json={"url": "http://127.1/"})
    assert response.status_code == 422, response.text
    assert "127.1 (127.0.0.1) is a loopback address" in response.json()["detail"]
    assert await db.fetchval("SELECT url FROM links WHERE code = 'moved'") == "https://example.com/"
    assert await _stored(db) == (1, 1)


async def test_an_intranet_install_accepts_private_targets_everywhere(
    intranet: AsyncTestClient, db: asyncpg.Connection
) -> None:
    created = await intranet.post(LINKS, json={"url": "http://2130706433:8080/", "code": "lan"})
    assert created.status_code == 201, created.text
    assert created.json()["url"] == "http://127.0.0.1:8080/"
    patched = await intranet.patch(f"{LINKS}/lan", json={"url": "http://wiki.internal/start"})
    assert patched.status_code == 200, patched.text
    bulk = await intranet.post(BULK, json=[{"url": "http://10.0.0.5/", "code": "nas"}])
    assert bulk.status_code == 201, bulk.text
    csv = "url,code\nhttp://[fe80::1]/,router\n"
    bulk_csv = await intranet.post(BULK, content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert bulk_csv.status_code == 201, bulk_csv.text
    stored = dict(await db.fetch("SELECT code, url FROM links"))
    assert stored == {
        "lan": "http://wiki.internal/start",
        "nas": "http://10.0.0.5/",
        "router": "http://[fe80::1]/",
    }
    # The shortener's own hosts still loop, and port 0 is still no port.
    for url, reason in {"https://lp.example.test/x": "loop", "http://10.0.0.5:0/": "port 0"}.items():
        response = await intranet.post(LINKS, json={"url": url})
        assert response.status_code == 422 and reason in response.json()["detail"], (url, response.text)
