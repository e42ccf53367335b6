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

from linkpulse.admin.api import error_responses
from linkpulse.admin.auth import STATS_READ, authenticated, requires
from linkpulse.admin.stats.schemas import LinkStats, Overview
from linkpulse.admin.stats.service import StatsService
from linkpulse.admin.stats.window import INTERVALS, overview_window, parse_limit, series_window
from linkpulse.validation import InvalidInput

__all__ = ["StatsController", "provide_stats_service"]

# Query values arrive as strings and are parsed by `window`, so every bad value is a 422 naming
# the parameter (Litestar's own conversion would answer 400).
_TIME = "ISO 8601 with a timezone (`2026-11-20T10:00:00Z`) or a date (`2026-11-20`, midnight UTC)."
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


def provide_stats_service(state: State) -> StatsService:
    """A StatsService over the app's pool."""
    return StatsService(state.db)


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
    security = [{"apiKey": []}]
    dependencies = {"stats": Provide(provide_stats_service, sync_to_thread=False)}

    @get(
        "/links/{code:str}/stats",
        operation_id="getLinkStats",
        summary="Clicks of a link: series, totals and top values",
        responses=error_responses(401, 403, 404, 422),
    )
    async def link_stats(
        self,
        code: FromPath[str],
        stats: NamedDependency[StatsService],
        start: From = None,
        end: To = None,
        interval: IntervalParam = None,
    ) -> LinkStats:
        """Human clicks per bucket of `[from, to)` and their total, bots apart, top 10 per dimension.

        The window is widened to whole UTC buckets of the interval and echoed; the top lists cover
        the UTC days it touches.
        """
        try:
            window = series_window(start, end, interval, datetime.now(UTC))
        except InvalidInput as exc:
            raise _invalid(exc) from None
        result = await stats.link_stats(code, window)
        if result is None:
            raise NotFoundException(detail=f"no link with code {code!r}")
        return result

    @get(
        "/stats/overview",
        operation_id="getStatsOverview",
        summary="Clicks of all links in a window and the top links",
        responses=error_responses(401, 403, 422),
    )
    async def overview(
        self, stats: NamedDependency[StatsService], start: From = None, end: To = None, limit: Limit = None
    ) -> Overview:
        """Human and bot clicks of every link in `[from, to)` (whole UTC hours), links by clicks."""
        try:
            lo, hi = overview_window(start, end, datetime.now(UTC))
            top = parse_limit(limit)
        except InvalidInput as exc:
            raise _invalid(exc) from None
        return await stats.overview(lo, hi, top)
