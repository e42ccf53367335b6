"""A link's stored clicks: keyset pages newest first, and all of them as a streamed CSV.

Clicks are ordered by (ts DESC, id DESC): the id (a UUIDv7) breaks ties between clicks of the same millisecond.
A page continues strictly below the (ts, id) of the previous page's last click, read backwards along the
`(link_id, ts)` index, so a page costs O(limit) rows at any depth, and a click stored meanwhile never shifts
a page (a newer one simply is not in a walk that started before it).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from linkpulse.admin.stats.events_schemas import CLICK_FIELDS, Click, ClickPage
from linkpulse.admin.stats.export import CsvBuffer, click_cells
from linkpulse.admin.stats.filters import Filters, clicks_where
from linkpulse.admin.stats.window import parse_time
from linkpulse.validation import InvalidInput, could_be_code

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "ClickQuery",
    "EventsService",
    "Position",
    "decode_cursor",
    "encode_cursor",
    "events_query",
    "page_sql",
    "parse_page_limit",
]

DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000
_ECHO_CHARS = 64
_MAX_CURSOR_CHARS = 128  # an encoded position is about 70 characters
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The events CSV: rows fetched from the server-side cursor at a time, and the size of a response chunk.
_FETCH_ROWS = 1000
_CHUNK_CHARS = 64 * 1024

# `Click` fields from the click columns (the admin may read these, never `ip`: migration 0010).
_COLUMNS = ", ".join("is_bot AS bot" if name == "bot" else name for name in CLICK_FIELDS)
_LINK = "SELECT id FROM links WHERE code = $1 AND deleted_at IS NULL"
# One round trip: the link (no row: no live link) and up to $2 of its clicks (a NULL id: none left). The
# conditions are fixed fragments (time bounds, the position, `clicks_where`); values travel as arguments.
_PAGE = """
SELECT l.id AS link_id, e.*
FROM links l
LEFT JOIN LATERAL (
    SELECT {columns} FROM click_events
    WHERE link_id = l.id{conditions}
    ORDER BY ts DESC, id DESC
    LIMIT $2
) e ON true
WHERE l.code = $1 AND l.deleted_at IS NULL
ORDER BY e.ts DESC, e.id DESC
"""
_ALL = """
SELECT {columns} FROM click_events
WHERE link_id = $1{conditions}
ORDER BY ts DESC, id DESC
"""


class Position(msgspec.Struct, frozen=True, array_like=True):
    """Where a page ended: the (ts, id) of its last click; the next page holds the clicks strictly older."""

    ts_us: int
    id: UUID

    @property
    def ts(self) -> datetime:
        """The click's time; microseconds, as Postgres keeps it, so the comparison is exact."""
        return _EPOCH + timedelta(microseconds=self.ts_us)


_position = msgspec.json.Decoder(Position)


