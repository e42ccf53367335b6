"""Issue 21's acceptance, black box: `linkpulse up` with GeoIP databases, clicks from chosen addresses, user agents and
languages through a trusted proxy, and exact places, humans, bots, unique visitors, a timezone's days and the events
list read back through the admin API; then a bot rule added by the operator and `linkpulse reclassify` move exactly
the affected clicks from humans to bots in every series."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from tests.e2e import test_stack as stack_module
from tests.e2e.test_stack import SHARDS, consumers_idle, create_link, linkpulse
from tests.geoip_files import write_asn, write_city
from tests.polling import eventually

pytestmark = pytest.mark.slow
stack_dir, stack = stack_module.stack_dir, stack_module.stack

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
# A person's browser to today's rules; the operator's new rule will say it is their uptime checker.
CHECKER = FIREFOX + " Zebrafish/2.0"
MASTODON = "http.rb/5.1.1 (Mastodon/4.2.1; +https://mastodon.social/)"
# (address the trusted proxy saw, user agent, Accept-Language)
CLICKS = [
    ("203.0.113.77", FIREFOX, "de-DE,de;q=0.9,en;q=0.5"),  # Munich, visitor A
    ("203.0.113.77", FIREFOX, "de-DE,de;q=0.9"),  # visitor A again: one more click, no more visitors
    ("203.0.113.200", PHONE, "de-AT"),  # Munich, visitor B, on a phone
    ("2001:db8:1:0:aaaa:bbbb:cccc:dddd", FIREFOX, "ja"),  # Tokyo, visitor C
    ("192.0.2.45", CHECKER, "en-US"),  # Springfield, visitor D: human until the new rule
    ("192.0.2.45", CHECKER, "en-US"),
    ("8.8.4.4", MASTODON, ""),  # a fediverse server's preview fetch: a bot, nowhere
]
TIMEZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati")


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """test_stack's environment plus the GeoIP databases: `linkpulse up` passes them to ingest."""
    folder = tmp_path_factory.mktemp("geoip")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}
    env.update({"LINKPULSE_PROXY_TRUSTED": "127.0.0.1/32", "LINKPULSE_CLICKS_SHARDS": str(SHARDS)})
    env["LINKPULSE_GEOIP_DATABASE"] = str(write_city(folder / "city.mmdb"))
    env["LINKPULSE_GEOIP_ASN_DATABASE"] = str(write_asn(folder / "asn.mmdb"))
    return env


async def get(stack: dict[str, Any], path: str, **params: str) -> Any:
    async with httpx.AsyncClient(base_url=stack["admin_url"]) as admin:
        resp = await admin.get(path, params=params, headers={"Authorization": f"Bearer {stack['admin_key']}"})
    assert resp.status_code == 200, resp.text
    return resp.json() if resp.headers["content-type"].startswith("application/json") else resp.text


def ranked(top: list[dict[str, Any]]) -> dict[str, int]:
    return {r["value"]: r["clicks"] for r in top}


