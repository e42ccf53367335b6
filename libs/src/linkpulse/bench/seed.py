"""What a bench run loads before it measures: links (through the admin API) and pre-published click events."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import asyncpg
import httpx

from linkpulse.bench.wrk import BenchError
from linkpulse.events import ClickBatch, ClickEvent, encode
from linkpulse.ids import new_code, new_event_id, shard_for
from linkpulse.messaging.connect import jetstream_at
from linkpulse.messaging.publish import publish_with_id
from linkpulse.messaging.streams import click_subject

__all__ = ["NETWORKS", "bench_networks", "create_links", "publish_clicks", "write_codes"]

BULK_ROWS = 10_000
"""Rows per bulk upload: the admin API's limit."""

ENVELOPE = 256
"""Clicks per NATS message, as the redirect packs them (PublisherSettings.batch_max)."""

_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
_COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN", "JP", "")
_REFERRERS = ("", "https://news.example/a", "https://mail.example/", "https://social.example/post/1")
NETWORKS = 50_000
"""Anonymised networks the clicks come from: over 2,000,000 clicks each is seen about 40 times, more of them
than ingest's per-address caches hold (65,536), as the many visitors of a busy day would be."""


@cache
def bench_networks() -> list[tuple[str, str]]:
    """(anonymised address, header country) of the networks bench clicks come from, a fixed pool (1 in 5 a /48).

    Fixed so that a GeoIP database for the bench can hold exactly them (tests/bench/geoip_db.py); the country
    of a network is constant, "" (no trusted header) for 1 in 8, so the database agrees with the header.
    """
    rng = random.Random(24)
    pool: dict[str, str] = {}  # each network once, with one country
    while len(pool) < NETWORKS:
        i = len(pool)
        if i % 5 == 4:
            ip = f"2a0{rng.randrange(10)}:{rng.randrange(65536):x}:{rng.randrange(65536):x}::"
        else:
            ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        pool.setdefault(ip, _COUNTRIES[i % len(_COUNTRIES)])
    return list(pool.items())


async def create_links(admin_url: str, admin_key: str, database_url: str, count: int) -> list[tuple[str, int]]:
    """Create `count` links through `POST /api/v1/links/bulk`; returns (code, link id) of each, in random order.

    The ids (which click events carry) are read back from Postgres: the API answers with codes only.
    """
    rows = [{"url": f"https://bench.example/landing/{i}", "code": f"b{new_code(9)}"} for i in range(count)]
    codes: list[str] = []
    async with httpx.AsyncClient(base_url=admin_url, headers={"Authorization": f"Bearer {admin_key}"}) as client:
        for start in range(0, count, BULK_ROWS):
            resp = await client.post("/api/v1/links/bulk", json=rows[start : start + BULK_ROWS], timeout=120)
            if resp.status_code != 201:
                raise BenchError(f"creating links failed: HTTP {resp.status_code} {resp.text[:500]}")
            codes.extend(item["code"] for item in resp.json()["items"])
    conn = await asyncpg.connect(database_url)
    try:
        found = await conn.fetch("SELECT code, id FROM links WHERE code = ANY($1::text[])", codes)
    finally:
        await conn.close()
    created = [(row["code"], row["id"]) for row in found]
    if len(created) != count:
        raise BenchError(f"created {count} links but {len(created)} are in the database")
    random.shuffle(created)
    return created


def write_codes(path: Path, codes: Sequence[str]) -> Path:
    """One code a line: load.lua reads them, the first as the most popular."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{code}\n" for code in codes))
    return path


def _event(code: str, link_id: int, ts: int, rng: random.Random) -> ClickEvent:
    ip, country = rng.choice(bench_networks())
    return ClickEvent(
        id=new_event_id(),
        code=code,
        link_id=link_id,
        ts=ts,
        ip=ip,
        ua=rng.choice(_UAS),
        referrer=rng.choice(_REFERRERS),
        lang="en-US",
        country=country,
    )


async def publish_clicks(
    nats_url: str,
    links: Sequence[tuple[str, int]],
    count: int,
    shards: int,
    *,
    spread_ms: int = 0,
    concurrency: int = 64,
) -> int:
    """Publish `count` click events for `links` (round robin) in envelopes, as the redirect would; returns count.

    `spread_ms` spreads the events' `ts` back over that many milliseconds before now (a month of history
    for the stats mode), so rollups get many buckets.
    """
    rng = random.Random(7)
    now = int(time.time() * 1000)
    pending: set[asyncio.Task[object]] = set()
    async with jetstream_at(nats_url) as js:
        published = 0
        while published < count:
            take = min(count - published, ENVELOPE * shards * 4)
            by_shard: dict[int, list[ClickEvent]] = defaultdict(list)
            for i in range(published, published + take):
                code, link_id = links[i % len(links)]
                ts = now - (rng.randrange(spread_ms) if spread_ms else 0)
                by_shard[shard_for(code, shards)].append(_event(code, link_id, ts, rng))
            for shard, events in by_shard.items():
                for start in range(0, len(events), ENVELOPE):
                    envelope = ClickBatch(id=new_event_id(), events=events[start : start + ENVELOPE])
                    if len(pending) >= concurrency:
                        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                        pending -= done
                        for task in done:
                            task.result()  # a failed publish stops the bench: its count would be wrong
                    pending.add(
                        asyncio.create_task(
                            publish_with_id(js, click_subject(shard), encode(envelope), envelope.id, timeout=30)
                        )
                    )
            published += take
        for task in asyncio.as_completed(pending):
            await task
        return published
