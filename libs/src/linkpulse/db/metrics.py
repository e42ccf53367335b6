"""Postgres latency of every service: one histogram by operation and outcome, and the ways to feed it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import asyncpg
from prometheus_client import Histogram

__all__ = ["DB_SECONDS", "OperationTimer", "time_queries"]

DB_SECONDS = Histogram(
    "linkpulse_db_operation_duration_seconds",
    "Seconds a Postgres operation took, by operation (link_lookup, store_batch, admin_query) and outcome "
    "(ok, error). store_batch includes waiting for a connection and the whole transaction.",
    ["operation", "outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


class OperationTimer:
    """Times one kind of operation; the two label children are looked up once, not per call.

    `histogram` must have the labels (operation, outcome); Postgres's by default.
    """

    __slots__ = ("_error", "_ok")

    def __init__(self, operation: str, histogram: Histogram = DB_SECONDS) -> None:
        self._ok = histogram.labels(operation, "ok")
        self._error = histogram.labels(operation, "error")

    @contextmanager
    def time(self) -> Iterator[None]:
        """Observe the block's duration as ok, or as error when it raises.

        A cancelled block is not observed: it says nothing about how long Postgres takes.
        """
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self._error.observe(time.perf_counter() - started)
            raise
        self._ok.observe(time.perf_counter() - started)


def time_queries(operation: str) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """A pool `init` hook observing every statement a connection runs under `operation`.

    asyncpg's query logger times the statement itself (not the wait for a connection) and calls
    back on the next loop iteration, off the query's own path.
    """
    ok = DB_SECONDS.labels(operation, "ok")
    error = DB_SECONDS.labels(operation, "error")

    def observe(record: asyncpg.connection.LoggedQuery) -> None:
        (ok if record.exception is None else error).observe(record.elapsed)

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(observe)

    return init
