"""`GET /api/v1/links` against real Postgres: keyset pages, search, tag filter, bad parameters, scopes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from tests.conftest import MakeLink

from linkpulse.admin.auth import hash_key

LINKS = "/api/v1/links"


async def all_pages(client: AsyncTestClient, **params: Any) -> list[list[dict[str, Any]]]:
    """Follow `next_cursor` from the first page to the last; every page's items."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(LINKS, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "next_cursor never ended"


async def add_key(db: asyncpg.Connection, key: str, *scopes: str) -> dict[str, str]:
    """Store an API key with `scopes` (only its hash); the Authorization header that sends it."""
    await db.execute(
        "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ('test', $1, $2, $3)",
        key[:8],
        hash_key(key),
        list(scopes),
    )
    return {"Authorization": f"Bearer {key}"}


async def test_120_links_in_pages_of_50_have_no_duplicates_no_gaps_and_a_stable_order(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: MakeLink
) -> None:
    # 120 links over 40 timestamps, three per timestamp: ties are broken by id, so order is total.
    base = datetime(2030, 1, 1, tzinfo=UTC)
    ids = {}
    for i in range(120):
        ids[f"c{i:03d}"] = await make_link(f"c{i:03d}", created_at=base + timedelta(microseconds=i // 3))
    expected = sorted(ids, key=lambda code: (base + timedelta(microseconds=int(code[1:]) // 3), ids[code]))[::-1]

    pages = await all_pages(client, limit=50)
    assert [len(p) for p in pages] == [50, 50, 20]
    codes = [item["code"] for page in pages for item in page]
    assert codes == expected  # newest first, each exactly once
    # The same walk again gives the same pages.
    assert [[item["code"] for item in page] for page in await all_pages(client, limit=50)] == [
        codes[:50],
        codes[50:100],
        codes[100:],
    ]


async def test_links_created_while_paging_neither_repeat_nor_shift_later_pages(
    client: AsyncTestClient, make_link: MakeLink
) -> None:
    for i in range(10):
        await make_link(f"old{i}", created_at=datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=i))
    first = (await client.get(LINKS, params={"limit": 4})).json()
    # New links sort above the first page: the cursor continues exactly where it was.
    await client.post(LINKS, json={"url": "https://example.com/new", "code": "newer"})
    second = (await client.get(LINKS, params={"limit": 4, "cursor": first["next_cursor"]})).json()
    assert [i["code"] for i in first["items"]] == ["old9", "old8", "old7", "old6"]
    assert [i["code"] for i in second["items"]] == ["old5", "old4", "old3", "old2"]


async def test_default_page_is_50_and_items_carry_click_totals(
    client: AsyncTestClient, db: asyncpg.Connection, make_link: MakeLink
) -> None:
    for i in range(55):
        await make_link(f"d{i}")
    await db.execute(
        "INSERT INTO link_totals (link_id, clicks, bot_clicks) SELECT id, 7, 2 FROM links WHERE code = 'd3'"
    )
    page = (await client.get(LINKS)).json()
    assert len(page["items"]) == 50 and page["next_cursor"] is not None
    items = {i["code"]: i for page in await all_pages(client) for i in page}
    assert (items["d3"]["clicks"], items["d3"]["bot_clicks"]) == (7, 2)
    assert (items["d4"]["clicks"], items["d4"]["bot_clicks"]) == (0, 0)
    # An item has the same shape as GET /links/{code}.
    assert items["d3"] == (await client.get(f"{LINKS}/d3")).json()


async def test_an_empty_list_has_no_cursor(client: AsyncTestClient) -> None:
    response = await client.get(LINKS)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_deleted_links_are_left_out(client: AsyncTestClient) -> None:
    for code in ("keep", "gone"):
        assert (await client.post(LINKS, json={"url": "https://example.com", "code": code})).status_code == 201
    assert (await client.delete(f"{LINKS}/gone")).status_code == 204
    assert [i["code"] for i in (await client.get(LINKS)).json()["items"]] == ["keep"]
    assert [i["code"] for i in (await client.get(LINKS, params={"q": "gone"})).json()["items"]] == []


async def test_q_is_a_case_insensitive_substring_of_code_url_or_title(
    client: AsyncTestClient, make_link: MakeLink
) -> None:
    await make_link("Spring", "https://example.com/a")
    await make_link("a1", "https://shop.example.com/SPRING-sale")
    await make_link("a2", "https://example.com/b", title="Our spring launch")
    await make_link("a3", "https://example.com/c", title="Autumn")
    await make_link("pct", "https://example.com/100%25-off", title="100% off")
    await make_link("under_score", "https://example.com/x")

    async def found(q: str) -> set[str]:
        pages = await all_pages(client, q=q)
        return {i["code"] for page in pages for i in page}

    assert await found("spring") == {"Spring", "a1", "a2"}
    assert await found("SPRING") == {"Spring", "a1", "a2"}
    assert await found("autumn") == {"a3"}
    # LIKE wildcards in q are literal characters.
    assert await found("%") == {"pct"}
    assert await found("_") == {"under_score"}
    assert await found("nothing-matches") == set()
    # q and pagination compose: pages of 1 walk the same three links.
    assert [len(p) for p in await all_pages(client, q="spring", limit=1)] == [1, 1, 1]


async def test_tag_matches_whole_tags_and_combines_with_q(client: AsyncTestClient, make_link: MakeLink) -> None:
    await make_link("t1", tags=["promo", "mail"])
    await make_link("t2", tags=["promo"], title="sms")
    await make_link("t3", tags=["promotion"])
    await make_link("t4")

    async def tagged(**params: str) -> list[str]:
        return sorted(i["code"] for i in (await client.get(LINKS, params=params)).json()["items"])

    assert await tagged(tag="promo") == ["t1", "t2"]
    assert await tagged(tag="mail") == ["t1"]
    assert await tagged(tag="pro") == []  # exact, not a prefix
    assert await tagged(tag="Promo") == []  # tags are case-sensitive labels
    assert await tagged(tag="promo", q="sms") == ["t2"]


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"limit": "0"}, "limit: Expected `int` >= 1"),
        ({"limit": "201"}, "limit: Expected `int` <= 200"),
        ({"limit": "-5"}, "limit: Expected `int` >= 1"),
        ({"limit": "ten"}, "limit: Expected `int`, got `str`"),
        ({"cursor": "not a cursor!"}, "cursor is not valid"),
        ({"cursor": _cursor(b"[1]")}, "cursor is not valid"),
        ({"cursor": _cursor(b'["2030-01-01",1]')}, "cursor is not valid"),
        ({"cursor": _cursor(b'{"a":1}')}, "cursor is not valid"),
        ({"cursor": _cursor(b"[1,0]")}, "cursor is not valid"),
        ({"cursor": _cursor(b"[99999999999999999999,1]")}, "cursor is not valid"),
        ({"cursor": _cursor(b"[1,1]") + "é"}, "cursor is not valid"),
        ({"cursor": "x" * 201}, "cursor: Expected `str` of length <= 200"),
        ({"q": "q" * 201}, "q: Expected `str` of length <= 200"),
        ({"tag": "t" * 65}, "tag: Expected `str` of length <= 64"),
    ],
)
async def test_bad_parameters_are_422_with_the_reason(
    client: AsyncTestClient, params: dict[str, str], reason: str
) -> None:
    response = await client.get(LINKS, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == 422
    assert reason in body["detail"], body


async def test_listing_needs_links_read(client: AsyncTestClient, db: asyncpg.Connection) -> None:
    stats_only = await add_key(db, "lp_stats-only-key-for-list-test", "stats:read")
    denied = await client.get(LINKS, headers=stats_only)
    assert denied.status_code == 403
    assert denied.json() == {"status": 403, "detail": "this API key lacks the 'links:read' scope"}
    reader = await add_key(db, "lp_reader-key-for-the-list-test", "links:read")
    assert (await client.get(LINKS, headers=reader)).status_code == 200
    del client.headers["Authorization"]
    assert (await client.get(LINKS)).status_code == 401
