"""The whole system as a user runs it: `linkpulse up --detach`, admin → redirect → NATS → ingest → Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from tests.polling import eventually

from linkpulse.localstack.process import pid_alive
from linkpulse.messaging.streams import CLICKS_STREAM, ingest_durable

pytestmark = pytest.mark.slow

SHARDS = 4
# A browser's user agent: httpx's own would be flagged as a bot and counted apart.
BROWSER = {
    "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
}


def linkpulse(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the `linkpulse` command line as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "linkpulse.cli.main", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """The user's environment without any LINKPULSE_* URL, so `up` starts every server from its wheel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}
    env.update({"LINKPULSE_PROXY_TRUSTED": "127.0.0.1/32", "LINKPULSE_CLICKS_SHARDS": str(SHARDS)})
    return env


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state folder of this module's stack."""
    return tmp_path_factory.mktemp("stack") / "state"


@pytest.fixture(scope="module")
def stack(stack_dir: Path, stack_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A detached stack started by `linkpulse up`; its stack.json as a dict. Stopped by `linkpulse down`."""
    result = linkpulse("up", "--detach", "--dir", str(stack_dir), "--redirect-port", "0", "--admin-port", "0",
                       env=stack_env)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    info = json.loads((stack_dir / "stack.json").read_text())
    yield info
    linkpulse("down", "--dir", str(stack_dir), env=stack_env)


async def consumers_idle(nats_url: str) -> bool:
    """True when every ingest consumer has nothing pending and nothing awaiting an ack."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for shard in range(SHARDS):
            info = await js.consumer_info(CLICKS_STREAM, ingest_durable(shard))
            if info.num_pending or info.num_ack_pending:
                return False
        return True
    finally:
        await nc.close()


async def create_link(stack: dict[str, Any], **body: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack["admin_url"]) as admin:
        resp = await admin.post("/api/v1/links", json=body, headers={"Authorization": f"Bearer {stack['admin_key']}"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_stack_json_names_every_url_and_a_live_pid_per_process(stack: dict[str, Any], stack_dir: Path) -> None:
    assert set(stack) == {
        "redirect_url", "admin_url", "admin_key", "nats_url", "redis_url", "database_url", "ingest_url", "pids"
    }  # fmt: skip
    assert set(stack["pids"]) == {"redirect", "ingest", "admin", "nats", "redis", "postgres"}
    assert all(pid_alive(pid) for pid in stack["pids"].values())
    for name in ("redirect", "ingest", "admin", "nats", "redis", "postgres"):
        assert (stack_dir / "logs" / f"{name}.log").exists()
    # The admin key is in the state folder for the user, but only as a hash in the database.
    assert stack["admin_key"] not in (stack_dir / "logs" / "admin.log").read_text()
    # Ingest's probe port answers as the chart's probes ask it.
    for probe in ("/healthz", "/readyz"):
        assert httpx.get(stack["ingest_url"] + probe).status_code == 200


async def test_thousand_concurrent_gets_are_stored_exactly_once(stack: dict[str, Any]) -> None:
    link = await create_link(stack, url="https://example.com/launch")
    code = link["code"]
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=stack["redirect_url"], limits=limits, headers=BROWSER) as client:
        heads = await asyncio.gather(*(client.head(f"/{code}") for _ in range(50)))
        assert {r.status_code for r in heads} == {302}
        gets = await asyncio.gather(*(client.get(f"/{code}?n={i}") for i in range(1000)))
        assert {r.status_code for r in gets} == {302}
        assert {r.headers["location"] for r in gets} == {"https://example.com/launch"}

    conn = await asyncpg.connect(stack["database_url"])
    try:

        async def stored() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM click_events WHERE code = $1", code))

        # Within 10 s every click is stored: no fewer...
        assert await eventually(stored, "1000 clicks stored", accept=lambda n: n >= 1000, timeout=10) == 1000
        # ...and, once every consumer is drained and acked, no more (HEADs recorded nothing).
        assert await eventually(lambda: consumers_idle(stack["nats_url"]), "ingest consumers idle", timeout=10)
        assert await stored() == 1000
        assert await conn.fetchval("SELECT count(DISTINCT id) FROM click_events WHERE code = $1", code) == 1000
    finally:
        await conn.close()

    async with httpx.AsyncClient(base_url=stack["admin_url"]) as admin:
        resp = await admin.get(f"/api/v1/links/{code}", headers={"Authorization": f"Bearer {stack['admin_key']}"})
    assert (resp.json()["clicks"], resp.json()["bot_clicks"]) == (1000, 0)
    # Ingest's own count, on its metrics port (other tests of this stack may have added clicks before).
    async with httpx.AsyncClient(base_url=stack["ingest_url"]) as ingest:
        metrics = (await ingest.get("/metrics")).text
    inserted = 'linkpulse_ingest_events_total{result="inserted"} '
    [value] = [line.removeprefix(inserted) for line in metrics.splitlines() if line.startswith(inserted)]
    assert float(value) >= 1000


async def test_edge_headers_from_a_trusted_proxy_reach_the_stored_click(stack: dict[str, Any]) -> None:
    link = await create_link(stack, url="https://example.com/geo")
    headers = {
        "x-forwarded-for": "198.51.100.23",
        "cf-ipcountry": "NL",
        "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        "referer": "https://news.example.org/story",
    }
    async with httpx.AsyncClient(base_url=stack["redirect_url"]) as client:
        assert (await client.get(f"/{link['code']}", headers=headers)).status_code == 302
    conn = await asyncpg.connect(stack["database_url"])
    try:

        async def row() -> asyncpg.Record | None:
            return await conn.fetchrow("SELECT * FROM click_events WHERE code = $1", link["code"])

        stored = await eventually(row, "the click stored", accept=lambda r: r is not None, timeout=10)
        assert stored is not None
        assert str(stored["ip"]) == "198.51.100.0"  # anonymised: last octet zeroed
        assert stored["country"] == "NL"
        assert stored["referrer_host"] == "news.example.org"
        assert stored["device"] == "mobile" and stored["os"] == "iOS"
        assert stored["is_bot"] is False
    finally:
        await conn.close()


async def test_down_stops_everything_and_data_survives_up_again(
    stack: dict[str, Any], stack_dir: Path, stack_env: dict[str, str]
) -> None:
    link = await create_link(stack, url="https://example.com/kept", code="kept")
    conn = await asyncpg.connect(stack["database_url"])
    rows_before = await conn.fetchval("SELECT count(*) FROM click_events")
    await conn.close()
    result = linkpulse("down", "--dir", str(stack_dir), env=stack_env)
    assert result.returncode == 0, result.stderr
    assert not any(pid_alive(pid) for pid in stack["pids"].values())
    assert not (stack_dir / "stack.json").exists()

    result = linkpulse("up", "--detach", "--dir", str(stack_dir), "--redirect-port", "0", "--admin-port", "0",
                       env=stack_env)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    again = json.loads((stack_dir / "stack.json").read_text())
    # Same admin key (kept in the state folder), same link, still redirecting.
    assert again["admin_key"] == stack["admin_key"]
    async with httpx.AsyncClient(base_url=again["redirect_url"]) as client:
        resp = await client.get(f"/{link['code']}")
    assert resp.status_code == 302 and resp.headers["location"] == "https://example.com/kept"
    conn = await asyncpg.connect(again["database_url"])
    try:
        # The earlier clicks survived the restart (and the new GET adds one, eventually).
        assert await conn.fetchval("SELECT count(*) FROM click_events") >= rows_before
    finally:
        await conn.close()
    stack.update(again)  # the module fixture's `down` stops this second run
