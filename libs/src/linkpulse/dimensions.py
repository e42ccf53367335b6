"""The dimensions of the click stats: one list, read by ingest's rollups, reclassify, the stats and their filters.

A dimension is a property of a click that stats are sliced by. Each has the name stored in the rollups'
`dimension` column (also its filter's query parameter), the SQL expression that reads its value from a row of
`click_events` (or of a statement's `RETURNING` over it), the key of its top list in a stats answer, and whether
only a GeoIP database fills it (then an unknown value gets no rollup row: without a database that would be rows
for nothing, and their top lists hold the located clicks only).
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["BY_NAME", "DIMENSIONS", "Dimension", "lateral_values", "located_only_sql"]


class Dimension(NamedTuple):
    """One dimension of the stats."""

    name: str
    """As stored in the rollups' `dimension` column, and the name of its filter parameter."""
    expression: str
    """SQL reading the value from a click row (its columns unqualified); the same in every statement."""
    plural: str
    """The key of its top list in a stats answer."""
    located: bool = False
    """Filled only by a GeoIP database: no rollup row for an unknown ("") value."""


DIMENSIONS: Final[tuple[Dimension, ...]] = (
    Dimension("country", "country", "countries"),
    Dimension("referrer", "referrer_host", "referrers"),
    Dimension("browser", "browser", "browsers"),
    Dimension("os", "os", "os"),
    Dimension("device", "device", "devices"),
    Dimension("region", "region", "regions", located=True),
    Dimension("city", "city", "cities", located=True),
    Dimension("asn", "asn", "asns", located=True),
    # The first tag of Accept-Language as the browser sent it, lower-cased so that en-US and en-us are one value.
    Dimension("lang", "lower(lang)", "languages"),
)
BY_NAME: Final[dict[str, Dimension]] = {d.name: d for d in DIMENSIONS}


def lateral_values(alias: str = "d") -> str:
    """`CROSS JOIN LATERAL (VALUES ('country', country), …) AS d(dimension, value)`: a row per dimension."""
    pairs = ", ".join(f"('{d.name}', {d.expression})" for d in DIMENSIONS)
    return f"CROSS JOIN LATERAL (VALUES {pairs}) AS {alias}(dimension, value)"


def located_only_sql(alias: str = "d") -> str:
    """The WHERE condition that skips the unknown value of the dimensions only a GeoIP database fills."""
    names = ", ".join(f"'{d.name}'" for d in DIMENSIONS if d.located)
    return f"({alias}.value <> '' OR {alias}.dimension NOT IN ({names}))"
