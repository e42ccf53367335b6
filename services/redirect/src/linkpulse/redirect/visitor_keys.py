"""Visitor keys: a keyed hash of (full IP, user agent, link) under a daily salt every redirect process shares.

The salt of a UTC day lives in Redis under `visitor-salt:<date>`, made by whichever process asks first (SET NX
of 32 random bytes) and expiring shortly after its day; each process holds today's (and, near midnight,
tomorrow's) in memory and forgets a day's salt soon after the day ends. A request only reads memory: the salts
are fetched at start and by `keep` in the background. Without Redis a process makes a local salt for the day,
so uniques may overcount across processes until Redis answers again (logged, counted); a redirect never waits.
docs/analytics.md, "Unique visitors", says what this makes of a visitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation
from prometheus_client import Counter
from redis.exceptions import RedisError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["DAY_MS", "KEY_PREFIX", "SALT_BYTES", "VisitorKeys"]

log = structlog.get_logger(__name__)

DAY_MS = 86_400_000
KEY_PREFIX = "visitor-salt:"
"""Redis keys of the daily salts, `visitor-salt:2026-12-07`: the redirect's Redis user may read and set only these
and `link:*` (linkpulse.localstack.access.REDIS_USERS)."""
SALT_BYTES = 32
LEAD_MS = 600_000
"""10 minutes: how long before midnight the next day's salt is fetched, so the first click of a day finds it."""
FORGET_AFTER_MS = 120_000
"""2 minutes after its day a salt leaves memory: a click is keyed when it is answered, so this only covers clocks
of processes a little apart."""
EXPIRE_AFTER_S = 600
"""10 minutes after its day a salt expires in Redis, and is then gone for good."""
REFRESH_S = 30.0
"""Seconds between `keep`'s looks: it calls Redis only near midnight, at start, or while a salt is local."""

_LOCAL_SALTS = Counter(
    "linkpulse_redirect_visitor_salt_local",
    "Days this process keyed visitors with a salt of its own (Redis unreachable): uniques may overcount",
)
_SALT_ERRORS = Counter("linkpulse_redirect_visitor_salt_errors", "Failed reads or writes of a shared daily salt")


class VisitorKeys:
    """The daily salts of this process and the key of a click; `key` runs on the request path."""

    __slots__ = ("_clock", "_hashers", "_local", "_redis")

    def __init__(self, redis: aioredis.Redis | None, clock: Callable[[], int] | None = None) -> None:
        """`redis` shares the salts (None: every salt is local); `clock` gives epoch ms (tests set the day)."""
        self._redis = redis
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._hashers: dict[int, hashlib.blake2b] = {}
        """Day number → a BLAKE2b keyed with its salt, copied per click (a copy costs less than keying anew)."""
        self._local: set[int] = set()
        """Days whose salt this process made alone; `refresh` replaces them with the shared one when it can."""

    def key(self, ip: str, ua: str, link_id: int, now_ms: int) -> str:
        """The visitor key of a click at `now_ms`: 32 hex characters; the same inputs on the same day, the same key."""
        hasher = self._hashers.get(now_ms // DAY_MS)
        if hasher is None:
            hasher = self._local_salt(now_ms // DAY_MS)
        hasher = hasher.copy()
        hasher.update(f"{ip}\0{ua}\0{link_id}".encode())
        return hasher.hexdigest()

    def shares(self, day: int) -> bool:
        """Whether the salt of `day` (days since the epoch) is held and shared through Redis."""
        return day in self._hashers and day not in self._local

    async def refresh(self) -> None:
        """Fetch the salts missing (today's, and tomorrow's near midnight) and forget past days'; never raises."""
        now = self._clock()
        today = now // DAY_MS
        for day in list(self._hashers):
            if (day + 1) * DAY_MS + FORGET_AFTER_MS <= now:
                del self._hashers[day]
                self._local.discard(day)
        wanted = [today, today + 1] if (today + 1) * DAY_MS - now <= LEAD_MS else [today]
        for day in wanted:
            if not self.shares(day):
                salt = await self._shared_salt(day)
                if salt is not None:
                    self._hashers[day] = _hasher(salt)
                    self._local.discard(day)
                elif day == today and day not in self._hashers:
                    self._local_salt(day)

    async def keep(self, stop: asyncio.Event, interval: float = REFRESH_S) -> None:
        """`refresh` every `interval` seconds until `stop` is set (a background task of the app)."""
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _shared_salt(self, day: int) -> bytes | None:
        if self._redis is None:
            return None
        name = KEY_PREFIX + datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()
        try:
            # NX: the first process to ask makes the day's salt, every other one reads that same salt. Upkeep
            # outside any request: no client spans (a trace of it would be noise, and a cost with tracing on).
            with suppress_instrumentation():
                await self._redis.set(name, secrets.token_bytes(SALT_BYTES), nx=True,
                                      exat=(day + 1) * 86_400 + EXPIRE_AFTER_S)  # fmt: skip
                salt = await self._redis.get(name)
        except (TimeoutError, RedisError, OSError) as exc:
            _SALT_ERRORS.inc()
            log.warning("visitor_salt.redis_failed", key=name, error=str(exc) or type(exc).__name__)
            return None
        if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
            # Something else wrote the key (the ACL lets only redirects near it): keep it out of the hash.
            _SALT_ERRORS.inc()
            log.warning("visitor_salt.invalid", key=name)
            return None
        return salt

    def _local_salt(self, day: int) -> hashlib.blake2b:
        hasher = self._hashers[day] = _hasher(secrets.token_bytes(SALT_BYTES))
        self._local.add(day)
        _LOCAL_SALTS.inc()
        log.warning("visitor_salt.local", day=datetime.fromtimestamp(day * 86_400, UTC).date().isoformat(),
                    detail="no shared salt from Redis: this process keys visitors alone today, so unique "
                    "visitors may overcount across processes until Redis answers")  # fmt: skip
        return hasher


def _hasher(salt: bytes) -> hashlib.blake2b:
    return hashlib.blake2b(key=salt, digest_size=16)
