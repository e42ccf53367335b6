"""Geography black box: `linkpulse up` with GeoIP databases in its environment, clicks through the redirect from
chosen addresses behind a trusted proxy, and exact countries, regions, cities and networks in the admin API."""

from __future__ import annotations

import os
from typing import Any

import asyncpg
import httpx
import pytest
from tests.e2e import test_stack as stack_module
from tests.e2e.test_stack import SHARDS, consumers_idle, create_link
from tests.geoip_files import write_asn, write_city
from tests.polling import eventually

pytestmark = pytest.mark.slow
stack_dir, stack = stack_module.stack_dir, stack_module.stack

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"  # a person: bots are in no top list
# (X-Forwarded-For as the trusted proxy sends it: the visitor's full address, the proxy's country header)
VISITS = [
    ("203.0.113.77", None),  # Munich: the redirect keeps 203.0.113.0, ingest places that
    ("203.0.113.200", None),
    ("203.0.113.9", "FR"),  # the edge's header wins: France, without the database's German city
    ("2001:db8:1:0:aaaa:bbbb:cccc:dddd", None),  # Tokyo: the redirect keeps the /48
    ("192.0.2.45", None),  # Springfield, Illinois
    ("8.8.4.4", None),  # in no database: unknown
]


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """test_stack's environment plus the GeoIP databases: `linkpulse up` passes them to ingest."""
    folder = tmp_path_factory.mktemp("geoip")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKPULSE_")}
    env.update({"LINKPULSE_PROXY_TRUSTED": "127.0.0.1/32", "LINKPULSE_CLICKS_SHARDS": str(SHARDS)})
    env["LINKPULSE_GEOIP_DATABASE"] = str(write_city(folder / "city.mmdb"))
    env["LINKPULSE_GEOIP_ASN_DATABASE"] = str(write_asn(folder / "asn.mmdb"))
    return env


def ranked(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"value": v, "clicks": c} for v, c in pairs]


async def test_clicks_from_chosen_addresses_land_in_their_places(stack: dict[str, Any]) -> None:
    code = (await create_link(stack, url="https://example.com/geo", code="geo"))["code"]
    async with httpx.AsyncClient(base_url=stack["redirect_url"]) as client:
        for address, country in VISITS:
            headers = {
                "user-agent": FIREFOX,
                "x-forwarded-for": address,
                **({"cf-ipcountry": country} if country else {}),
            }
            assert (await client.get(f"/{code}", headers=headers)).status_code == 302
    conn = await asyncpg.connect(stack["database_url"])
    try:

        async def stored() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM click_events WHERE code = $1", code))

        await eventually(stored, "6 clicks stored", accept=lambda n: n == len(VISITS), timeout=15)
        await eventually(lambda: consumers_idle(stack["nats_url"]), "ingest consumers idle", timeout=10)
        # Only anonymised addresses were stored (and looked up).
        ips = {str(r["ip"]) for r in await conn.fetch("SELECT ip FROM click_events WHERE code = $1", code)}
        assert ips == {"203.0.113.0", "2001:db8:1::", "192.0.2.0", "8.8.4.0"}
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=stack["admin_url"]) as admin:
        resp = await admin.get(f"/api/v1/links/{code}/stats", params={"interval": "day"},
                               headers={"Authorization": f"Bearer {stack['admin_key']}"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    top = resp.json()["top"]
    assert top["countries"] == ranked(("DE", 2), ("", 1), ("FR", 1), ("JP", 1), ("US", 1))
    assert top["regions"] == ranked(("DE-BY", 2), ("JP-13", 1), ("US-IL", 1))
    assert top["cities"] == ranked(("Munich, DE-BY", 2), ("Springfield, US-IL", 1), ("Tokyo, JP-13", 1))
    assert top["asns"] == ranked(("AS3320 Deutsche Telekom AG", 3), ("AS2516 KDDI CORPORATION", 1))
