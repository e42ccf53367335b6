"""HTTP handlers of link stats and the overview (scope `stats:read`); windows in `window`, SQL in `service`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

from linkpulse.admin.api import SLOW_QUERY_HANDLERS, error_responses
from linkpulse.admin.auth import STATS_READ, authenticated, requires
from linkpulse.admin.stats.filters import Filters, provide_filters
from linkpulse.admin.stats.schemas import LinkStats, Overview
from linkpulse.admin.stats.service import StatsService
from linkpulse.admin.stats.window import (
    INTERVALS,
    MAX_TZ_CHARS,
    overview_window,
    parse_limit,
    parse_tz,
    series_window,
)
from linkpulse.validation import InvalidInput

__all__ = ["StatsController", "provide_stats_service"]

# Query values arrive as strings and are parsed by `window`, so every bad value is a 422 naming
# the parameter (Litestar's own conversion would answer 400).
_TIME = "ISO 8601 with a timezone (`2026-11-20T10:00:00Z`) or a date (`2026-11-20`, midnight in `tz`)."
From = Annotated[
    str | None, QueryParameter(name="from", description=f"Window start, inclusive; default `to` - 7 days. {_TIME}")
]
To = Annotated[str | None, QueryParameter(name="to", description=f"Window end, exclusive; default now. {_TIME}")]
IntervalParam = Annotated[
    str | None,
    QueryParameter(
        name="interval",
        description="Series step; default the finest giving at most 1000 points.",
        schema_extra={"enum": list(INTERVALS)},
    ),
]
Limit = Annotated[str | None, QueryParameter(name="limit", description="Top links to list, 1 to 100 (default 10).")]
Tz = Annotated[
    str | None,
    QueryParameter(
        name="tz",
        description=f"IANA timezone name (`Europe/Berlin`, at most {MAX_TZ_CHARS} characters), default UTC: day "
        "buckets are its calendar days (23 or 25 hours across a DST change), hours its hours, dates in `from`/`to` "
        "its midnights, and every time in the answer carries its offset.",
    ),
]


def provide_stats_service(state: State) -> StatsService:
    """A StatsService over the app's pool."""
    return StatsService(state.db)


async def answer_link_stats(
    stats: StatsService,
    code: str,
    filters: Filters,
    start: str | None,
    end: str | None,
    interval: str | None,
    tz: str | None,
) -> LinkStats:
    """The answer of `GET /links/{code}/stats` to these raw parameters: the JSON handler's, and the CSVs' too."""
    try:
        zone = parse_tz(tz)
        window = series_window(start, end, interval, datetime.now(UTC), zone)
    except InvalidInput as exc:
        raise _invalid(exc) from None
    result = await stats.link_stats(code, window, filters)
    if result is None:
        raise NotFoundException(detail=f"no link with code {code!r}")
    return result


async def answer_overview(
    stats: StatsService, start: str | None, end: str | None, limit: str | None, tz: str | None
) -> Overview:
    """The answer of `GET /stats/overview` to these raw parameters: the JSON handler's, and the CSV's too."""
    try:
        zone = parse_tz(tz)
        lo, hi = overview_window(start, end, datetime.now(UTC), zone)
        top = parse_limit(limit)
    except InvalidInput as exc:
        raise _invalid(exc) from None
    return await stats.overview(lo, hi, top, zone)


def _invalid(exc: InvalidInput) -> ValidationException:
    return ValidationException(detail=str(exc), status_code=HTTP_422_UNPROCESSABLE_ENTITY)


class StatsController(Controller):
    """Click stats served from the rollups.

    Mounted at `/api/v1` rather than `/api/v1/links`: `/links/{code}/stats` is one segment deeper
    than the links controller's `/links/{code}`, so the two never match the same path.
    """

    path = "/api/v1"
    tags = ["stats"]
    guards = [authenticated, requires(STATS_READ)]
    exception_handlers = SLOW_QUERY_HANDLERS
    security = [{"apiKey": []}]
    dependencies = {
        "stats": Provide(provide_stats_service, sync_to_thread=False),
        "filters": Provide(provide_filters, sync_to_thread=False),
    }

    @get(
        "/links/{code:str}/stats",
        operation_id="getLinkStats",
        summary="Clicks of a link: series, totals and top values",
        responses=error_responses(401, 403, 404, 422, 503),
    )
    async def link_stats(
        self,
        code: FromPath[str],
        stats: NamedDependency[StatsService],
        filters: NamedDependency[Filters],
        start: From = None,
        end: To = None,
        interval: IntervalParam = None,
        tz: Tz = None,
    ) -> LinkStats:
        """Human clicks per bucket of `[from, to)` and their total, bots apart, top 10 per dimension, of the clicks
        matching every filter given (`?country=DE&device=mobile`).

        The window is widened to whole buckets of the interval in `tz` and echoed; the top lists cover exactly
        the window (a minute window's, whole UTC hours). `as_of` and `ingest_lag` say how fresh the answer is.
        """
        return await answer_link_stats(stats, code, filters, start, end, interval, tz)

    @get(
        "/stats/overview",
        operation_id="getStatsOverview",
        summary="Clicks of all links in a window and the top links",
        responses=error_responses(401, 403, 422, 503),
    )
    async def overview(
        self,
        stats: NamedDependency[StatsService],
        start: From = None,
        end: To = None,
        limit: Limit = None,
        tz: Tz = None,
    ) -> Overview:
        """Human and bot clicks of every link in `[from, to)` (whole UTC hours), links by clicks, top countries
        and cities; `as_of` and `ingest_lag` say how fresh the answer is."""
        return await answer_overview(stats, start, end, limit, tz)
