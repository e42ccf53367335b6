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
    "INTERVALS",
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
        InvalidInput: not ISO 8601, or a date-time without a timezone (ambiguous).
    """
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        except ValueError:
            raise InvalidInput(f"{name}: not a valid date: {text[:_ECHO_CHARS]!r}") from None
    value = _SPACED_OFFSET.sub(r"\1+\2", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{name}: not an ISO 8601 time (like 2026-11-20T10:00:00Z): {text[:_ECHO_CHARS]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{name}: give a timezone, such as Z or +01:00: {text[:_ECHO_CHARS]!r}")
    return parsed.astimezone(UTC)


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
    try:
        if interval is None:
            for name in INTERVALS:
                window = _aligned(lo, hi, name)
                if window.points <= MAX_POINTS:
                    return window
            raise InvalidInput(f"the window is too long: at most {MAX_POINTS} days")
        if interval not in STEPS:
            raise InvalidInput(f"interval: must be one of {', '.join(INTERVALS)}, not {interval[:_ECHO_CHARS]!r}")
        window = _aligned(lo, hi, interval)  # type: ignore[arg-type]  # checked just above
    except OverflowError:
        raise InvalidInput("from/to: out of range") from None
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
    lo, hi = _bounds(start, end, now)
    try:
        window = _aligned(lo, hi, "hour")
    except OverflowError:
        raise InvalidInput("from/to: out of range") from None
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
    try:
        lo = parse_time(start, "from") if start is not None else hi - DEFAULT_SPAN
    except OverflowError:
        raise InvalidInput("from/to: out of range") from None
    if lo >= hi:
        raise InvalidInput("from must be before to")
    return lo, hi


def _aligned(lo: datetime, hi: datetime, interval: Interval) -> Window:
    step = STEPS[interval]
    return Window(floor_to(lo, step), ceil_to(hi, step), interval)
