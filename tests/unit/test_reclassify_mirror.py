"""reclassify's rollup deltas mirror ingest's rollup statement: the same tables and the same dimensions.

A dimension or rollup table added to ingest (services/ingest store.py) and not to linkpulse.db.reclassify would
leave that rollup with the old classes after a reclassify; this fails first.
"""

from __future__ import annotations

import re

from linkpulse.db import reclassify
from linkpulse.ingest import store

_DIMENSION = re.compile(r"\('(\w+)', (\w+)\)")
_ROLLUP = re.compile(r"INSERT INTO (link_\w+) AS t")
_SKIPPED = re.compile(r"WHERE d\.value <> '' OR d\.dimension NOT IN \(([^)]*)\)")


def test_the_same_rollup_tables_in_the_same_order() -> None:
    ingest = _ROLLUP.findall(store._STORE_EVENTS)
    assert ingest == _ROLLUP.findall(reclassify._MOVE)
    assert len(ingest) == 6


def test_the_same_dimensions_from_the_same_columns() -> None:
    ingest = _DIMENSION.findall(store._STORE_EVENTS)
    assert ingest == _DIMENSION.findall(reclassify._MOVE)
    assert ("device", "device") in ingest
    assert ("city", "city") in ingest


def test_the_same_dimensions_without_an_unknown_row() -> None:
    skipped = _SKIPPED.findall(store._STORE_EVENTS)
    assert skipped == _SKIPPED.findall(reclassify._MOVE)
    assert skipped == ["'region', 'city', 'asn'"]


def test_every_table_ingest_counts_a_class_in_is_moved_by_reclassify() -> None:
    # The distinct visitors too (link_visitors_day): a key that stayed in its old class would count a bot as a human.
    ingest = set(re.findall(r"INSERT INTO (link_\w+)", store._STORE_EVENTS))
    assert "link_visitors_day" in ingest
    assert ingest == set(re.findall(r"(?:INSERT INTO|DELETE FROM) (link_\w+)", reclassify._MOVE))