def local_days(stamps: list[datetime], tz: str) -> Counter[str]:
    """Clicks per local calendar day of `tz`, keyed as the series' point ts (local midnight with its offset)."""
    zone = ZoneInfo(tz)
    days: Counter[str] = Counter()
    for ts in stamps:
        local = ts.astimezone(zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(zone)
        days[midnight.isoformat()] += 1
    return days


def series_days(stats: dict[str, Any], field: str = "clicks") -> Counter[str]:
    return Counter({datetime.fromisoformat(p["ts"]).isoformat(): p[field] for p in stats["series"] if p[field]})


async def all_events(stack: dict[str, Any], code: str, **params: str) -> list[dict[str, Any]]:
    """Every page of the events list, three at a time."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await get(
            stack, f"/api/v1/links/{code}/events", limit="3", **params, **({"cursor": cursor} if cursor else {})
        )
        events += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            return events


async def test_chosen_clicks_come_back_exact_and_a_new_bot_rule_moves_exactly_its_clicks(
    stack: dict[str, Any], stack_dir: Any, stack_env: dict[str, str]
) -> None:
    code = (await create_link(stack, url="https://example.com/launch", code="launch"))["code"]
    async with httpx.AsyncClient(base_url=stack["redirect_url"]) as client:
        for address, agent, language in CLICKS:
            headers = {"user-agent": agent, "x-forwarded-for": address}
            if language:
                headers["accept-language"] = language
            assert (await client.get(f"/{code}", headers=headers)).status_code == 302
    conn = await asyncpg.connect(stack["database_url"])
    try:

        async def stored() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM click_events WHERE code = $1", code))

        await eventually(stored, "every click stored", accept=lambda n: n == len(CLICKS), timeout=15)
        await eventually(lambda: consumers_idle(stack["nats_url"]), "ingest consumers idle", timeout=10)
    finally:
        await conn.close()

    # The events list: newest first, every click once across pages, with what ingest made of it.
    events = await all_events(stack, code)
    assert len(events) == len(CLICKS) == len({e["id"] for e in events})
    stamps = [datetime.fromisoformat(e["ts"]) for e in events]
    assert stamps == sorted(stamps, reverse=True)
    assert Counter((e["city"], e["bot"]) for e in events) == Counter(
        {("Munich, DE-BY", False): 3, ("Tokyo, JP-13", False): 1, ("Springfield, US-IL", False): 2, ("", True): 1}
    )
    assert Counter(e["lang"].lower() for e in events) == Counter({"de-de": 2, "de-at": 1, "ja": 1, "en-us": 2, "": 1})
    assert {e["device"] for e in events if e["ua"] == PHONE} == {"mobile"}

    stats = await get(stack, f"/api/v1/links/{code}/stats", interval="day")
    assert (stats["total"], stats["bots"], stats["visitors"], stats["bot_visitors"]) == (6, 1, 4, 1)
    assert ranked(stats["top"]["countries"]) == {"DE": 3, "US": 2, "JP": 1}
    assert ranked(stats["top"]["cities"]) == {"Munich, DE-BY": 3, "Springfield, US-IL": 2, "Tokyo, JP-13": 1}
    assert ranked(stats["top"]["languages"]) == {"de-de": 2, "en-us": 2, "de-at": 1, "ja": 1}
    assert stats["as_of"] is not None and datetime.fromisoformat(stats["as_of"]) == max(stamps)
    # Ingest reports its progress about once a second, so the first report may follow the last stored click.

    async def lag() -> Any:
        return (await get(stack, f"/api/v1/links/{code}/stats", interval="day"))["ingest_lag"]

    reported = await eventually(lag, "ingest's progress reported", accept=lambda v: v is not None, timeout=10)
    assert (reported["pending"], reported["stale"]) == (0, False)

    # One filter narrows the series, the visitors and the other top lists alike.
    germany = await get(stack, f"/api/v1/links/{code}/stats", interval="day", country="de")
    assert germany["filters"] == {"country": "DE"}
    assert (germany["total"], germany["visitors"]) == (3, 2)
    assert ranked(germany["top"]["languages"]) == {"de-de": 2, "de-at": 1}
    assert ranked(germany["top"]["devices"]) == {"desktop": 2, "mobile": 1}
    phones = await all_events(stack, code, device="mobile")
    assert [e["ua"] for e in phones] == [PHONE]

    # A timezone's calendar days: each click in the local day its time falls in, points at local midnight.
    humans = [ts for ts, e in zip(stamps, events, strict=True) if not e["bot"]]
    for tz in TIMEZONES:
        days = await get(stack, f"/api/v1/links/{code}/stats", interval="day", tz=tz)
        assert days["tz"] == tz
        assert series_days(days) == local_days(humans, tz), tz
        assert all(datetime.fromisoformat(p["ts"]).utcoffset() == datetime.fromisoformat(p["ts"]).astimezone(
            ZoneInfo(tz)).utcoffset() for p in days["series"]), tz  # fmt: skip

    # The operator's new rule, then reclassify with the same environment ingest would get.
    result = linkpulse("reclassify", "--dir", str(stack_dir), "--json",
                       env={**stack_env, "LINKPULSE_BOTS_PATTERNS": "Zebrafish/"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["to_bots"], outcome["to_humans"]) == (2, 0)

    checker = {ts for ts, e in zip(stamps, events, strict=True) if e["ua"] == CHECKER}
    people = [ts for ts in humans if ts not in checker]
    around = {
        "from": (min(stamps) - timedelta(minutes=5)).isoformat(),
        "to": (max(stamps) + timedelta(minutes=5)).isoformat(),
    }
    for interval in ("day", "hour", "minute"):
        moved = await get(stack, f"/api/v1/links/{code}/stats", interval=interval, **around)
        assert (moved["total"], moved["bots"]) == (4, 3), interval
        assert (moved["visitors"], moved["bot_visitors"]) == (3, 2), interval
        assert sum(p["bots"] for p in moved["series"]) == 3, interval
    for tz in TIMEZONES:
        days = await get(stack, f"/api/v1/links/{code}/stats", interval="day", tz=tz)
        assert series_days(days) == local_days(people, tz), tz
        assert sum(p["bots"] for p in days["series"]) == 3, tz
    after = await get(stack, f"/api/v1/links/{code}/stats", interval="day")
    assert ranked(after["top"]["countries"]) == {"DE": 3, "JP": 1}
    assert ranked(after["top"]["languages"]) == {"de-de": 2, "de-at": 1, "ja": 1}
    assert after["bot_rules"]["version"].startswith(outcome["rules"].split("+extra-")[0])
    assert "+extra-" in after["bot_rules"]["version"]
    assert sorted(e["bot"] for e in await all_events(stack, code)) == [False] * 4 + [True] * 3
