"""Stats query windows, without I/O: parse `from`/`to` and `tz`, pick or check the interval, align to buckets.

A window is widened to whole buckets of its interval in its timezone (local calendar days, local hours), so what
the answer counts is exactly the clicks in its (echoed) `[from, to)`. The bucket boundaries are computed here,
with Python's zoneinfo, and handed to SQL as instants: Postgres's own timezone database is never asked, so the
two can never disagree about a DST rule.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Final, Literal, NamedTuple, get_args
from zoneinfo import ZoneInfo, available_timezones

from linkpulse.validation import InvalidInput

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_SPAN",
    "EARLIEST",
    "INTERVALS",
    "LATEST",
    "MAX_LIMIT",
    "MAX_POINTS",
    "MAX_TZ_CHARS",
    "STEPS",
    "UTC_ZONE",
    "Interval",
    "Window",
    "ceil_to",
    "floor_to",
    "overview_window",
    "parse_limit",
    "parse_time",
    "parse_tz",
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

UTC_ZONE: Final = ZoneInfo("UTC")
MAX_TZ_CHARS: Final = 64
"""The longest `tz` accepted (the longest IANA name, America/Argentina/ComodRivadavia, has 32 characters)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TZ_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# An unencoded "+01:00" in a query string arrives as " 01:00"; put the plus back.
_SPACED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")
_ECHO_CHARS = 64


