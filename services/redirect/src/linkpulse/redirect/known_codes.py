"""The codes that may exist: a Bloom filter of `links.code` that keeps floods of unknown codes off Postgres.

The negative cache remembers a code only once it was asked, so random codes used to cost a Postgres
query each. The lookup asks this filter after Redis (admin writes a new link through to Redis before
any event, so a brand-new link is found there first) and before Postgres; a code the filter has never
seen is unknown without a query.

It is filled from Postgres at start, in keyset pages by id rather than through one cursor, so no
transaction stays open while a million codes load (about a second), memory stays one page, and the same
query serves the catch-up below. It learns of new codes three ways:
- every LinkChanged event adds its code (a deleted code may stay: a false "may exist" costs one query);
- a code it has never seen waits for a *catch-up*, one indexed query for links with a higher id than
  any read so far, shared by every request waiting meanwhile and run at most every `catch_up` seconds.
  That finds a link whose event this process missed (a NATS gap) or that was written behind the admin's
  back, so nothing that exists is answered 404; an unknown code waits at most `catch_up` for its 404,
  and any number of them cost at most one query per `catch_up`. (A row committed later than one with a
  higher id is missed by the catch-up; its event, or its Redis copy, still finds it.)
- past its capacity it is rebuilt, twice as large, in the background.

Until the first load succeeds (Postgres down at start) it fails open, but bounded: `unloaded_budget`
codes a second go on to Postgres, the rest are answered 503 by the lookup. rbloom's default hash is
Python's `hash`, salted per process, so no one can compute codes that pass it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import asyncpg
import structlog
from rbloom import Bloom

from linkpulse.backoff import Backoff
from linkpulse.db.errors import UNAVAILABLE
from linkpulse.db.metrics import OperationTimer

__all__ = ["KnownCodes", "MissBudgetSpent"]

log = structlog.get_logger(__name__)

# One row a page, its codes as one array: asyncpg decodes that in C, four times faster than a row per code.
_PAGE = """
SELECT max(id), count(*), coalesce(array_agg(code), '{}')
FROM (SELECT id, code FROM links WHERE id > $1 ORDER BY id LIMIT $2) AS page
"""
PAGE_ROWS = 50_000
"""Rows per page of a load or catch-up: about 5 MB while it is read."""
MIN_CAPACITY = 1_000_000
"""Smallest filter built: 2.4 MB at the default error rate, room for plenty of links created after start."""
LOAD_RETRY = 5.0
"""Most seconds between load attempts while Postgres is away at start (the first retry comes within one)."""
_READ_TIMER = OperationTimer("known_codes_read")


class MissBudgetSpent(RuntimeError):
    """The filter is not loaded and this second's budget of Postgres lookups for unknown codes is spent."""


