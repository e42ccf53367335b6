"""Micro-benchmark: where one ingest batch's Postgres time goes, part by part, against a raw COPY.

Not a test (nothing asserts a time): run it by hand before and after a change to `ingest/store.py`.

    .venv/bin/python tests/bench/ingest_statement.py [--batches 14] [--links 20000]

It starts its own PostgreSQL from the wheel in a temporary folder, migrates, and stores batches of 32,000
of the bench's clicks (round robin over `--links` links, as `linkpulse bench ingest`) through one
connection, each batch by one variant in turn: the whole store statement, the insert alone, the insert
with the totals and time series but no dimension rollup. Every batch's COPY into the stage is timed, and
the batch's rows are then COPYed raw into a scratch copy of click_events (the bench's ceiling). The first
two batches warm up and are not counted. Figures of 2026-12-07 in docs/performance.md.
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
from linkpulse.ingest.batch import click_row
from linkpulse.localstack.servers import PostgresServer

BATCH = 32_000
WHOLE = store._STORE_EVENTS
VARIANTS = {
    "whole statement": WHOLE,
    "insert-or-skip alone": WHOLE[: WHOLE.index("), totals AS")] + ")\nSELECT count(*) FROM new",
    "insert + totals + series": WHOLE[: WHOLE.index(", dimensions AS")] + "\nSELECT count(*) FROM new",
}


async def measure(url: str, batches: int, links: int) -> dict[str, float]:
    await migrate(url)
    conn = await asyncpg.connect(url)
    await store.prepare_connection(conn)
    await conn.execute("SELECT linkpulse_ensure_click_partitions(3)")
    raw = await create_scratch(conn)
    rng, now, names = random.Random(7), int(time.time() * 1000), list(VARIANTS)
    seconds: dict[str, float] = defaultdict(float)
    rows: dict[str, int] = defaultdict(int)
    for b in range(batches):
        batch = [click_row(_event(f"c{n % links}", n % links + 1, now, rng)) for n in range(b * BATCH, (b + 1) * BATCH)]
        name = names[b % len(names)]
        async with conn.transaction():
            t0 = time.perf_counter()
            await conn.copy_records_to_table("ingest_stage", records=batch)
            t1 = time.perf_counter()
            assert await conn.fetchval(VARIANTS[name]) == BATCH
            t2 = time.perf_counter()
        stored = await conn.fetch("SELECT * FROM click_events ORDER BY id DESC LIMIT $1", BATCH)
        t3 = time.perf_counter()
        await conn.copy_records_to_table(raw, records=stored)
        t4 = time.perf_counter()
        if b >= 2:
            for part, took in (("COPY into the stage", t1 - t0), (name, t2 - t1), ("raw COPY", t4 - t3)):
                seconds[part] += took
                rows[part] += BATCH
    await conn.close()
    return {part: rows[part] / seconds[part] for part in seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=14)
    parser.add_argument("--links", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-statement-") as tmp:
        server = PostgresServer(Path(tmp) / "pg", database="split").start()
        try:
            rates = asyncio.run(measure(server.url_for("split"), args.batches, args.links))
        finally:
            server.stop()
    for part, rate in rates.items():
        print(f"{part:28} {rate:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
