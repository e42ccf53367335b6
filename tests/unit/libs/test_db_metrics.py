"""Operation timers: a duration per call, as ok or error; a cancelled call is not a latency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncpg.connection import LoggedQuery
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from linkpulse.db.metrics import OperationTimer, time_queries

DB_NAME = "linkpulse_db_operation_duration_seconds"


def _counts(name: str, registry: CollectorRegistry, operation: str) -> dict[str, float]:
    """Observations of `operation` by outcome, in histogram `name` of `registry`."""
    labels = {"operation": operation}
    return {o: registry.get_sample_value(f"{name}_count", {**labels, "outcome": o}) or 0.0 for o in ("ok", "error")}


async def test_timer_observes_ok_and_error_and_skips_cancelled() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "test", ["operation", "outcome"], registry=registry)
    timer = OperationTimer("store_batch", histogram)

    with timer.time():
        await asyncio.sleep(0)
    with pytest.raises(OSError), timer.time():
        raise OSError("connection refused")

    async def cancelled() -> None:
        with timer.time():
            await asyncio.Event().wait()

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert _counts("t_seconds", registry, "store_batch") == {"ok": 1, "error": 1}


async def test_query_logger_hook_observes_each_statement_by_its_outcome() -> None:
    before = _counts(DB_NAME, REGISTRY, "unit_query")
    callbacks: list[Any] = []

    class Conn:
        def add_query_logger(self, cb: Any) -> None:
            callbacks.append(cb)

    await time_queries("unit_query")(Conn())  # type: ignore[arg-type]
    [observe] = callbacks

    def record(exception: BaseException | None) -> LoggedQuery:
        return LoggedQuery("SELECT 1", (), None, 0.002, exception, None, None)

    observe(record(None))
    observe(record(None))
    observe(record(TimeoutError()))
    after = _counts(DB_NAME, REGISTRY, "unit_query")
    assert {k: after[k] - before[k] for k in after} == {"ok": 2, "error": 1}
