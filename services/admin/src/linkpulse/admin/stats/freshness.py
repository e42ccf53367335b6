"""How fresh a stats answer is: the newest stored click (`as_of`) and what ingest last reported of its lag.

`read_freshness` reads both on its own; a statement that wants them in its own snapshot selects
`freshness_columns(...)` and decodes the two columns with `decode_freshness`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import asyncpg
import msgspec

__all__ = ["STALE_AFTER_SECONDS", "Freshness", "IngestLag", "decode_freshness", "freshness_columns", "read_freshness"]

STALE_AFTER_SECONDS: Final = 30
"""A shard's report older than this means its ingest loop stopped reporting (it reports about once a second)."""


class IngestLag(msgspec.Struct, kw_only=True):
    """What the ingest shards last reported (table `ingest_progress`), over all shards."""

    pending: Annotated[
        int,
        msgspec.Meta(
            description="Messages (envelopes of up to 256 clicks) published but not yet stored, over all shards, as "
            "last reported; 0 when ingest is caught up."
        ),
    ]
    seconds: Annotated[
        float,
        msgspec.Meta(description="How far behind the newest published click the slowest shard was, in seconds."),
    ]
    reported_at: Annotated[
        datetime, msgspec.Meta(description="When the shard that reported least recently reported (the oldest report).")
    ]
    stale: Annotated[
        bool,
        msgspec.Meta(
            description=f"True when that report is older than {STALE_AFTER_SECONDS} s: ingest (or one of its shards) "
            "stopped reporting, so these figures are old and newer clicks may be waiting."
        ),
    ]


class Freshness(msgspec.Struct, kw_only=True, frozen=True):
    """The two freshness fields every stats answer carries."""

    as_of: datetime | None
    ingest_lag: IngestLag | None


_LAG: Final = f"""
SELECT json_build_object('pending', sum(pending), 'seconds', max(behind_seconds), 'reported_at', min(reported_at),
                         'stale', min(reported_at) < now() - interval '{STALE_AFTER_SECONDS} seconds')
FROM ingest_progress HAVING count(*) > 0
"""
_LAG_DECODER = msgspec.json.Decoder(IngestLag | None)


def freshness_columns(link: str | None) -> str:
    """Two select-list columns, `as_of` and `ingest_lag`, for one link (`link`: a fixed SQL expression giving its
    id, never input) or, for None, over all links."""
    as_of = (
        f"SELECT last_click_at FROM link_totals WHERE link_id = {link}"
        if link is not None
        else "SELECT max(last_click_at) FROM link_totals"
    )
    return f"({as_of}) AS as_of, ({_LAG.strip()}) AS ingest_lag"


def decode_freshness(as_of: datetime | None, ingest_lag: str | None) -> Freshness:
    """The columns of `freshness_columns` as a Freshness."""
    return Freshness(as_of=as_of, ingest_lag=_LAG_DECODER.decode(ingest_lag or "null"))


_LINK_SQL: Final = f"SELECT {freshness_columns('$1')}"
_ALL_SQL: Final = f"SELECT {freshness_columns(None)}"


async def read_freshness(conn: asyncpg.Connection, link_id: int | None) -> Freshness:
    """The newest stored click of link `link_id` (of every link for None) and the ingest lag, in one statement."""
    as_of, lag = await (conn.fetchrow(_LINK_SQL, link_id) if link_id is not None else conn.fetchrow(_ALL_SQL)) or (
        None,
        None,
    )
    return decode_freshness(as_of, lag)
