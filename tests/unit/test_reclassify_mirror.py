"""reclassify's rollup deltas mirror ingest's rollup statement: the same tables and the same dimensions.

A dimension or rollup table added to ingest (services/ingest store.py) and not to linkpulse.db.reclassify would
leave that rollup with the old classes after a reclassify; this fails first.
"""

from __future__ import annotations

import re

from linkpulse.db import reclassify
from linkpulse.dimensions import DIMENSIONS, lateral_values, located_only_sql
from linkpulse.ingest import store

_ROLLUP = re.compile(r"INSERT INTO (link_\w+) AS t")
# A dimension rollup's table and the bucket its rows are keyed by.
_DIMENSION_BUCKET = re.compile(r"INSERT INTO (link_dimension_\w+) AS t .*?\n\s+SELECT link_id, (.+?), d\.dimension")


def test_the_same_rollup_tables_in_the_same_order() -> None:
    ingest = _ROLLUP.findall(store._STORE_EVENTS)
    assert ingest == _ROLLUP.findall(reclassify._MOVE)
    assert ingest[-2:] == ["link_dimension_day", "link_dimension_hour"]
    assert len(ingest) == 7


def test_the_same_dimension_rollups_with_the_same_buckets() -> None:
    ingest = _DIMENSION_BUCKET.findall(store._STORE_EVENTS)
    assert ingest == _DIMENSION_BUCKET.findall(reclassify._MOVE)
    assert ingest == [
        ("link_dimension_day", "(ts AT TIME ZONE 'UTC')::date"),
        ("link_dimension_hour", "date_trunc('hour', ts, 'UTC')"),
    ]


def test_every_dimension_rollup_reads_every_dimension_of_the_one_list() -> None:
    # Both statements expand each click into the dimensions of linkpulse.dimensions, lang among them, once per
    # dimension rollup, and skip the unknown value of the located ones alike.
    assert "('lang', lower(lang))" in lateral_values("d")
    assert {d.name for d in DIMENSIONS} >= {"country", "device", "city", "lang"}
    for statement in (store._STORE_EVENTS, reclassify._MOVE):
        assert statement.count(lateral_values("d")) == 2
        assert statement.count(located_only_sql("d")) == 2
        # No hand-written list of dimensions beside it.
        assert "('country', country)" not in statement.replace(lateral_values("d"), "")


def test_the_columns_of_every_dimension_come_back_from_the_click_rows() -> None:
    # Each dimension's expression reads columns the insert's (or the update's) RETURNING hands on.
    ingest_returning = re.search(r"RETURNING (.*?)\n\), visitors", store._STORE_EVENTS, re.S)
    moved_returning = re.search(r"RETURNING (.*?)\n\), moved_visitors", reclassify._MOVE, re.S)
    assert ingest_returning is not None and moved_returning is not None
    for d in DIMENSIONS:
        column = re.sub(r"^lower\((\w+)\)$", r"\1", d.expression)
        assert re.search(rf"\b{column}\b", ingest_returning.group(1)), d
        assert re.search(rf"\b{column}\b", moved_returning.group(1)), d


def test_every_table_ingest_counts_a_class_in_is_moved_by_reclassify() -> None:
    # The distinct visitors too (link_visitors_day): a key that stayed in its old class would count a bot as a human.
    ingest = set(re.findall(r"INSERT INTO (link_\w+)", store._STORE_EVENTS))
    assert "link_visitors_day" in ingest
    assert "link_dimension_hour" in ingest
    assert ingest == set(re.findall(r"(?:INSERT INTO|DELETE FROM) (link_\w+)", reclassify._MOVE))
