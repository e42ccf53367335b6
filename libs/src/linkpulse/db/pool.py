"""The asyncpg pool every service uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from linkpulse.settings import DatabaseSettings

__all__ = ["create_pool"]


async def create_pool(
    settings: DatabaseSettings,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """Open a pool; `min_size=0` lets a service start while Postgres is still down.

    `max_size` raises the setting's bound where a service knows it needs more (one per shard loop).
    `init` runs on each new connection (e.g. `linkpulse.db.metrics.time_queries`); `server_settings` are
    Postgres settings of every connection, over the defaults (`idle_in_transaction_session_timeout` from
    `settings.idle_in_transaction_timeout`).
    """
    # Postgres takes the timeout in milliseconds; a transaction left idle ends, freeing its locks.
    idle_ms = str(round(settings.idle_in_transaction_timeout * 1000))
    return await asyncpg.create_pool(
        dsn=settings.url,
        min_size=settings.pool_min if min_size is None else min_size,
        max_size=max(settings.pool_max, max_size or 0),
        command_timeout=settings.command_timeout,
        # Statements are few and fixed; a larger cache saves a round trip of parsing per query.
        statement_cache_size=256,
        init=init,
        server_settings={"idle_in_transaction_session_timeout": idle_ms, **(server_settings or {})},
    )
