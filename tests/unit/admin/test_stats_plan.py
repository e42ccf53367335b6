"""Which table serves each part of a link's stats: rollups wherever they can, the clicks only where they must."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from linkpulse.admin.stats.filters import provide_filters
from linkpulse.admin.stats.service import Plan, plan
from linkpulse.admin.stats.window import parse_tz, series_window

NOW = datetime(2026, 11, 20, 10, 15, 30, tzinfo=UTC)
THIRTY_DAYS = ("2026-10-20", "2026-11-19")


def plan_of(interval: str, tz: str = "UTC", **filters: str) -> Plan:
    window = series_window(*THIRTY_DAYS, interval, NOW, parse_tz(tz))
    return plan(window, window.boundaries(), provide_filters(**filters))


@pytest.mark.parametrize("interval", ["hour", "day"])
def test_thirty_days_with_at_most_one_filter_have_a_rollup_series(interval: str) -> None:
    assert plan_of(interval).series == f"clicks_{interval}"
    assert plan_of(interval, country="DE").series == ("dimension_day" if interval == "day" else "dimension_hour")


def test_unfiltered_utc_stats_read_no_click_for_series_top_lists_or_day_visitors() -> None:
    assert plan_of("day") == Plan("clicks_day", False, "day_counts", ())
    # Hour visitors are distinct counts of an hour's keys: no rollup holds them (as before tz and filters).
    assert plan_of("hour") == Plan("clicks_hour", False, "trunc_hour", ())


def test_local_days_are_summed_from_the_finest_rollup_they_are_made_of() -> None:
    assert plan_of("day", "Europe/Berlin").series == "bucketed_hour"
    assert plan_of("day", "Asia/Kolkata").series == "bucketed_minute"
    assert plan_of("hour", "Asia/Kathmandu").series == "bucketed_minute"
    # Berlin's hours are UTC hours: the hour rollup as stored.
    assert plan_of("hour", "Europe/Berlin").series == "clicks_hour"
    assert plan_of("day", "Europe/Berlin", device="mobile").series == "dimension_hour"
    # No dimension rollup per minute: a filtered Kolkata day is counted from the clicks.
    assert plan_of("day", "Asia/Kolkata", device="mobile").series == "clicks"


def test_what_no_rollup_holds_is_counted_from_the_clicks() -> None:
    two = plan_of("day", country="DE", device="mobile")
    assert (two.series, two.top_from_clicks, two.visitors, two.filtered) == ("clicks", True, "clicks",
                                                                              ("country", "device"))  # fmt: skip
    window = series_window("2026-11-19T10:00:00Z", "2026-11-19T12:00:00Z", "minute", NOW)
    assert plan(window, window.boundaries(), provide_filters(lang="de")).series == "clicks"
    # Local days' visitors: a local day holds parts of two UTC days' keys.
    assert plan_of("day", "Europe/Berlin").visitors == "clicks"
    # London in winter is UTC: its days are stored days.
    window = series_window("2026-11-01", "2026-11-19", "day", NOW, ZoneInfo("Europe/London"))
    assert plan(window, window.boundaries(), ()) == Plan("clicks_day", False, "day_counts", ())
