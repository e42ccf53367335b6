"""Admin settings: the shared connection settings plus the admin API's own options."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from linkpulse.hosts import InvalidHost, canonical_host
from linkpulse.settings import DatabaseSettings, HttpSettings, NatsSettings, ProxySettings, RedisSettings, from_env
from linkpulse.validation import validate_url

__all__ = ["AdminHttpSettings", "AdminOptions", "AdminSettings"]


class AdminHttpSettings(HttpSettings, frozen=True, kw_only=True):
    """HttpSettings with the admin port as the default.

    A subclass rather than a `HttpSettings(port=8001)` default value: `from_env` builds the
    group from its own defaults whenever any `LINKPULSE_HTTP_*` variable is set, which would
    silently bring back port 8000.
    """

    port: int = 8001
    """HTTP port; 8001 so the admin API runs beside the redirect service (8000) on one host."""


class AdminOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What only the admin API needs (`LINKPULSE_ADMIN_*`)."""

    key: str = ""
    """Bootstrap admin API key; when set, its SHA-256 is upserted at startup (scope `admin`)."""
    public_url: str = "http://127.0.0.1:8000"
    """Base URL of the redirect service: shown as `short_url`, and its host is refused as a target."""
    own_hosts: str = ""
    """Extra comma-separated hosts serving the shortener; targets there would loop, so are refused."""
    allow_private_targets: bool = False
    """Accept targets on loopback, private and link-local addresses or local names (`*.internal`); intranets only."""
    max_body_bytes: int = 1_048_576
    """Largest request body in bytes (1 MiB); bigger ones get 413 before any parsing."""
    relay_interval: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """Seconds between outbox relay passes (one runs at startup too): how long an unpublished change can wait."""
    auth_failures: Annotated[int, msgspec.Meta(ge=1)] = 10
    """Failed authentications one client IP may make per window (10); then 429 until the window ends."""
    auth_failure_window: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    """Seconds of a client IP's failure window (5 min), from its first failure: how long a guesser waits."""
    bulk_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 2
    """Bulk uploads read, parsed and stored at once per process (2); more get 503: each holds up to 8 MiB."""
    export_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 2
    """CSV exports streaming at once per process (2); more get 503, so exports never crowd out the API."""
    export_send_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Seconds an export waits for its client to take the next chunk (30) before the response is cut."""

    def __repr__(self) -> str:
        # Settings may end up in a log line or a traceback; the key must not.
        shown = {name: getattr(self, name) for name in self.__struct_fields__}
        if self.key:
            shown["key"] = "***"
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"AdminOptions({fields})"

    def hosts(self) -> frozenset[str]:
        """Hosts that serve short links, canonical as `validate_url` compares them: the public URL's and `own_hosts`."""
        return _own_hosts(self.public_url, self.own_hosts)

    def validate_target(self, url: str) -> str:
        """`validate_url` with this server's own hosts and private-target rule: the normalised URL, or InvalidInput."""
        return validate_url(url, self.hosts(), allow_private=self.allow_private_targets)

    def short_url(self, code: str) -> str:
        """The public short URL of a code."""
        return f"{self.public_url.rstrip('/')}/{code}"


class AdminSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the admin service reads from the environment."""

    http: AdminHttpSettings = msgspec.field(default_factory=AdminHttpSettings)
    """Bind address and port (8001)."""
    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    """NATS, for publishing LinkChanged events on the LINKS stream."""
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    """Redis, written through on every link change so redirects see it at once."""
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    """Postgres, the source of truth for links, the outbox and API keys."""
    admin: AdminOptions = msgspec.field(default_factory=AdminOptions)
    """The admin API's own options."""
    proxy: ProxySettings = msgspec.field(default_factory=ProxySettings)
    """Proxies whose X-Forwarded-For names the client (the IP failed authentications are counted by)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AdminSettings:
        """Build from `LINKPULSE_*` variables; raises SettingsError naming a bad variable."""
        return from_env(cls, environ)


@functools.lru_cache(maxsize=8)
def _own_hosts(public_url: str, own_hosts: str) -> frozenset[str]:
    # Cached: a bulk upload checks every row against these hosts.
    names = [urlsplit(public_url).hostname or "", *own_hosts.split(",")]
    return frozenset(_canonical(n.strip()) for n in names if n.strip())


def _canonical(name: str) -> str:
    try:
        return canonical_host(name)
    except InvalidHost:
        return name.lower()  # no target's canonical host can match it anyway
