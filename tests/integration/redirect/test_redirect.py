"""The redirect contract: statuses, headers, query forwarding, and one click event per GET."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
import structlog
from litestar.testing import AsyncTestClient
from tests.conftest import MakeLink

from linkpulse.events import decode_click_batch
from linkpulse.ids import shard_for
from linkpulse.messaging.streams import CLICKS_STREAM
from linkpulse.redirect.app import create_app
from linkpulse.redirect.clicks import ANONYMIZE_SETTING
from linkpulse.redirect.settings import RedirectSettings


async def published_clicks(nats_url: str) -> list[Any]:
    """Every click event currently stored in CLICKS, with the subject it was stored under."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    info = await js.stream_info(CLICKS_STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else []:
        msg = await js.get_msg(CLICKS_STREAM, seq)
        out.extend((msg.subject, e) for e in decode_click_batch(msg.data).events)
    await nc.close()
    return out


@pytest.mark.parametrize("redirect_type", [301, 302, 307, 308])
async def test_each_redirect_type_is_answered_with_location_and_cache_control(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, redirect_type: int
) -> None:
    await make_link(f"t{redirect_type}", "https://example.com/a", redirect_type=redirect_type)
    resp = await redirect_client.get(f"/t{redirect_type}", follow_redirects=False)
    assert resp.status_code == redirect_type
    assert resp.headers["location"] == "https://example.com/a"
    assert resp.headers["cache-control"] == "private, max-age=90"


async def test_unknown_disabled_expired_and_deleted_codes(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    future = datetime.now(UTC) + timedelta(days=1)
    await make_link("off", active=False)
    await make_link("expired", expires_at=past)
    await make_link("later", expires_at=future)
    await make_link("gone", deleted_at=past)
    assert (await redirect_client.get("/nope", follow_redirects=False)).status_code == 404
    assert (await redirect_client.get("/bad%0D%0Acode", follow_redirects=False)).status_code == 404
    assert (await redirect_client.get("/off", follow_redirects=False)).status_code == 410
    assert (await redirect_client.get("/expired", follow_redirects=False)).status_code == 410
    assert (await redirect_client.get("/gone", follow_redirects=False)).status_code == 410
    assert (await redirect_client.get("/later", follow_redirects=False)).status_code == 302
    body = (await redirect_client.get("/nope", follow_redirects=False)).json()
    assert body == {"status": 404, "detail": "no such link"}


async def test_query_is_forwarded_only_when_the_link_asks(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink
) -> None:
    await make_link("fwd", "https://example.com/p?a=1", forward_query=True)
    await make_link("nofwd", "https://example.com/p")
    resp = await redirect_client.get("/fwd?utm_source=mail&x=%20y", follow_redirects=False)
    assert resp.headers["location"] == "https://example.com/p?a=1&utm_source=mail&x=%20y"
    resp = await redirect_client.get("/nofwd?utm_source=mail", follow_redirects=False)
    assert resp.headers["location"] == "https://example.com/p"


async def test_get_publishes_one_click_on_its_shard_and_head_publishes_none(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, nats_url: str, redirect_env: dict[str, str]
) -> None:
    link_id = await make_link("clk")
    headers = {
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
        "referer": "https://reader:pw@news.example.org/item?session=abc&q=private#comments",
        "accept-language": "de-DE,de;q=0.9",
        "cf-ipcountry": "de",
        "x-forwarded-for": "203.0.113.77",
    }
    assert (await redirect_client.head("/clk", follow_redirects=False)).status_code == 302
    for _ in range(3):
        assert (await redirect_client.get("/clk", headers=headers, follow_redirects=False)).status_code == 302
    # Closing the client runs the lifespan shutdown, which drains the publisher into NATS.
    await redirect_client.__aexit__(None, None, None)
    clicks = await published_clicks(nats_url)
    assert len(clicks) == 3
    assert len({e.id for _, e in clicks}) == 3
    shard = shard_for("clk", int(redirect_env["LINKPULSE_CLICKS_SHARDS"]))
    for subject, event in clicks:
        assert subject == f"clicks.{shard}"
        assert event.link_id == link_id and event.code == "clk"
        # The test client's peer is not a trusted proxy: its X-Forwarded-For and country are ignored.
        assert event.ip is None
        assert event.country == ""
        assert event.lang == "de-DE"
        # Origin and path only: the query, fragment and userinfo never leave the redirect.
        assert event.referrer == "https://news.example.org/item"


async def test_click_limit_answers_410_once_reached(redirect_client: AsyncTestClient[Any], make_link: MakeLink) -> None:
    # No ingest runs here: the limit is enforced from this process's own count of answered clicks.
    await make_link("limited", max_clicks=5)
    statuses = [(await redirect_client.get("/limited", follow_redirects=False)).status_code for _ in range(7)]
    assert statuses == [302] * 5 + [410, 410]
    # HEAD never counts, and is refused once the limit is reached like GET.
    assert (await redirect_client.head("/limited", follow_redirects=False)).status_code == 410


async def test_click_limit_counts_human_clicks_stored_by_other_processes(
    redirect_client: AsyncTestClient[Any], make_link: MakeLink, db: Any
) -> None:
    link_id = await make_link("shared", max_clicks=10)
    # Other redirect pods' clicks reach this one through the rollups ingest keeps; bots' do not count.
    await db.execute("INSERT INTO link_totals (link_id, clicks, bot_clicks) VALUES ($1, 8, 50)", link_id)
    statuses = [(await redirect_client.get("/shared", follow_redirects=False)).status_code for _ in range(3)]
    assert statuses == [302, 302, 410]


@pytest.mark.parametrize(("anonymize", "warnings"), [("false", 1), ("true", 0)])
async def test_start_warns_once_naming_the_setting_when_ip_anonymisation_is_off(
    redirect_env: dict[str, str], anonymize: str, warnings: int
) -> None:
    settings = RedirectSettings.from_env({**redirect_env, ANONYMIZE_SETTING: anonymize})
    with structlog.testing.capture_logs() as logs:
        async with AsyncTestClient(app=create_app(settings), base_url="http://127.0.0.1") as client:
            assert (await client.get("/healthz")).status_code == 200
    said = [entry for entry in logs if entry["event"] == "privacy.ip_not_anonymized"]
    assert [(entry["log_level"], entry["setting"]) for entry in said] == [("warning", ANONYMIZE_SETTING)] * warnings
