"""Failed authentications throttled per client IP: counts in Redis shared by all admin pods, or in process."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from linkpulse.web.proxies import TrustedProxies

__all__ = ["AuthThrottle", "LocalCounts"]

KEY_PREFIX = "admin:auth-failures:"
"""Redis keys `admin:auth-failures:<ip>`, each a failure count that expires with its window."""
# After a Redis error the throttle counts in process for this long before trying Redis again, so an
# unreachable Redis costs one timeout per this many seconds, not one per request.
_REDIS_RETRY = 5.0
# IPs counted in process while Redis is away (see LocalCounts): about 1 MB at most.
_LOCAL_MAX_ENTRIES = 10_000

log = structlog.get_logger(__name__)


class LocalCounts:
    """Failures per IP in this process, a fixed window each, at most `max_entries` IPs (the oldest go first).

    Only used while Redis is away. The bound keeps an attacker rotating addresses from growing memory;
    an IP pushed out that way starts counting again, which is the price of the bound.
    """

    def __init__(self, limit: int, window: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        """Allow `limit` failures per `window` seconds per IP."""
        self._limit = limit
        self._window = window
        self._max_entries = max_entries
        self._clock = clock
        # IP → (failures, end of its window); insertion order is window order, so expired entries lead.
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def retry_after(self, ip: str) -> int:
        """Whole seconds until `ip` may try again; 0 when it may now."""
        count, ends = self._counts.get(ip, (0, 0.0))
        left = ends - self._clock()
        return math.ceil(left) if count >= self._limit and left > 0 else 0

    def failed(self, ip: str) -> None:
        """Count one failure of `ip`."""
        now = self._clock()
        while self._counts and next(iter(self._counts.values()))[1] <= now:
            self._counts.popitem(last=False)
        count, ends = self._counts.get(ip, (0, now + self._window))
        if ip not in self._counts and len(self._counts) >= self._max_entries:
            self._counts.popitem(last=False)
        self._counts[ip] = (count + 1, ends)

    def __len__(self) -> int:
        return len(self._counts)


class AuthThrottle:
    """Counts failed authentications per client IP; `limit` failures in a window and the IP waits it out.

    Redis holds the counts, so every admin pod sees the same ones (a client spreading its guesses over
    pods behind a load balancer gains nothing) and they expire by themselves. While Redis is away the
    counts are kept in process: a bounded, per-pod throttle beats none.
    """

    def __init__(
        self,
        redis: Redis,
        proxies: TrustedProxies,
        *,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Throttle after `limit` failures within `window` seconds; `proxies` decide who the client is."""
        self._redis = redis
        self._proxies = proxies
        self._limit = limit
        self._window_ms = max(1, round(window * 1000))
        self._local = LocalCounts(limit, window, _LOCAL_MAX_ENTRIES, clock)
        self._clock = clock
        self._redis_back_at = 0.0

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's IP: X-Forwarded-For is believed only from a trusted proxy."""
        return self._proxies.client_ip(peer, forwarded_for)

    async def retry_after(self, ip: str) -> int:
        """Whole seconds until `ip` may authenticate again; 0 when it may now (one Redis round trip)."""
        if self._redis_usable():
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    count, left_ms = await pipe.get(KEY_PREFIX + ip).pttl(KEY_PREFIX + ip).execute()
            except RedisError as exc:
                self._redis_failed(exc)
            else:
                if count is None or int(count) < self._limit:
                    return 0
                return max(1, math.ceil((left_ms if left_ms > 0 else self._window_ms) / 1000))
        return self._local.retry_after(ip)

    async def failed(self, ip: str) -> None:
        """Count one failed authentication of `ip`."""
        if self._redis_usable():
            key = KEY_PREFIX + ip
            try:
                # The window starts at the first failure (SET NX) and is not extended by later ones.
                async with self._redis.pipeline(transaction=True) as pipe:
                    await pipe.set(key, 0, px=self._window_ms, nx=True).incr(key).execute()
                return
            except RedisError as exc:
                self._redis_failed(exc)
        self._local.failed(ip)

    def _redis_usable(self) -> bool:
        return self._clock() >= self._redis_back_at

    def _redis_failed(self, exc: RedisError) -> None:
        log.warning("auth.throttle_redis_failed", error=str(exc) or type(exc).__name__, local_for=_REDIS_RETRY)
        self._redis_back_at = self._clock() + _REDIS_RETRY
