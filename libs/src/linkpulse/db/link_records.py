"""The `links` row as a `LinkRecord`: the one SELECT of its columns and the one mapping, for every reader."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from linkpulse.links import LinkRecord

__all__ = ["RECORD_COLUMNS", "SELECT_BY_CODE", "SELECT_BY_IDS", "epoch_ms", "link_record"]

RECORD_COLUMNS = "id, code, url, redirect_type, active, deleted_at, expires_at, max_clicks, forward_query, version"
"""The columns `link_record` reads."""
SELECT_BY_CODE = f"SELECT {RECORD_COLUMNS} FROM links WHERE code = $1"
"""One link by code ($1): the redirect's read after a Redis miss."""
SELECT_BY_IDS = f"SELECT {RECORD_COLUMNS} FROM links WHERE id = ANY($1::bigint[])"
"""Links by id ($1, a list): the admin outbox's rewrite of Redis."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(ts: datetime) -> int:
    """Epoch milliseconds; integer arithmetic, as a float timestamp can land one millisecond short."""
    return (ts - _EPOCH) // timedelta(milliseconds=1)


def link_record(row: Mapping[str, Any]) -> LinkRecord:
    """The cached form of a `links` row (any row holding `RECORD_COLUMNS`), as redirect pods read it."""
    expires_at = row["expires_at"]
    return LinkRecord(
        id=row["id"],
        code=row["code"],
        url=row["url"],
        redirect_type=row["redirect_type"],
        active=row["active"],
        deleted=row.get("deleted_at") is not None,  # a freshly inserted row may not name it
        expires_at=epoch_ms(expires_at) if expires_at is not None else None,
        max_clicks=row["max_clicks"],
        forward_query=row["forward_query"],
        version=row["version"],
    )
