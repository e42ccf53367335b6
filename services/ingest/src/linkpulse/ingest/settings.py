"""Ingest settings: NATS, Postgres and stream settings shared with the other services, plus batch tuning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from linkpulse.settings import BotSettings, ClicksSettings, DatabaseSettings, NatsSettings, from_env

__all__ = ["GeoipSettings", "IngestSettings", "IngestTuning"]


class IngestTuning(msgspec.Struct, frozen=True, kw_only=True):
    """Knobs of the ingest worker itself (`LINKPULSE_INGEST_*`)."""

    batch_size: int = 32
    """32: most messages (envelopes of up to 256 clicks) per fetch, about 8,000 clicks; several fill a batch.

    Small enough that 16 shards' fetches stay far below NATS's 64 MB slow-consumer cut-off (docs/performance.md,
    "Why the ingest settings have their defaults").
    """
    max_wait: float = 0.5
    """0.5 s: how long an idle fetch waits for messages; also bounds how fast a stop is noticed."""
    linger: Annotated[float, msgspec.Meta(ge=0)] = 0.2
    """0.2 s: how long a batch that came back small keeps fetching before it is stored (0: store at once).

    Every batch costs a transaction and a commit whatever its size, so fuller ones leave Postgres's CPU to
    the redirects (docs/performance.md); clicks reach the stats that much later.
    """
    batch_bytes: Annotated[int, msgspec.Meta(gt=0)] = 8_000_000
    """8 MB: a batch is stored once its messages hold this much (about 32,000 clicks).

    Behind a backlog, the more clicks of a link a transaction holds, the fewer rollup rows it updates a
    click; 16 MB was no faster and held much more memory (docs/performance.md).
    """
    concurrent_stores: Annotated[int, msgspec.Meta(gt=0)] = 3
    """3: batches decoded and stored at once by this worker; the other shards' batches wait as raw bytes.

    A few at a time keep Postgres busy (one batch is decoded or acked while others are in Postgres) and
    the worker's memory low (docs/performance.md).
    """
    retry_delay: float = 1.0
    """1 s: first backoff ceiling (waits drawn with full jitter, the ceiling doubling up to 10 s) when Postgres
    or NATS fails, and the nak delay on shutdown."""
    metrics_port: int = 0
    """0 = no HTTP server; otherwise the port serving `/healthz`, `/readyz` and `/metrics` (9100 in the image)."""
    metrics_host: str = "127.0.0.1"
    """127.0.0.1: bind address of that server; the image and chart set 0.0.0.0 for probes and Prometheus."""
    log_level: str = "info"
    """info: log level of the worker."""
    retention_days: Annotated[int, msgspec.Meta(ge=0, le=36_500)] = 400
    """400: days raw clicks (`click_events`) and dead letters are kept; 0 keeps them forever; rollups stay.

    Whole monthly partitions are dropped once their newest possible click is this old, so a click stays
    between 400 and about 430 days: over a year, so this year's clicks can be compared with last year's.
    """


class GeoipSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where ingest finds a location for a click's anonymised IP (`LINKPULSE_GEOIP_*`; docs/analytics.md)."""

    database: str = ""
    """"" (none): path of a MaxMind-format City or Country database (.mmdb: GeoLite2, DB-IP Lite).

    A country a trusted proxy's header gave wins over it; the file is re-read when it changes.
    """
    asn_database: str = ""
    """"" (none): path of a MaxMind-format ASN database (.mmdb), for the network (ASN) dimension."""
    check_interval: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 5.0
    """5 s: how often, at most, the files' mtime, inode and size are checked for a new version."""


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
    geoip: GeoipSettings = msgspec.field(default_factory=GeoipSettings)
    """GeoIP databases (`LINKPULSE_GEOIP_*`); none by default."""
    bots: BotSettings = msgspec.field(default_factory=BotSettings)
    """The operator's own bot patterns (`LINKPULSE_BOTS_*`), added to the maintained rules."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> IngestSettings:
        """Build the settings from `LINKPULSE_*` variables; unset ones keep their defaults."""
        return from_env(cls, environ)
