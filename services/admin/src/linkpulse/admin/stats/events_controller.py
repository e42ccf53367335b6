"""HTTP handlers of a link's clicks (scope `stats:read`): a page as JSON, all of them as streamed CSV."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_422_UNPROCESSABLE_ENTITY

from linkpulse.admin.api import SLOW_QUERY_HANDLERS, csv_response, error_responses
from linkpulse.admin.auth import STATS_READ, authenticated, requires
from linkpulse.admin.limits import BoundedStream, RequestLimits
from linkpulse.admin.stats.events import (
    DEFAULT_PAGE,
    MAX_PAGE,
    EventsService,
    decode_cursor,
    events_query,
    parse_page_limit,
)
from linkpulse.admin.stats.events_schemas import CLICK_FIELDS, ClickPage
from linkpulse.admin.stats.export import CSV_MEDIA_TYPE, attachment
from linkpulse.admin.stats.filters import Filters, provide_filters
from linkpulse.validation import InvalidInput

__all__ = ["EventsController", "provide_events_service"]

# Query values arrive as strings and are parsed here, so every bad value is a 422 naming the parameter.
_TIME = "ISO 8601 with a timezone (`2026-11-20T10:00:00Z`) or a date (`2026-11-20`, midnight UTC)."
From = Annotated[
    str | None, QueryParameter(name="from", description=f"Only clicks at or after this time; default none. {_TIME}")
]
To = Annotated[
    str | None, QueryParameter(name="to", description=f"Only clicks before this time; default none. {_TIME}")
]
Limit = Annotated[
    str | None,
    QueryParameter(
        name="limit",
        description=f"Clicks per page, 1 to {MAX_PAGE} (default {DEFAULT_PAGE}).",
        schema_extra={"pattern": "^[0-9]{1,4}$"},
    ),
]
Cursor = Annotated[
    str | None,
    QueryParameter(
        name="cursor",
        description="Where to go on: the `next_cursor` of the previous page (opaque); the newest page without it.",
    ),
]


Code = Annotated[str, PathParameter(description="The link's short code.")]


def provide_events_service(state: State) -> EventsService:
    """An EventsService over the app's pool."""
    return EventsService(state.db)


def _invalid(exc: InvalidInput) -> ValidationException:
    return ValidationException(detail=str(exc), status_code=HTTP_422_UNPROCESSABLE_ENTITY)


def _not_found(code: str) -> NotFoundException:
    return NotFoundException(detail=f"no link with code {code!r}")


class EventsController(Controller):
    """A link's stored clicks, one by one, with what ingest learnt of each (the raw data behind the stats)."""

    path = "/api/v1"
    tags = ["stats"]
    guards = [authenticated, requires(STATS_READ)]
    exception_handlers = SLOW_QUERY_HANDLERS
    security = [{"apiKey": []}]
    dependencies = {
        "events": Provide(provide_events_service, sync_to_thread=False),
        "filters": Provide(provide_filters, sync_to_thread=False),
    }

    @get(
        "/links/{code:str}/events",
        operation_id="listLinkEvents",
        summary="Clicks of a link, newest first, a page at a time",
        description=(
            "Stored clicks of the link in `[from, to)` matching the filters, bots included (`bot`), by time then id,"
            " newest first. Follow `next_cursor` until it is null to read them all; clicks stored meanwhile are"
            " newer than the walk and never shift it. Clicks older than the retention period are gone (the stats"
            " keep counting them)."
        ),
        response_description="A page of clicks and the cursor of the next one",
        responses=error_responses(401, 403, 404, 422, 503),
    )
    async def list_events(
        self,
        code: Code,
        events: NamedDependency[EventsService],
        filters: NamedDependency[Filters],
        start: From = None,
        end: To = None,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> ClickPage:
        """A page of the link's clicks below `cursor` (the newest without one)."""
        try:
            size = parse_page_limit(limit)
            after = decode_cursor(cursor) if cursor is not None else None
            query = events_query(start, end, filters, first_arg=3, after=after)
        except InvalidInput as exc:
            raise _invalid(exc) from None
        page = await events.page(code, query, size)
        if page is None:
            raise _not_found(code)
        return page

    @get(
        "/links/{code:str}/events.csv",
        operation_id="exportLinkEventsCsv",
        summary="Every click of a link as CSV, streamed",
        description=(
            "The clicks the events list would walk through (same window and filters), all of them in one file, one"
            " snapshot, newest first. The columns are the fields of a click in the events list; a cell starting"
            " with `=`, `+`, `-`, `@`, tab or CR gets a `'` in front, so a spreadsheet shows it as text."
        ),
        media_type="text/csv",
        responses={
            HTTP_200_OK: csv_response("CSV with a header row: " + ", ".join(CLICK_FIELDS) + "; newest first."),
            **error_responses(401, 403, 404, 422, 503),
        },
    )
    async def export_events(
        self,
        code: Code,
        events: NamedDependency[EventsService],
        filters: NamedDependency[Filters],
        limits: NamedDependency[RequestLimits],
        start: From = None,
        end: To = None,
    ) -> BoundedStream:
        """Every click the events list would walk through, streamed from one snapshot."""
        # Everything is checked before the stream starts: once it has, a failure can only cut the file short.
        try:
            query = events_query(start, end, filters, first_arg=2)
        except InvalidInput as exc:
            raise _invalid(exc) from None
        link_id = await events.link_id(code)
        if link_id is None:
            raise _not_found(code)
        return BoundedStream(
            events.csv(link_id, query),
            release=limits.export.take(),
            send_timeout=limits.export_send_timeout,
            media_type=CSV_MEDIA_TYPE,
            headers=attachment(f"{code}-events.csv"),
        )