class KnownCodes:
    """A Bloom filter of existing codes, kept current by events and catch-ups; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        error_rate: float,
        catch_up: float,
        unloaded_budget: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._error_rate = error_rate
        self._catch_up = catch_up
        self._clock = clock
        self._bloom: Bloom | None = None
        self._capacity = 0
        self._codes = 0
        """Codes added to the current filter (some twice, over events and reads): when to rebuild it."""
        self._last_id = 0
        self._loading: list[str] | None = None
        """Codes events added while a (re)load runs: put into the new filter before it replaces the old."""
        self._next: asyncio.Future[None] | None = None
        self._next_at = 0.0
        self._rebuild: asyncio.Task[None] | None = None
        self._budget = _Budget(unloaded_budget, clock)

    @property
    def loaded(self) -> bool:
        return self._bloom is not None

    def add(self, code: str) -> None:
        """Remember a code an event named (created, or any other change: it exists, or did)."""
        self._remember((code,))

    def _remember(self, codes: Sequence[str]) -> None:
        """Add codes to the filter in use and to the one a (re)load is building, if any."""
        if self._bloom is not None:
            self._bloom.update(codes)
            self._codes += len(codes)
        if self._loading is not None:
            self._loading.extend(codes)

    async def may_exist(self, code: str) -> bool:
        """False when no link has `code`, without a Postgres query of its own.

        Raises MissBudgetSpent when the filter is not loaded and the budget of this second is spent.
        """
        bloom = self._bloom
        if bloom is None:
            if self._budget.take():
                return True
            raise MissBudgetSpent
        if code in bloom:
            return True
        await self._caught_up()
        return code in self._bloom

    async def load(self) -> None:
        """Build the filter from every code in Postgres and put it in place. Raises what asyncpg raises."""
        started = self._clock()
        self._loading = []
        try:
            rows = await self._pool.fetchval("SELECT count(*) FROM links")
            capacity = max(MIN_CAPACITY, 2 * rows)
            bloom = Bloom(capacity, self._error_rate)
            last_id, read = await self._read(bloom.update, 0)
            bloom.update(self._loading)  # no await from here on: nothing can slip between this and the swap
        finally:
            self._loading = None
        self._bloom, self._capacity, self._codes = bloom, capacity, read
        # Not max(): a catch-up that read further meanwhile put its codes into `_loading`, but the next
        # one reads from here again anyway (twice is harmless).
        self._last_id = last_id
        log.info("known_codes.loaded", codes=read, capacity=capacity, seconds=round(self._clock() - started, 3),
                 bytes=bloom.size_in_bits // 8)  # fmt: skip

    async def keep_loading(self) -> None:
        """Load, retrying with backoff (LOAD_RETRY apart at most) while Postgres is away (a task from the start)."""
        backoff = Backoff(1.0, LOAD_RETRY)
        while self._bloom is None:
            try:
                await self.load()
            except UNAVAILABLE as exc:
                log.warning("known_codes.load_failed", error=type(exc).__name__, retry_within=backoff.ceiling,
                            unloaded_budget=self._budget.rate)  # fmt: skip
                await backoff.wait()

    async def close(self) -> None:
        """Cancel a waiting catch-up or a rebuild (shutdown)."""
        for task in (self._next, self._rebuild):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _caught_up(self) -> None:
        """Wait for a catch-up that starts after now; every request waiting meanwhile shares it."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._scheduled_catch_up())
        await asyncio.shield(self._next)

    async def _scheduled_catch_up(self) -> None:
        delay = self._next_at - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        # Requests arriving from here on may ask for a link committed after this query's snapshot.
        self._next = None
        self._next_at = self._clock() + self._catch_up
        try:
            # Into the filter in use when each page arrives (a rebuild may swap it meanwhile).
            last_id, _ = await self._read(self._remember, self._last_id)
        except UNAVAILABLE as exc:
            log.warning("known_codes.catch_up_failed", error=type(exc).__name__)
            return
        self._last_id = max(self._last_id, last_id)
        if self._codes > self._capacity and self._rebuild is None:
            self._rebuild = asyncio.create_task(self._grow())

    async def _grow(self) -> None:
        try:
            await self.load()
        except UNAVAILABLE as exc:  # the old filter goes on, a little less exact; the next catch-up retries
            log.warning("known_codes.rebuild_failed", error=type(exc).__name__)
        finally:
            self._rebuild = None

    async def _read(self, add: Callable[[list[str]], object], after_id: int) -> tuple[int, int]:
        """`add` the codes of links with an id above `after_id`, a page at a time: (the highest id read, codes read)."""
        read = 0
        while True:
            with _READ_TIMER.time():
                last_id, count, codes = await self._pool.fetchrow(_PAGE, after_id, PAGE_ROWS)
            if count:
                add(codes)
                read += count
                after_id = last_id
            if count < PAGE_ROWS:
                return after_id, read


class _Budget:
    """A token bucket: at most `rate` takes a second, none saved up beyond one second's worth."""

    def __init__(self, rate: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.rate), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
