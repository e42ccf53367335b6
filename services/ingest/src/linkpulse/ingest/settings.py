"""Ingest settings: NATS, Postgres and stream settings shared with the other services, plus batch tuning."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from linkpulse.settings import ClicksSettings, DatabaseSettings, NatsSettings, from_env

__all__ = ["IngestSettings", "IngestTuning"]


class IngestTuning(msgspec.Struct, frozen=True, kw_only=True):
    """Knobs of the ingest worker itself (`LINKPULSE_INGEST_*`)."""

    batch_size: int = 1000
    """1000: most messages per fetch; large enough for fast unnest inserts, well under max ack pending."""
    max_wait: float = 0.5
    """0.5 s: how long an idle fetch waits for messages; also bounds how fast a stop is noticed."""
    retry_delay: float = 1.0
    """1 s: first backoff when Postgres fails (doubling up to 10 s), and the nak delay on shutdown."""
    metrics_port: int = 0
    """0 = no HTTP server; otherwise the port serving `/healthz`, `/readyz` and `/metrics` (9100 in the image)."""
    metrics_host: str = "127.0.0.1"
    """127.0.0.1: bind address of that server; the image and chart set 0.0.0.0 for probes and Prometheus."""
    log_level: str = "info"
    """info: log level of the worker."""


class IngestSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `python -m linkpulse.ingest` reads from the environment."""

    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    """NATS connection (`LINKPULSE_NATS_*`)."""
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    """Postgres connection pool (`LINKPULSE_DATABASE_*`)."""
    clicks: ClicksSettings = msgspec.field(default_factory=ClicksSettings)
    """CLICKS stream layout (`LINKPULSE_CLICKS_*`); the shard count must match the publishers'."""
    ingest: IngestTuning = msgspec.field(default_factory=IngestTuning)
    """Batching, backoff, metrics and logging (`LINKPULSE_INGEST_*`)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> IngestSettings:
        """Build the settings from `LINKPULSE_*` variables; unset ones keep their defaults."""
        return from_env(cls, environ)
