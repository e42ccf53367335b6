"""Readiness: a redirect can be served when the local cache holds links, or Redis or Postgres answers."""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Litestar

__all__ = ["ready"]


async def ready(app: Litestar) -> bool:
    """True when some tier can answer lookups."""
    state = app.state
    if len(state.lookup.cache):
        return True
    with contextlib.suppress(Exception):
        if await asyncio.wait_for(state.redis.ping(), 0.5):
            return True
    with contextlib.suppress(Exception):
        return bool(await asyncio.wait_for(state.pool.fetchval("SELECT 1"), 1.0))
    return False
