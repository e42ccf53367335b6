"""`linkpulse reclassify` as a user runs it against the stack `linkpulse up` started: clicks, stats, bot_rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests.e2e import test_stack as stack_module
from tests.e2e.test_stack import consumers_idle, create_link, linkpulse
from tests.polling import eventually

from linkpulse.bots import BOT_RULES_VERSION, BotRules
from linkpulse.db.reclassify import reclassify

pytestmark = pytest.mark.slow
# This module's own stack, started by test_stack's fixtures as that module starts its own.
stack_env, stack_dir, stack = stack_module.stack_env, stack_module.stack_dir, stack_module.stack

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
AGENTS = [FIREFOX, FIREFOX + " Zebrafish/2.0", "http.rb/5.1.1 (Mastodon/4.2.1; +https://mastodon.social/)"]


async def stats(stack: dict[str, Any], code: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack["admin_url"]) as admin:
        resp = await admin.get(
            f"/api/v1/links/{code}/stats",
            params={"interval": "day"},
            headers={"Authorization": f"Bearer {stack['admin_key']}"},
        )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_reclassify_finds_the_stack_and_moves_what_older_rules_got_wrong(
    stack: dict[str, Any], stack_dir: Path, stack_env: dict[str, str]
) -> None:
    code = (await create_link(stack, url="https://example.com/fedi", code="fedi"))["code"]
    async with httpx.AsyncClient(base_url=stack["redirect_url"]) as client:
        for ua in AGENTS:
            assert (await client.get(f"/{code}", headers={"user-agent": ua})).status_code == 302
    conn = await asyncpg.connect(stack["database_url"])
    try:

        async def stored() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM click_events WHERE code = $1", code))

        await eventually(stored, "3 clicks stored", accept=lambda n: n == 3, timeout=10)
        await eventually(lambda: consumers_idle(stack["nats_url"]), "ingest consumers idle", timeout=10)
        ingested = await stats(stack, code)
        assert (ingested["total"], ingested["bots"]) == (2, 1)  # the Mastodon server's fetch is a bot
        assert ingested["bot_rules"]["version"] == BOT_RULES_VERSION
        # As an older release whose rules took Zebrafish for a bot would have left them.
        assert (await reclassify(conn, BotRules(extra=["Zebrafish/"]))).to_bots == 1
        assert (await stats(stack, code))["bots"] == 2
    finally:
        await conn.close()

    # No --database-url: the command finds the stack's database in its state folder.
    result = linkpulse("reclassify", "--dir", str(stack_dir), "--json", env=stack_env)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["rules"], outcome["to_humans"], outcome["to_bots"]) == (BOT_RULES_VERSION, 1, 0)
    assert result.stderr == ""  # no progress bar without a terminal
    fixed = await stats(stack, code)
    assert (fixed["total"], fixed["bots"]) == (2, 1)
    assert fixed["bot_rules"]["version"] == BOT_RULES_VERSION
    assert fixed["bot_rules"]["reclassified_at"] is not None

    again = linkpulse("reclassify", "--dir", str(stack_dir), "--json", env=stack_env)
    assert (json.loads(again.stdout)["to_humans"], json.loads(again.stdout)["to_bots"]) == (0, 0)
