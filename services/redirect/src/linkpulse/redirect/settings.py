"""Redirect service settings: the shared groups plus cache, publisher and proxy trust."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from linkpulse.settings import (
    BotSettings,
    ClicksSettings,
    DatabaseSettings,
    HttpSettings,
    NatsSettings,
    ProxySettings,
    RedisSettings,
    from_env,
)

__all__ = ["CacheSettings", "PublisherSettings", "RedirectProxySettings", "RedirectSettings"]


class CacheSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_entries: int = 1_000_000
    """Links kept in process memory, per worker process; about 100 bytes each (docs/performance.md)."""
    ttl: float = 300.0
    """Seconds a cached link lives; LinkChanged events evict sooner, the TTL only bounds a missed one."""
    negative_ttl: float = 30.0
    """Seconds an unknown code stays cached as unknown, keeping floods of bad codes off the database."""
    negative_max_entries: int = 100_000
    """Bound on remembered unknown codes, so a scan of random codes cannot grow memory without end."""
    click_count_refresh: float = 1.0
    """Seconds between reads of a click-limited link's stored total (see budget.py for exactness)."""
    known_codes_error_rate: float = 0.0001
    """False-positive rate of the filter of existing codes: 1 unknown code in 10,000 reaches Postgres."""
    known_codes_catch_up: float = 0.25
    """Seconds between the filter's reads of links newer than it knows; an unknown code's 404 waits at most this."""
    unknown_budget: int = 50
    """Postgres lookups a second for codes Redis lacks while the filter is not loaded (Postgres down at start)."""


class PublisherSettings(msgspec.Struct, frozen=True, kw_only=True):
    queue_max: int = 100_000
    """Clicks held in memory awaiting publish; beyond it they go straight to the spill file."""
    batch_max: int = 256
    """Most clicks of one shard packed into one NATS message (an envelope)."""
    linger: float = 0.002
    """Seconds the publisher waits to fill envelopes once a click is queued."""
    publish_timeout: float = 2.0
    """Seconds one publish waits for its JetStream ack before it is retried with the same id."""
    give_up_after: float = 10.0
    """Seconds a click waits for NATS (failed retries, or no connection at all) before it goes to the
    spill file instead; shorter NATS outages (a restart) cost no disk I/O."""
    spill_dir: str = ".linkpulse/spill/redirect"
    """Folder of the spill file: clicks NATS could not take, replayed on start and reconnect."""
    drain_timeout: float = 10.0
    """Seconds shutdown spends publishing what is queued; the rest is spilled, never dropped."""
    replay_concurrency: int = 64
    """Spilled envelopes in flight at once while the spill file is replayed (beside live publishing)."""


class RedirectProxySettings(ProxySettings, frozen=True, kw_only=True):
    """The shared `trusted` CIDRs plus what the redirect reads from a trusted edge."""

    country_header: str = "cf-ipcountry"
    """Header carrying the visitor's country from a trusted edge."""
    anonymize_ip: bool = True
    """Zero the last octet (IPv4) or last 80 bits (IPv6) before the IP leaves the process."""


class RedirectSettings(msgspec.Struct, frozen=True, kw_only=True):
    http: HttpSettings = HttpSettings(port=8000)
    nats: NatsSettings = NatsSettings()
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    clicks: ClicksSettings = ClicksSettings()
    cache: CacheSettings = CacheSettings()
    publisher: PublisherSettings = PublisherSettings()
    proxy: RedirectProxySettings = RedirectProxySettings()
    bots: BotSettings = BotSettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RedirectSettings:
        """Settings from `LINKPULSE_*` variables."""
        return from_env(cls, environ)