def encode_cursor(ts: datetime, click_id: UUID) -> str:
    """The opaque cursor after a click: base64url (no padding) of `[ts µs, "id"]`."""
    raw = msgspec.json.encode(Position((ts - _EPOCH) // timedelta(microseconds=1), click_id))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """Inverse of encode_cursor.

    Raises:
        InvalidInput: anything encode_cursor did not make (422 naming `cursor`).
    """
    try:
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError(cursor)
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        position = _position.decode(raw)
        _ = position.ts  # a position outside datetime's range raises OverflowError
    except (ValueError, msgspec.DecodeError, OverflowError):
        # binascii.Error is a ValueError; so is a non-ASCII cursor.
        raise InvalidInput("cursor: not valid; pass the `next_cursor` of a previous page") from None
    return position


def parse_page_limit(text: str | None) -> int:
    """Clicks per page: 1 to 1000, 100 when not given.

    Raises:
        InvalidInput: not an integer in that range (422 naming `limit`).
    """
    if text is None:
        return DEFAULT_PAGE
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 4 and 1 <= int(value) <= MAX_PAGE):
        raise InvalidInput(f"limit: must be an integer from 1 to {MAX_PAGE}, not {text[:_ECHO_CHARS]!r}")
    return int(value)


class ClickQuery(NamedTuple):
    """Which of a link's clicks to read: the SQL conditions over `click_events` and their arguments."""

    conditions: str
    """` AND …` fragments, arguments numbered from the query's `first_arg`."""
    args: list[Any]


def events_query(
    start: str | None, end: str | None, filters: Filters, first_arg: int, after: Position | None = None
) -> ClickQuery:
    """The conditions for clicks in `[from, to)` (either open when not given), matching `filters`, older than `after`.

    Raises:
        InvalidInput: a bad time, or `from` not before `to` (422 naming the parameter).
    """
    conditions: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${first_arg + len(args) - 1}"

    lo = parse_time(start, "from") if start is not None else None
    hi = parse_time(end, "to") if end is not None else None
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidInput("from must be before to")
    if lo is not None:
        conditions.append(f" AND ts >= {arg(lo)}")
    if hi is not None:
        conditions.append(f" AND ts < {arg(hi)}")
    if after is not None:
        ts, click_id = arg(after.ts), arg(after.id)
        # A row comparison, not `ts < $a OR (ts = $a AND id < $b)`: Postgres bounds the backward scan of the
        # (link_id, ts) index with it (`ts <=`, also written out) and starts at the cursor, where the OR form
        # reads every newer click first. test_a_deep_page_reads_about_limit_rows holds this.
        conditions.append(f" AND ts <= {ts} AND (ts, id) < ({ts}, {click_id})")
    where, values = clicks_where(filters, first_arg + len(args))
    return ClickQuery("".join(conditions) + where, args + values)


def page_sql(query: ClickQuery) -> str:
    """The statement of a page: `$1` the code, `$2` the rows to return, then `query`'s arguments from `$3`."""
    return _PAGE.format(columns=_COLUMNS, conditions=query.conditions)


class EventsService:
    """Reads a link's clicks; handlers call it and never build SQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Bind the service to the app's Postgres pool."""
        self._pool = pool

    async def link_id(self, code: str) -> int | None:
        """The id of the live link with `code`, or None."""
        if not could_be_code(code):
            return None
        async with self._pool.acquire() as conn:
            link_id: int | None = await conn.fetchval(_LINK, code)
        return link_id

    async def page(self, code: str, query: ClickQuery, limit: int) -> ClickPage | None:
        """Up to `limit` clicks of the live link `code`, newest first; None when there is no such link.

        `query` must number its arguments from 3 (`events_query(..., first_arg=3)`).
        """
        if not could_be_code(code):
            return None
        sql = page_sql(query)
        async with self._pool.acquire() as conn:
            # One more than asked: whether it exists says whether there is a next page.
            rows = await conn.fetch(sql, code, limit + 1, *query.args)
        if not rows:
            return None
        clicks = [Click(**{name: row[name] for name in CLICK_FIELDS}) for row in rows if row["id"] is not None]
        more = len(clicks) > limit
        del clicks[limit:]
        last = clicks[-1] if more else None
        return ClickPage(events=clicks, next_cursor=encode_cursor(last.ts, last.id) if last else None)

    async def csv(self, link_id: int, query: ClickQuery) -> AsyncIterator[str]:
        """The events CSV of a link: header, then every click `query` selects, newest first, in chunks.

        `query` must number its arguments from 2 (`events_query(..., first_arg=2)`). The rows come from a
        server-side cursor in one read-only REPEATABLE READ transaction, `_FETCH_ROWS` at a time: the file is
        one snapshot (a click stored meanwhile is not in it, none is in it twice) and memory stays flat
        however many clicks there are. The connection is held until the last row is sent (or the client
        goes): the export slots bound how many are.
        """
        out = CsvBuffer(CLICK_FIELDS)
        sql = _ALL.format(columns=_COLUMNS, conditions=query.conditions)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in conn.cursor(sql, link_id, *query.args, prefetch=_FETCH_ROWS):
                out.write(click_cells(row))
                if out.size >= _CHUNK_CHARS:
                    yield out.take()
        yield out.take()
