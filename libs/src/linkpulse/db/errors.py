"""How services tell "Postgres is away" from "Postgres refused this data"."""

from __future__ import annotations

import asyncpg

__all__ = ["UNAVAILABLE", "is_data_error", "is_unavailable"]

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # asyncpg raises this ("cannot switch to state N; another operation is in progress") on a
    # connection whose server session ended mid-transaction; it means the same as a lost connection.
    asyncpg.InternalClientError,
)
"""Failures of Postgres or of the way to it: worth a retry later, never a reason to drop work."""


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says Postgres (or the connection to it) failed, not the caller's data."""
    return isinstance(exc, UNAVAILABLE) and not is_data_error(exc)


def is_data_error(exc: BaseException) -> bool:
    """True when Postgres rejects the data itself (SQLSTATE classes 22 and 23): retrying cannot help."""
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return True  # asyncpg's client-side DataError: a value it cannot encode
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] in ("22", "23")
