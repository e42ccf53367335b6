"""Prometheus metrics of the ingest worker (process-wide, in prometheus_client's default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SECONDS",
    "BATCH_SIZE",
    "DB_ERRORS",
    "DEAD_LETTERS",
    "EVENTS",
    "LAG",
    "PROGRESS_ERRORS",
    "RETENTION_PARTITIONS",
    "RETENTION_ROWS",
]

EVENTS = Counter(
    "linkpulse_ingest_events",
    "Click events of acked batches, by result: inserted (new, stored and added to the rollups) or "
    "duplicate (already stored, skipped by event id).",
    ["result"],
)
DEAD_LETTERS = Counter(
    "linkpulse_ingest_dead_letters",
    "Messages kept in dead_letters (undecodable, or refused by Postgres) instead of stored.",
)
BATCH_SIZE = Histogram(
    "linkpulse_ingest_batch_size",
    "Messages per acked batch (its _count is the number of batches).",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
BATCH_SECONDS = Histogram(
    "linkpulse_ingest_batch_duration_seconds",
    "Seconds from fetch to ack of one batch, Postgres retries included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
DB_ERRORS = Counter("linkpulse_ingest_db_errors", "Failed Postgres attempts to store a batch (each one retried).")
LAG = Gauge(
    "linkpulse_ingest_lag_messages",
    "Messages waiting in a shard's durable consumer, as JetStream reported with this process's last fetched batch.",
    ["shard"],
)
PROGRESS_ERRORS = Counter(
    "linkpulse_ingest_progress_report_errors",
    "Reports of the shards' progress (ingest_progress) that Postgres did not take; consuming goes on, the next "
    "report (about a second later) tries again.",
)
RETENTION_PARTITIONS = Counter(
    "linkpulse_ingest_retention_partitions_dropped",
    "click_events partitions dropped by retention (every click in them older than LINKPULSE_INGEST_RETENTION_DAYS).",
)
RETENTION_ROWS = Counter(
    "linkpulse_ingest_retention_rows_deleted",
    "Rows deleted by retention, by table: dead_letters, and click_events_default (clicks of months that had no "
    "partition of their own).",
    ["table"],
)

# Both results exist from the start, so a dashboard shows 0 rather than "no data".
for _result in ("inserted", "duplicate"):
    EVENTS.labels(_result)
for _table in ("click_events_default", "dead_letters"):
    RETENTION_ROWS.labels(_table)
