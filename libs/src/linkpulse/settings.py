"""Typed settings: one frozen struct per concern, read from `LINKPULSE_<GROUP>_<FIELD>` variables."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import msgspec

__all__ = [
    "BotSettings",
    "ClicksSettings",
    "DatabaseSettings",
    "HttpSettings",
    "MigrateSettings",
    "NatsSettings",
    "ProxySettings",
    "RedisSettings",
    "RolesSettings",
    "SettingsError",
    "StreamsSettings",
    "bot_patterns",
    "env_names",
    "from_env",
]

PREFIX = "LINKPULSE_"

T = TypeVar("T", bound=msgspec.Struct)


class SettingsError(ValueError):
    """A `LINKPULSE_*` variable holds a value its setting cannot take."""


class NatsSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "nats://127.0.0.1:4222"
    """NATS server URL(s), comma separated; default is a local server."""
    connect_timeout: float = 2.0
    """Seconds per connection attempt; short so a pod starting before NATS retries quickly."""
    max_reconnect_attempts: int = -1
    """-1 reconnects forever: a service outlives any NATS restart."""
    reconnect_wait: float = 0.5
    """Seconds between reconnect attempts."""


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL holding the `link:<code>` records."""
    timeout: float = 0.25
    """Socket timeout in seconds: a slow Redis must not hold a redirect for long."""
    ttl: int = 86400
    """Seconds a link record lives in Redis; writes refresh it, so only cold links expire."""


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "postgresql://postgres@127.0.0.1:5432/linkpulse"
    """Postgres DSN."""
    pool_min: int = 1
    """Connections kept open per process."""
    pool_max: int = 10
    """Upper bound per process; ingest needs one per shard loop in flight."""
    command_timeout: float = 10.0
    """Seconds before a statement is abandoned."""
    idle_in_transaction_timeout: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    """Seconds Postgres lets a session sit idle inside a transaction before ending it (0: never): a stalled
    client or frozen process must not hold locks and a connection for ever."""


class ClicksSettings(msgspec.Struct, frozen=True, kw_only=True):
    shards: int = 16
    """Shard count of `clicks.<shard>`; publishers and consumers must agree, so it is shared."""
    replicas: int = 1
    """Stream replicas: 1 locally, 3 in the chart."""
    max_age: float = 7 * 86400.0
    """Seconds a click stays in the stream: the replay window."""
    max_bytes: int = 8 * 1024**3
    """Stream size cap; `discard: new` turns overflow into a publish error, never a silent loss."""
    duplicate_window: float = 120.0
    """Seconds JetStream remembers a `Nats-Msg-Id`: retries within it are stored once."""
    ack_wait: float = 60.0
    """Seconds before an unacked click is redelivered (ingest consumers): how long the clicks a killed
    ingest pod held wait for another pod. Ingest renews held batches every third of it (in_progress)."""


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    """Address the HTTP server binds; the chart sets 0.0.0.0."""
    port: int = 8000
    """HTTP port (redirect 8000, admin 8001 by default)."""
    workers: int = 1
    """Server worker processes; the HPA scales pods, this scales within one."""
    log_level: str = "info"
    """Log level for the service and its server."""
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 4096
    """Open connections per worker before a new one gets 503 and a close; the open-files limit is raised to fit."""
    header_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Seconds a connection has to send a complete header block (from connecting, or its last answer)."""
    max_url_bytes: Annotated[int, msgspec.Meta(ge=1)] = 8192
    """Longest request target (URL) in bytes; a longer one gets 414 and the connection is closed."""
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1)] = 32768
    """Most header bytes (names, values, separators) in one request; more gets 431 and a close."""
    max_header_lines: Annotated[int, msgspec.Meta(ge=1)] = 100
    """Most header lines in one request; more gets 431 and a close."""


class ProxySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Which proxies in front of an HTTP service are believed about the client (`LINKPULSE_PROXY_*`)."""

    trusted: str = ""
    """Comma-separated CIDRs of proxies whose X-Forwarded-For (and country header) are believed; none by default."""


class BotSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The operator's own bot rules (`LINKPULSE_BOTS_*`), added to the maintained ones (docs/analytics.md).

    Read by ingest (the stored class), the redirect (click limits count humans) and `linkpulse reclassify`: give
    all three the same value, then reclassify to move the clicks stored before.
    """

    patterns: str = ""
    """"" (none): regular expressions, one per line, matched case-insensitively anywhere in the user agent.

    At most 50 lines of 200 characters; each must compile and must match neither an empty user agent nor the
    commonest browser's (either would make people bots).
    """

    def __post_init__(self) -> None:
        """Refuse patterns that cannot work (msgspec reports the ValueError with the group's variable prefix)."""
        try:
            bot_patterns(self.patterns)
        except ValueError as exc:
            raise ValueError(f"patterns: {exc}") from None


def bot_patterns(text: str) -> tuple[str, ...]:
    """The patterns of `BotSettings.patterns`: one per non-blank line, stripped.

    Raises:
        ValueError: more than 50, one longer than 200 characters, one that does not compile or matches "".
    """
    patterns = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(patterns) > _MAX_BOT_PATTERNS:
        raise ValueError(f"at most {_MAX_BOT_PATTERNS} patterns, one per line")
    for pattern in patterns:
        if len(pattern) > _MAX_BOT_PATTERN_CHARS:
            raise ValueError(f"a pattern is longer than {_MAX_BOT_PATTERN_CHARS} characters: {pattern[:40]!r}…")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {pattern!r} ({exc})") from None
        if compiled.search("") is not None or compiled.search(_COMMON_BROWSER) is not None:
            raise ValueError(f"{pattern!r} matches every user agent, or the most common browser's")
    return patterns


_MAX_BOT_PATTERNS = 50
_MAX_BOT_PATTERN_CHARS = 200
# A pattern that takes the commonest browser for a bot is a mistake, never a rule.
_COMMON_BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


class RolesSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Passwords of the services' Postgres login roles, which the setup step creates or updates."""

    redirect_password: str = ""
    """Password of `linkpulse_redirect_login`; "" (default) leaves that role alone (or uncreated)."""
    ingest_password: str = ""
    """Password of `linkpulse_ingest_login`; "" (default) leaves that role alone (or uncreated)."""
    admin_password: str = ""
    """Password of `linkpulse_admin_login`; "" (default) leaves that role alone (or uncreated)."""

    def passwords(self) -> dict[str, str]:
        """Service → password, for the services given one."""
        given = {"redirect": self.redirect_password, "ingest": self.ingest_password, "admin": self.admin_password}
        return {service: password for service, password in given.items() if password}


class MigrateSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What `linkpulse migrate` reads: the migrator's DSN (its owner or a superuser) and the login roles to make."""

    database: DatabaseSettings = DatabaseSettings()
    roles: RolesSettings = RolesSettings()


class StreamsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What stream setup reads: `linkpulse streams`, `linkpulse up` and the chart's setup job."""

    nats: NatsSettings = NatsSettings()
    clicks: ClicksSettings = ClicksSettings()


def env_names(cls: type[msgspec.Struct]) -> list[str]:
    """Every `LINKPULSE_*` variable a settings class reads, for docs and the chart test."""
    names: list[str] = []
    for group in msgspec.structs.fields(cls):
        sub = _struct_type(group.type)
        if sub is None:
            names.append(f"{PREFIX}{group.name.upper()}")
            continue
        names.extend(f"{PREFIX}{group.name.upper()}_{f.name.upper()}" for f in msgspec.structs.fields(sub))
    return names


def from_env(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build `cls` from `LINKPULSE_<GROUP>_<FIELD>` variables.

    Strings are converted leniently ("16" → 16, "true" → True); an invalid value raises
    SettingsError naming the variable.
    """
    data: dict[str, Any] = {}
    for group in msgspec.structs.fields(cls):
        sub = _struct_type(group.type)
        if sub is None:
            key = f"{PREFIX}{group.name.upper()}"
            if key in environ:
                data[group.name] = environ[key]
            continue
        values = {
            f.name: environ[key]
            for f in msgspec.structs.fields(sub)
            if (key := f"{PREFIX}{group.name.upper()}_{f.name.upper()}") in environ
        }
        if values:
            data[group.name] = values
    try:
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_variable(str(exc))) from None


def _struct_type(tp: Any) -> type[msgspec.Struct] | None:
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def _name_variable(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.clicks.shards`"; users know variables, not paths.
    head, sep, path = message.partition(" - at `$.")
    if not sep:
        return message
    parts = path.rstrip("`").split(".")
    return f"{PREFIX}{'_'.join(p.upper() for p in parts)}: {head}"
