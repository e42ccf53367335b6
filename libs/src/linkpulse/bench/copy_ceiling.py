"""The ingest mode's ceiling: the rows ingest stored, COPYed straight into a scratch copy of click_events."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import asyncpg

__all__ = ["CHUNK_ROWS", "SCRATCH", "CopyCeiling", "copy_ceiling", "create_scratch"]

CHUNK_ROWS = 32_000
"""Rows per COPY, each its own transaction: about what one ingest batch of `batch_bytes` (8 MB) holds."""

SCRATCH = "bench_copy_ceiling"

# Every column and index of click_events (its (id, ts) key, its (link_id, ts) index), as a plain table:
# what Postgres does for these rows with nothing of ingest around it.
_CREATE = f"""
DROP TABLE IF EXISTS {SCRATCH};
CREATE TABLE {SCRATCH} (LIKE click_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)
"""
# Keyset pages in id order: reading the rows back is not timed, and no page holds them all in memory.
_PAGE = """
SELECT * FROM click_events WHERE link_id = ANY($1::bigint[]) AND id > $2 ORDER BY id LIMIT $3
"""


async def create_scratch(conn: asyncpg.Connection) -> str:
    """(Re)create the empty scratch copy of click_events; returns its name."""
    await conn.execute(_CREATE)
    return SCRATCH


@dataclass(frozen=True)
class CopyCeiling:
    """Rows COPYed and the seconds the COPYs themselves took (reading the rows back is left out)."""

    rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def copy_ceiling(database_url: str, link_ids: list[int], chunk: int = CHUNK_ROWS) -> CopyCeiling:
    """COPY the click_events rows of `link_ids` into a fresh scratch copy of the table, `chunk` rows a time.

    Each chunk is one `copy_records_to_table` in its own transaction, as ingest commits a batch; the rows
    are the very ones ingest stored, with every column. The scratch table is dropped at the end.
    """
    reader = await asyncpg.connect(database_url)
    writer = await asyncpg.connect(database_url)
    try:
        await create_scratch(writer)
        rows, seconds, after = 0, 0.0, uuid.UUID(int=0)
        while page := await reader.fetch(_PAGE, link_ids, after, chunk):
            started = time.perf_counter()
            await writer.copy_records_to_table(SCRATCH, records=page)
            seconds += time.perf_counter() - started
            rows += len(page)
            after = page[-1]["id"]
        return CopyCeiling(rows=rows, seconds=seconds)
    finally:
        await writer.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        await writer.close()
        await reader.close()
