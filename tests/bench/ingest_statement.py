"""Micro-benchmark: where one ingest batch's Postgres time goes, part by part, against a raw COPY.

Not a test (nothing asserts a time): run it by hand before and after a change to `ingest/store.py`.

    .venv/bin/python tests/bench/ingest_statement.py [--batches 14] [--links 20000] [--geoip CITY.mmdb]

It starts its own PostgreSQL from the wheel in a temporary folder, migrates, and stores batches of 32,000
of the bench's clicks (round robin over `--links` links, as `linkpulse bench ingest`) through one
connection, each batch by one variant in turn: the whole store statement, the insert alone, the insert
with the totals and time series but no dimension rollup, and the whole statement but the hour dimension
rollup. Every batch's COPY into the stage is timed, and the batch's rows are then COPYed raw into a scratch
copy of click_events (the bench's ceiling). The first two batches warm up and are not counted. Figures of
2026-12-07 and 2026-12-08 in docs/performance.md.

With `--geoip` (a City database, e.g. from tests/bench/geoip_db.py) a fifth variant stores the whole statement
with the rows placed by that database, and the time ingest's Python takes to build the rows (click_row) is
printed for both ways. Figures in docs/analytics.md, "Geography".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import asyncpg

from linkpulse.bench.copy_ceiling import create_scratch
from linkpulse.bench.seed import _event
from linkpulse.db.migrate import migrate
from linkpulse.ingest import store
from linkpulse.ingest.batch import NO_GEOIP, click_row
from linkpulse.ingest.geoip import GeoLookup
from linkpulse.ingest.settings import GeoipSettings
from linkpulse.localstack.servers import PostgresServer

BATCH = 32_000
WHOLE = store._STORE_EVENTS
VARIANTS = {
    "whole statement": WHOLE,
    "insert-or-skip alone": WHOLE[: WHOLE.index("), totals AS")] + ")\nSELECT count(*) FROM new",
    "insert + totals + series": WHOLE[: WHOLE.index(", dimensions_day AS")] + "\nSELECT count(*) FROM new",
    "whole but the hour dimensions": WHOLE[: WHOLE.index(", dimensions_hour AS")] + "\nSELECT count(*) FROM new",
}


GEOIP = "whole statement, GeoIP"


async def measure(url: str, batches: int, links: int, geoip: GeoLookup | None) -> dict[str, float]:
    await migrate(url)
    conn = await asyncpg.connect(url)
    await store.prepare_connection(conn)
    await conn.execute("SELECT linkpulse_ensure_click_partitions(3)")
    raw = await create_scratch(conn)
    rng, now, names = random.Random(7), int(time.time() * 1000), [*VARIANTS, *([GEOIP] if geoip else [])]
    seconds: dict[str, float] = defaultdict(float)
    rows: dict[str, int] = defaultdict(int)
    for b in range(batches):
        name = names[b % len(names)]
        located = geoip if geoip is not None and name == GEOIP else NO_GEOIP
        events = [_event(f"c{n % links}", n % links + 1, now, rng) for n in range(b * BATCH, (b + 1) * BATCH)]
        tr = time.perf_counter()
        batch = [click_row(event, located) for event in events]
        rows_took = time.perf_counter() - tr
        async with conn.transaction():
            t0 = time.perf_counter()
            await conn.copy_records_to_table("ingest_stage", records=batch)
            t1 = time.perf_counter()
            assert await conn.fetchval(VARIANTS.get(name, WHOLE)) == BATCH
            t2 = time.perf_counter()
        stored = await conn.fetch("SELECT * FROM click_events ORDER BY id DESC LIMIT $1", BATCH)
        t3 = time.perf_counter()
        await conn.copy_records_to_table(raw, records=stored)
        t4 = time.perf_counter()
        if b >= 2:
            built = "rows built, GeoIP (Python)" if located is not NO_GEOIP else "rows built (Python)"
            for part, took in (("COPY into the stage", t1 - t0), (name, t2 - t1), ("raw COPY", t4 - t3),
                               (built, rows_took)):  # fmt: skip
                seconds[part] += took
                rows[part] += BATCH
    await conn.close()
    return {part: rows[part] / seconds[part] for part in seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=14)
    parser.add_argument("--links", type=int, default=20_000)
    parser.add_argument("--geoip", type=Path, help="a City .mmdb: also store rows it places")
    args = parser.parse_args()
    geoip = GeoLookup(GeoipSettings(database=str(args.geoip))) if args.geoip else None
    with tempfile.TemporaryDirectory(prefix="ingest-statement-") as tmp:
        server = PostgresServer(Path(tmp) / "pg", database="split").start()
        try:
            rates = asyncio.run(measure(server.url_for("split"), args.batches, args.links, geoip))
        finally:
            server.stop()
    for part, rate in rates.items():
        print(f"{part:28} {rate:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
