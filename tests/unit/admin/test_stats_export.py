"""The analytics CSVs without I/O: flattened answers, formula cells neutralised, the events cursor and page size."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from linkpulse.admin.stats.events import decode_cursor, encode_cursor, events_query, parse_page_limit
from linkpulse.admin.stats.export import overview_csv, series_csv, top_csv
from linkpulse.admin.stats.filters import parse_filters
from linkpulse.admin.stats.schemas import LinkCount, LinkStats, Overview, Point, Ranked, TopValues
from linkpulse.dimensions import DIMENSIONS
from linkpulse.validation import InvalidInput

T0 = datetime(2026, 11, 20, tzinfo=UTC)
FORMULAS = ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"]


def stats(**top: list[Ranked]) -> LinkStats:
    lists: dict[str, list[Ranked]] = {d.plural: [] for d in DIMENSIONS}
    series = [Point(ts=T0 + timedelta(hours=h), clicks=h, bots=1, visitors=h, bot_visitors=0) for h in range(3)]
    return LinkStats(code="c", from_=T0, to=T0 + timedelta(hours=3), interval="hour", total=3, bots=3, visitors=3,
                     bot_visitors=0, series=series, top=TopValues(**{**lists, **top}), bot_rules=None, tz="UTC",
                     filters={}, as_of=None, ingest_lag=None)  # fmt: skip


def parsed(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_series_csv_is_the_series_with_json_times() -> None:
    text = series_csv(stats())
    assert text.endswith("\r\n")
    assert parsed(text) == [
        ["ts", "clicks", "bots", "visitors", "bot_visitors"],
        ["2026-11-20T00:00:00Z", "0", "1", "0", "0"],
        ["2026-11-20T01:00:00Z", "1", "1", "1", "0"],
        ["2026-11-20T02:00:00Z", "2", "1", "2", "0"],
    ]


def test_top_csv_ranks_each_dimension_under_its_filter_name() -> None:
    text = top_csv(stats(countries=[Ranked(value="DE", clicks=3), Ranked(value="", clicks=1)],
                         cities=[Ranked(value="Munich, DE-BY", clicks=2)]))  # fmt: skip
    assert parsed(text) == [
        ["dimension", "rank", "value", "clicks"],
        ["country", "1", "DE", "3"],
        ["country", "2", "", "1"],
        ["city", "1", "Munich, DE-BY", "2"],
    ]


@pytest.mark.parametrize("value", FORMULAS)
def test_every_csv_prefixes_a_formula_with_a_quote(value: str) -> None:
    top = top_csv(stats(referrers=[Ranked(value=value, clicks=1)]))
    assert parsed(top)[1][2] == "'" + value
    links = [LinkCount(code="c", url=value, clicks=1, bots=0, visitors=1, bot_visitors=0)]
    overview = Overview(
        from_=T0,
        to=T0,
        clicks=1,
        bots=0,
        visitors=1,
        bot_visitors=0,
        top_links=links,
        bot_rules=None,
        tz="UTC",
        countries=[],
        cities=[],
        as_of=None,
        ingest_lag=None,
    )
    assert parsed(overview_csv(overview))[1] == ["c", "'" + value, "1", "0", "1", "0"]


def test_a_cursor_round_trips_exactly_and_anything_else_is_refused() -> None:
    ts, click_id = T0 + timedelta(microseconds=123456), uuid.uuid4()
    position = decode_cursor(encode_cursor(ts, click_id))
    assert (position.ts, position.id) == (ts, click_id)
    for bad in ("", "!!", "W10", "WzEsMl0", encode_cursor(ts, click_id)[:-3], "é", "A" * 200):
        with pytest.raises(InvalidInput, match=r"^cursor: "):
            decode_cursor(bad)


@pytest.mark.parametrize(("text", "size"), [(None, 100), ("1", 1), ("1000", 1000), (" 7 ", 7)])
def test_page_size(text: str | None, size: int) -> None:
    assert parse_page_limit(text) == size


@pytest.mark.parametrize("text", ["0", "1001", "", "x", "-5", "1.5", "٣", "00001"])
def test_a_bad_page_size_names_limit(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^limit: "):
        parse_page_limit(text)


def test_the_conditions_number_their_arguments_after_the_first() -> None:
    position = decode_cursor(encode_cursor(T0, uuid.UUID(int=1)))
    query = events_query("2026-11-01", "2026-11-21", parse_filters({"country": "de"}), first_arg=3, after=position)
    assert query.conditions == (" AND ts >= $3 AND ts < $4 AND ts <= $5 AND (ts, id) < ($5, $6) AND country = $7")
    assert query.args == [datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC), T0,
                          uuid.UUID(int=1), "DE"]  # fmt: skip
    with pytest.raises(InvalidInput, match="from must be before to"):
        events_query("2026-11-21", "2026-11-21", (), first_arg=2)
