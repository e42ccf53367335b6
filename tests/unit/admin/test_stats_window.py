"""Stats query windows: parsing, interval choice and limits, alignment to buckets in UTC or a timezone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from linkpulse.admin.stats.window import (
    EARLIEST,
    LATEST,
    MAX_POINTS,
    Window,
    ceil_to,
    floor_to,
    overview_window,
    parse_limit,
    parse_time,
    parse_tz,
    series_window,
)
from linkpulse.validation import InvalidInput

NOW = datetime(2026, 11, 20, 10, 15, 30, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T10:00:00Z", utc(2026, 11, 20, 10)),
        ("2026-11-20T10:00:00+01:00", utc(2026, 11, 20, 9)),
        # An unencoded "+" in a query string arrives as a space.
        ("2026-11-20T10:00:00 01:00", utc(2026, 11, 20, 9)),
        ("2026-11-20T10:00:00.250-02:30", utc(2026, 11, 20, 12, 30, 0, 250000)),
        ("2026-11-20", utc(2026, 11, 20)),
    ],
)
def test_times_with_a_timezone_or_dates_parse_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text, "from")
    assert parsed == expected and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("yesterday", "from: not an ISO 8601 time"),
        ("2026-13-01", "from: not a valid date"),
        ("2026-11-20T10:00:00", "from: give a timezone"),
        ("", "from: not an ISO 8601 time"),
        ("1700000000", "from: not an ISO 8601 time"),
    ],
)
def test_bad_times_name_the_parameter(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_time(text, "from")


def test_buckets_are_utc_and_half_open() -> None:
    hour = timedelta(hours=1)
    assert floor_to(utc(2026, 11, 20, 10, 59, 59), hour) == utc(2026, 11, 20, 10)
    assert ceil_to(utc(2026, 11, 20, 10, 0, 1), hour) == utc(2026, 11, 20, 11)
    assert ceil_to(utc(2026, 11, 20, 10), hour) == utc(2026, 11, 20, 10)
    assert floor_to(utc(2026, 11, 20, 23, 59), timedelta(days=1)) == utc(2026, 11, 20)


def test_defaults_are_the_last_seven_days_by_hour() -> None:
    # 168 hours fit in 1000 points, 10080 minutes do not; the current hour is included.
    window = series_window(None, None, None, NOW)
    assert window == Window(utc(2026, 11, 13, 10), utc(2026, 11, 20, 11), "hour")
    assert window.points == 169


def test_the_default_interval_is_the_finest_within_the_point_limit() -> None:
    assert series_window("2026-11-20T00:00:00Z", "2026-11-20T16:40:00Z", None, NOW).interval == "minute"  # 1000
    assert series_window("2026-11-20T00:00:00Z", "2026-11-20T16:41:00Z", None, NOW).interval == "hour"
    assert series_window("2026-01-01", "2026-11-20", None, NOW).interval == "day"
    with pytest.raises(InvalidInput, match="too long"):
        series_window("2020-01-01", "2026-11-20", None, NOW)


def test_an_explicit_interval_widens_the_window_to_whole_buckets() -> None:
    window = series_window("2026-11-20T10:15:30Z", "2026-11-20T12:00:01Z", "hour", NOW)
    assert window == Window(utc(2026, 11, 20, 10), utc(2026, 11, 20, 13), "hour")
    # `to` defaults to now, `from` to seven days before `to`.
    assert series_window(None, "2026-11-10", "day", NOW) == Window(utc(2026, 11, 3), utc(2026, 11, 10), "day")


@pytest.mark.parametrize(
    ("start", "end", "interval", "reason"),
    [
        ("2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z", None, "from must be before to"),
        ("2026-11-21", "2026-11-20", "day", "from must be before to"),
        ("2026-11-21", None, None, "from must be before to"),
        ("2026-11-20", "2026-11-21", "week", "interval: must be one of minute, hour, day"),
        ("2026-11-20", "2026-11-21", "", "interval: must be one of"),
        ("2026-11-01", "2026-11-20", "minute", f"at most {MAX_POINTS}"),
        (None, "0001-01-02", "day", "out of range"),
        ("9999-12-31T23:59:00Z", "9999-12-31T23:59:30Z", "day", "out of range"),
    ],
)
def test_bad_windows_are_refused(start: str | None, end: str | None, interval: str | None, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        series_window(start, end, interval, NOW)


def test_overview_windows_are_whole_hours() -> None:
    assert overview_window("2026-11-19T22:30:00Z", None, NOW) == (utc(2026, 11, 19, 22), utc(2026, 11, 20, 11))
    with pytest.raises(InvalidInput, match="from must be before to"):
        overview_window("2026-11-21", None, NOW)


@pytest.mark.parametrize(("text", "expected"), [(None, 10), ("1", 1), ("100", 100), (" 7 ", 7)])
def test_limits(text: str | None, expected: int) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize("text", ["0", "101", "-1", "ten", "", "1.5", "٣", "9" * 5000])
def test_bad_limits_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="limit: must be an integer from 1 to 100"):
        parse_limit(text)


# Near the ends of datetime's range (issue 19): every time is refused with a 422 reason, never an
# OverflowError (a 500) while parsing, aligning, or widening to the days the dimension rollups cover.
@pytest.mark.parametrize(
    ("start", "end", "interval", "reason"),
    [
        (None, "9999-12-31T23:00:00-02:00", None, "to: out of range"),
        ("9999-12-31T23:00:00-02:00", None, None, "from: out of range"),
        ("9999-12-31T20:00:00Z", "9999-12-31T22:30:00Z", None, "to: out of range"),
        ("9999-12-31T20:00:00Z", "9999-12-31T22:30:00Z", "minute", "to: out of range"),
        ("0001-01-01T00:00:00+01:00", "0001-01-03", None, "from: out of range"),
        ("0001-01-01T00:30:00Z", "0001-01-02T00:00:00Z", "day", "from: out of range"),
        ("0001-01-01", "0001-01-03", None, "from: out of range"),
        (None, "0001-01-03", None, "from: out of range"),
    ],
)
def test_times_at_the_ends_of_the_calendar_are_refused(
    start: str | None, end: str | None, interval: str | None, reason: str
) -> None:
    with pytest.raises(InvalidInput, match=reason):
        series_window(start, end, interval, NOW)
    if interval is None:
        with pytest.raises(InvalidInput, match=reason):
            overview_window(start, end, NOW)


def test_the_first_and_last_days_allowed_widen_without_overflow() -> None:
    assert series_window("0001-01-02T00:30:00Z", "0001-01-02T01:00:00Z", "day", NOW) == Window(
        EARLIEST, EARLIEST + timedelta(days=1), "day"
    )
    assert series_window("9999-12-30T22:30:00Z", "9999-12-31", "day", NOW) == Window(
        LATEST - timedelta(days=1), LATEST, "day"
    )
    assert overview_window("9999-12-30T22:30:00Z", "9999-12-31", NOW) == (
        datetime(9999, 12, 30, 22, tzinfo=UTC),
        LATEST,
    )


BERLIN, KOLKATA, KATHMANDU = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Asia/Kathmandu")


def spans(window: Window) -> list[timedelta]:
    bounds = window.boundaries()
    return [b - a for a, b in pairwise(bounds)]


def test_tz_defaults_to_utc_and_takes_iana_names() -> None:
    assert parse_tz(None).key == parse_tz("UTC").key == "UTC"
    assert parse_tz(" Europe/Berlin ") == BERLIN
    assert parse_tz("America/Argentina/Buenos_Aires").key == "America/Argentina/Buenos_Aires"


@pytest.mark.parametrize(
    "text",
    ["Mars/Olympus_Mons", "europe/berlin", "", "Europe", "../../etc/passwd", "/etc/localtime", "localtime",
     "Europe/Berlin\x00", "Europe//Berlin", "E" * 65, "Europe/" + "B" * 5000],
)  # fmt: skip
def test_unknown_or_malformed_tz_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="tz: not an IANA timezone name"):
        parse_tz(text)


def test_dates_are_local_midnight_in_the_tz() -> None:
    assert parse_time("2026-11-20", "from", BERLIN) == utc(2026, 11, 19, 23)
    assert parse_time("2026-07-20", "from", BERLIN) == utc(2026, 7, 19, 22)
    assert parse_time("2026-11-20", "from", KOLKATA) == utc(2026, 11, 19, 18, 30)
    # A time with an offset means what it says, whatever the tz.
    assert parse_time("2026-11-20T10:00:00Z", "from", KOLKATA) == utc(2026, 11, 20, 10)


def test_local_days_are_23_and_25_hours_across_dst() -> None:
    spring = series_window("2026-03-28", "2026-03-31", "day", NOW, BERLIN)
    assert (spring.start, spring.end, spring.points) == (utc(2026, 3, 27, 23), utc(2026, 3, 30, 22), 3)
    assert spans(spring) == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]
    autumn = series_window("2026-10-24", "2026-10-27", "day", NOW, BERLIN)
    assert spans(autumn) == [timedelta(hours=24), timedelta(hours=25), timedelta(hours=24)]
    assert autumn.boundaries()[1:3] == [utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)]


def test_a_local_day_window_is_widened_to_local_midnights() -> None:
    window = series_window("2026-10-25T12:00:00Z", "2026-10-25T23:30:00Z", "day", NOW, BERLIN)
    # 23:30Z is already 00:30 on the 26th in Berlin: the window runs to the end of that day.
    assert (window.start, window.end) == (utc(2026, 10, 24, 22), utc(2026, 10, 26, 23))


def test_a_skipped_midnight_starts_the_day_at_one() -> None:
    # Santiago moved its clocks from 24:00 to 01:00 on 2026-09-06: that day starts at 01:00 local, 04:00Z.
    window = series_window("2026-09-06", "2026-09-07", "day", NOW, ZoneInfo("America/Santiago"))
    assert (window.start, window.end) == (utc(2026, 9, 6, 4), utc(2026, 9, 7, 3))


def test_kolkata_and_kathmandu_hours_and_days_start_off_the_utc_hour() -> None:
    days = series_window("2026-11-11", "2026-11-13", "day", NOW, KOLKATA)
    assert days.boundaries() == [utc(2026, 11, 10, 18, 30), utc(2026, 11, 11, 18, 30), utc(2026, 11, 12, 18, 30)]
    hours = series_window("2026-11-11T10:00:00Z", "2026-11-11T12:00:00Z", "hour", NOW, KATHMANDU)
    assert hours.boundaries() == [utc(2026, 11, 11, 9, 15), utc(2026, 11, 11, 10, 15), utc(2026, 11, 11, 11, 15),
                                  utc(2026, 11, 11, 12, 15)]  # fmt: skip
    # Whole-hour zones keep UTC hours, DST or not.
    assert series_window("2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z", "hour", NOW, BERLIN).boundaries() == [
        utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)
    ]  # fmt: skip


def test_the_default_interval_counts_local_days() -> None:
    # 1000 local days fit, whatever their length.
    assert series_window("2024-01-01", "2026-09-27", None, NOW, BERLIN).interval == "day"
    assert series_window("2024-01-01", "2026-09-27", None, NOW, BERLIN).points == 1000
    with pytest.raises(InvalidInput, match="the window is too long"):
        series_window("2024-01-01", "2026-09-28", None, NOW, BERLIN)


def test_overview_dates_are_local_midnights_floored_to_utc_hours() -> None:
    assert overview_window("2026-11-20", "2026-11-21", NOW, BERLIN) == (utc(2026, 11, 19, 23), utc(2026, 11, 20, 23))
    assert overview_window("2026-11-20", "2026-11-21", NOW, KOLKATA) == (utc(2026, 11, 19, 18), utc(2026, 11, 20, 19))


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu", "America/St_Johns"])
@pytest.mark.parametrize(
    ("start", "end"),
    [("9999-12-30", "9999-12-31"), ("9999-12-30T20:00:00Z", "9999-12-31T00:00:00Z"), ("0001-01-02", "0001-01-04"),
     ("0001-01-02T00:00:00Z", "0001-01-02T05:00:00Z")],
)  # fmt: skip
@pytest.mark.parametrize("interval", ["minute", "hour", "day", None])
def test_a_tz_at_the_ends_of_the_calendar_answers_or_refuses_never_overflows(
    tz: str, start: str, end: str, interval: str | None
) -> None:
    try:
        window = series_window(start, end, interval, NOW, ZoneInfo(tz))
    except InvalidInput as exc:
        assert "out of range" in str(exc) or "points" in str(exc) or "too long" in str(exc)
        return
    bounds = window.boundaries()
    assert len(bounds) == window.points + 1 and bounds == sorted(set(bounds))
    assert all(b.astimezone(window.tz) for b in bounds)