class Window(NamedTuple):
    """A bucket-aligned, half-open time window `[start, end)` (UTC instants), its series interval and timezone."""

    start: datetime
    end: datetime
    interval: Interval
    tz: ZoneInfo = UTC_ZONE

    @property
    def points(self) -> int:
        """Buckets of `interval` in the window (local calendar days for a day interval)."""
        if self.interval == "day":
            return (self.end.astimezone(self.tz).date() - self.start.astimezone(self.tz).date()).days
        return (self.end - self.start) // STEPS[self.interval]

    def boundaries(self) -> list[datetime]:
        """The UTC instants that start each bucket, and `end`: `points + 1` of them, strictly increasing.

        A local day is 23 to 25 hours across a DST change; a local hour starts at :30 or :45 past a UTC hour in
        zones with such offsets.
        """
        if self.tz is UTC_ZONE:  # the common case, without a zoneinfo lookup per bucket
            step = STEPS[self.interval]
            return [self.start + i * step for i in range((self.end - self.start) // step + 1)]
        if self.interval == "day":
            first = self.start.astimezone(self.tz).date()
            return [_local_midnight(first + timedelta(days=i), self.tz) for i in range(self.points + 1)]
        bounds = [self.start]
        while bounds[-1] < self.end:
            bounds.append(min(self.end, _next_local(bounds[-1], self.interval, self.tz)))
        return bounds


def parse_tz(text: str | None) -> ZoneInfo:
    """An IANA timezone name (`Europe/Berlin`), UTC when not given.

    Raises:
        InvalidInput: longer than `MAX_TZ_CHARS`, or not a name of the timezone database (422).
    """
    if text is None:
        return UTC_ZONE
    value = text.strip()
    if len(value) > MAX_TZ_CHARS or not _TZ_NAME.fullmatch(value) or value not in _zone_names():
        raise InvalidInput(f"tz: not an IANA timezone name such as Europe/Berlin: {text[:_ECHO_CHARS]!r}")
    return UTC_ZONE if value == "UTC" else ZoneInfo(value)


def parse_time(text: str, name: str, tz: ZoneInfo = UTC_ZONE) -> datetime:
    """An ISO 8601 time with a timezone (`2026-11-20T10:00:00Z`, `…+01:00`) or a date (midnight in `tz`), in UTC.

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
        try:
            return _in_range(_local_midnight(day, tz), name)
        except OverflowError:  # midnight of 0001-01-01 east of UTC is before year 1
            raise InvalidInput(_out_of_range(name)) from None
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


def series_window(
    start: str | None, end: str | None, interval: str | None, now: datetime, tz: ZoneInfo = UTC_ZONE
) -> Window:
    """The window of a link's stats query, widened to whole buckets of its interval in `tz`.

    Defaults: `to` = now, `from` = `to` - 7 days, interval the finest giving at most 1000 points.

    Raises:
        InvalidInput: a bad time or interval, `from` not before `to`, or too many points (422).
    """
    lo, hi = _bounds(start, end, now, tz)
    if interval is None:
        for name in INTERVALS:
            window = _aligned(lo, hi, name, tz)
            if window.points <= MAX_POINTS:
                return window
        raise InvalidInput(f"the window is too long: at most {MAX_POINTS} days")
    if interval not in STEPS:
        raise InvalidInput(f"interval: must be one of {', '.join(INTERVALS)}, not {interval[:_ECHO_CHARS]!r}")
    window = _aligned(lo, hi, interval, tz)  # type: ignore[arg-type]  # checked just above
    if window.points > MAX_POINTS:
        raise InvalidInput(
            f"interval: {window.points} {interval} points, at most {MAX_POINTS}: "
            "use a coarser interval or a shorter window"
        )
    return window


def overview_window(
    start: str | None, end: str | None, now: datetime, tz: ZoneInfo = UTC_ZONE
) -> tuple[datetime, datetime]:
    """The window of an overview query (dates are midnight in `tz`), widened to whole UTC hours (the finest rollup
    it reads: in a zone with a :30 or :45 offset, a local midnight is floored to the UTC hour before it).

    Raises:
        InvalidInput: a bad time, or `from` not before `to` (422).
    """
    window = _aligned(*_bounds(start, end, now, tz), "hour", UTC_ZONE)
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


def _bounds(start: str | None, end: str | None, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    hi = parse_time(end, "to", tz) if end is not None else now
    if start is not None:
        lo = parse_time(start, "from", tz)
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


def _aligned(lo: datetime, hi: datetime, interval: Interval, tz: ZoneInfo) -> Window:
    if tz is UTC_ZONE:
        step = STEPS[interval]
        return Window(floor_to(lo, step), ceil_to(hi, step), interval, tz)
    try:
        floor = _floor_local(hi, interval, tz)
        return Window(_floor_local(lo, interval, tz), floor if floor == hi else _next_local(floor, interval, tz),
                      interval, tz)  # fmt: skip
    except OverflowError:  # the end of 9999-12-31 east of UTC is past datetime's range
        raise InvalidInput(_out_of_range("to")) from None


@cache
def _zone_names() -> frozenset[str]:
    # Read once (about 0.1 s): the names the timezone database lists, so that no path or other file is opened;
    # "localtime" is this machine's zone (a link the system may hold), not a name of the database.
    return (frozenset(available_timezones()) | {"UTC"}) - {"localtime", "posixrules"}


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of `day` in `tz`, in UTC (01:00 where a DST change skips midnight)."""
    # fold=0 reads a skipped midnight with the offset before the change: the instant the day starts at.
    return datetime.combine(day, time(), tz).astimezone(UTC)


def _floor_local(ts: datetime, interval: Interval, tz: ZoneInfo) -> datetime:
    """The start of the local bucket of `interval` holding `ts`, in UTC."""
    if interval == "day":
        return _local_midnight(ts.astimezone(tz).date(), tz)
    offset = ts.astimezone(tz).utcoffset() or timedelta(0)
    return floor_to(ts + offset, STEPS[interval]) - offset


def _next_local(bucket: datetime, interval: Interval, tz: ZoneInfo) -> datetime:
    """The start of the local bucket after the one starting at `bucket`."""
    if interval == "day":
        return _local_midnight(bucket.astimezone(tz).date() + timedelta(days=1), tz)
    following = _floor_local(bucket + STEPS[interval], interval, tz)
    # At an offset change that is not a whole step (Lord Howe's 30 minutes), at least one step on.
    return following if following > bucket else bucket + STEPS[interval]
