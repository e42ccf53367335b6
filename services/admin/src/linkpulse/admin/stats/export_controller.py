"""HTTP handlers of the stats as CSV (scope `stats:read`): the same queries as the JSON answers, flattened.

The JSON export is the JSON answers themselves (`/stats`, `/stats/overview`); these render the very answer
they compute with the pure functions of `export`, so the CSV and the JSON of one query always agree.
"""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency, Provide
from litestar.status_codes import HTTP_200_OK

from linkpulse.admin.api import SLOW_QUERY_HANDLERS, csv_response, error_responses
from linkpulse.admin.auth import STATS_READ, authenticated, requires
from linkpulse.admin.stats.controller import (
    From,
    IntervalParam,
    Limit,
    To,
    Tz,
    answer_link_stats,
    answer_overview,
    provide_stats_service,
)
from linkpulse.admin.stats.events_controller import Code
from linkpulse.admin.stats.export import (
    OVERVIEW_COLUMNS,
    SERIES_COLUMNS,
    TOP_COLUMNS,
    attachment,
    overview_csv,
    series_csv,
    top_csv,
)
from linkpulse.admin.stats.filters import Filters, provide_filters
from linkpulse.admin.stats.service import StatsService

__all__ = ["StatsExportController"]


def _csv(text: str, filename: str) -> Response[str]:
    # Litestar adds the charset (utf-8) to a text/* response; a Stream keeps its media type as given.
    return Response(text, media_type="text/csv", headers=attachment(filename))


class StatsExportController(Controller):
    """A link's series and top lists, and the overview's top links, as CSV downloads."""

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
        "/links/{code:str}/stats/series.csv",
        operation_id="exportLinkSeriesCsv",
        summary="The series of a link's stats as CSV",
        description=(
            "`series` of `GET /api/v1/links/{code}/stats` with the same parameters: every bucket of the window,"
            " oldest first, zero-filled; `ts` is the bucket's start."
        ),
        media_type="text/csv",
        responses={
            HTTP_200_OK: csv_response("CSV with a header row: " + ", ".join(SERIES_COLUMNS) + "; a row per bucket."),
            **error_responses(401, 403, 404, 422, 503),
        },
    )
    async def series(
        self,
        code: Code,
        stats: NamedDependency[StatsService],
        filters: NamedDependency[Filters],
        start: From = None,
        end: To = None,
        interval: IntervalParam = None,
        tz: Tz = None,
    ) -> Response[str]:
        """The series of the link's stats answer, rendered by `series_csv`."""
        result = await answer_link_stats(stats, code, filters, start, end, interval, tz)
        return _csv(series_csv(result), f"{code}-series.csv")

    @get(
        "/links/{code:str}/stats/top.csv",
        operation_id="exportLinkTopCsv",
        summary="The top lists of a link's stats as CSV",
        description=(
            "`top` of `GET /api/v1/links/{code}/stats` with the same parameters, a row per value: `dimension` is"
            " the name its filter parameter takes (`country`, `referrer`, ...), `rank` counts from 1, `value` is"
            " empty for unknown."
        ),
        media_type="text/csv",
        responses={
            HTTP_200_OK: csv_response("CSV with a header row: " + ", ".join(TOP_COLUMNS) + "; by dimension, rank."),
            **error_responses(401, 403, 404, 422, 503),
        },
    )
    async def top(
        self,
        code: Code,
        stats: NamedDependency[StatsService],
        filters: NamedDependency[Filters],
        start: From = None,
        end: To = None,
        interval: IntervalParam = None,
        tz: Tz = None,
    ) -> Response[str]:
        """The top lists of the link's stats answer, rendered by `top_csv`."""
        result = await answer_link_stats(stats, code, filters, start, end, interval, tz)
        return _csv(top_csv(result), f"{code}-top.csv")

    @get(
        "/stats/overview.csv",
        operation_id="exportStatsOverviewCsv",
        summary="The top links of the overview as CSV",
        description=(
            "`top_links` of `GET /api/v1/stats/overview` with the same parameters: links by human clicks, then bot"
            " clicks, then code."
        ),
        media_type="text/csv",
        responses={
            HTTP_200_OK: csv_response("CSV with a header row: " + ", ".join(OVERVIEW_COLUMNS) + "; by clicks."),
            **error_responses(401, 403, 422, 503),
        },
    )
    async def overview(
        self,
        stats: NamedDependency[StatsService],
        start: From = None,
        end: To = None,
        limit: Limit = None,
        tz: Tz = None,
    ) -> Response[str]:
        """The top links of the overview answer, rendered by `overview_csv`."""
        return _csv(overview_csv(await answer_overview(stats, start, end, limit, tz)), "overview.csv")
