"""Stats query windows, without I/O: parse `from`/`to`, pick or check the interval, align to buckets.

Rollup buckets are UTC minutes, hours and days, so a window is widened to whole buckets of its
interval: what the answer counts is exactly the clicks in its (echoed) `[from, to)`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal, NamedTuple, get_args

from linkpulse.validation import InvalidInput

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_SPAN",
    "EARLIEST",
    "INTERVALS",
    "LATEST",
    "MAX_LIMIT",
    "MAX_POINTS",
    "STEPS",
    "Interval",
    "Window",
    "ceil_to",
    "floor_to",
    "overview_window",
    "parse_limit",
    "parse_time",
    "series_window",
]

Interval = Literal["minute", "hour", "day"]
INTERVALS: Final[tuple[Interval, ...]] = get_args(Interval)
STEPS: Final[dict[Interval, timedelta]] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
MAX_POINTS: Final = 1000
"""Most series points one answer holds; the default interval is the finest that stays within it."""
DEFAULT_SPAN: Final = timedelta(days=7)
"""Window length when `from` is not given (it ends at `to`, default now)."""
DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 100
EARLIEST: Final = datetime(1, 1, 2, tzinfo=UTC)
LATEST: Final = datetime(9999, 12, 31, tzinfo=UTC)
"""The times `from` and `to` may take: a day inside datetime's range at either end, so that widening
a window to whole days (the dimension rollups' granularity) can never overflow."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# An unencoded "+01:00" in a query string arrives as " 01:00"; put the plus back.
_SPACED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")
_ECHO_CHARS = 64


class Window(NamedTuple):
    """A bucket-aligned, half-open time window `[start, end)` and its series interval."""

    start: datetime
    end: datetime
    interval: Interval

    @property
    def points(self) -> int:
        """Buckets of `interval` in the window."""
        return (self.end - self.start) // STEPS[self.interval]


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 time with a timezone (`2026-11-20T10:00:00Z`, `…+01:00`) or a date (midnight UTC), in UTC.

    Raises:
        InvalidInput: not ISO 8601, a date-time without a timezone (ambiguous), or outside
            `EARLIEST`..`LATEST`.
    """
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{name}: not a valid date: {text[:_ECHO_CHARS]!r}") from None
        return _in_range(datetime.combine(day, time(), UTC), name)
    value = _SPACED_OFFSET.sub(r"\1+\2", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{name}: not an ISO 8601 time (like 2026-11-20T10:00:00Z): {text[:_ECHO_CHARS]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{name}: give a timezone, such as Z or +01:00: {text[:_ECHO_CHARS]!r}")
    try:
        in_utc = parsed.astimezone(UTC)  # 9999-12-31T23:00-02:00 is past datetime's range in UTC
    except OverflowError:
        raise InvalidInput(_out_of_range(name)) from None
    return _in_range(in_utc, name)


def floor_to(ts: datetime, step: timedelta) -> datetime:
    """The start of the UTC bucket of `step` holding `ts`."""
    return _EPOCH + (ts - _EPOCH) // step * step


def ceil_to(ts: datetime, step: timedelta) -> datetime:
    """`ts` when it starts a bucket of `step`, else the start of the next one."""
    floor = floor_to(ts, step)
    return floor if floor == ts else floor + step


def series_window(start: str | None, end: str | None, interval: str | None, now: datetime) -> Window:
    """The window of a link's stats query, widened to whole buckets of its interval.

    Defaults: `to` = now, `from` = `to` - 7 days, interval the finest giving at most 1000 points.

    Raises:
        InvalidInput: a bad time or interval, `from` not before `to`, or too many points (422).
    """
    lo, hi = _bounds(start, end, now)
    if interval is None:
        for name in INTERVALS:
            window = _aligned(lo, hi, name)
            if window.points <= MAX_POINTS:
                return window
        raise InvalidInput(f"the window is too long: at most {MAX_POINTS} days")
    if interval not in STEPS:
        raise InvalidInput(f"interval: must be one of {', '.join(INTERVALS)}, not {interval[:_ECHO_CHARS]!r}")
    window = _aligned(lo, hi, interval)  # type: ignore[arg-type]  # checked just above
    if window.points > MAX_POINTS:
        raise InvalidInput(
            f"interval: {window.points} {interval} points, at most {MAX_POINTS}: "
            "use a coarser interval or a shorter window"
        )
    return window


def overview_window(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The window of an overview query, widened to whole UTC hours (the finest rollup it reads).

    Raises:
        InvalidInput: a bad time, or `from` not before `to` (422).
    """
    window = _aligned(*_bounds(start, end, now), "hour")
    return window.start, window.end


def parse_limit(text: str | None) -> int:
    """How many top links to return: 1 to 100, 10 when not given.

    Raises:
        InvalidInput: not an integer in that range (422).
    """
    if text is None:
        return DEFAULT_LIMIT
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 3 and 1 <= int(value) <= MAX_LIMIT):
        raise InvalidInput(f"limit: must be an integer from 1 to {MAX_LIMIT}, not {text[:_ECHO_CHARS]!r}")
    return int(value)


def _bounds(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    hi = parse_time(end, "to") if end is not None else now
    if start is not None:
        lo = parse_time(start, "from")
    elif hi - EARLIEST >= DEFAULT_SPAN:
        lo = hi - DEFAULT_SPAN
    else:
        raise InvalidInput(f"{_out_of_range('from')}: the default, 7 days before to, is earlier; give from")
    if lo >= hi:
        raise InvalidInput("from must be before to")
    return lo, hi


def _in_range(ts: datetime, name: str) -> datetime:
    if not EARLIEST <= ts <= LATEST:
        raise InvalidInput(_out_of_range(name))
    return ts


def _out_of_range(name: str) -> str:
    return f"{name}: out of range, must lie between {EARLIEST.date()} and {LATEST.date()} (UTC)"


def _aligned(lo: datetime, hi: datetime, interval: Interval) -> Window:
    step = STEPS[interval]
    return Window(floor_to(lo, step), ceil_to(hi, step), interval)
