"""Analytics as CSV, without I/O: series, top lists, the overview, and the rows of the streamed events CSV.

Each CSV is the JSON answer of the same query, flattened: one header row, RFC 4180 quoting, CRLF line ends,
values written as the JSON shows them (times in RFC 3339 UTC, booleans `true`/`false`, unknown as an empty
cell). Every cell a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, tab or CR) gets a
`'` in front (OWASP "CSV injection"), as the links export does.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from linkpulse.admin.links.bulk import escape_cell
from linkpulse.admin.stats.events_schemas import CLICK_FIELDS
from linkpulse.admin.stats.schemas import LinkStats, Overview
from linkpulse.dimensions import DIMENSIONS

__all__ = [
    "CSV_MEDIA_TYPE",
    "OVERVIEW_COLUMNS",
    "SERIES_COLUMNS",
    "TOP_COLUMNS",
    "CsvBuffer",
    "attachment",
    "click_cells",
    "overview_csv",
    "series_csv",
    "top_csv",
]

CSV_MEDIA_TYPE: Final = "text/csv; charset=utf-8"
SERIES_COLUMNS: Final = ("ts", "clicks", "bots", "visitors", "bot_visitors")
TOP_COLUMNS: Final = ("dimension", "rank", "value", "clicks")
OVERVIEW_COLUMNS: Final = ("code", "url", "clicks", "bots", "visitors", "bot_visitors")


def attachment(filename: str) -> dict[str, str]:
    """The Content-Disposition header of a download; `filename` holds only characters a link code may."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


class CsvBuffer:
    """CSV rows written into a buffer that is taken out in pieces: a streamed CSV's memory is one piece."""

    def __init__(self, header: Sequence[str]) -> None:
        """Start with the header row."""
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self._writer.writerow(header)

    def write(self, cells: Iterable[Any]) -> None:
        """One row; each cell as the JSON shows it, escaped against formula injection."""
        self._writer.writerow([_cell(value) for value in cells])

    @property
    def size(self) -> int:
        """Characters written since the last `take`."""
        return self._buffer.tell()

    def take(self) -> str:
        """What was written since the last `take`, leaving the buffer empty."""
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


def series_csv(stats: LinkStats) -> str:
    """The series of a link's stats: one row per bucket, oldest first (`SERIES_COLUMNS`)."""
    out = CsvBuffer(SERIES_COLUMNS)
    for point in msgspec.to_builtins(stats.series):
        out.write(point[name] for name in SERIES_COLUMNS)
    return out.take()


def top_csv(stats: LinkStats) -> str:
    """The top lists of a link's stats: one row per value, by dimension then rank (`TOP_COLUMNS`).

    `dimension` is the dimension's name, the query parameter that filters by it (`country`, not `countries`).
    """
    out = CsvBuffer(TOP_COLUMNS)
    top: dict[str, list[dict[str, Any]]] = msgspec.to_builtins(stats.top)
    for dimension in DIMENSIONS:
        # A dimension the answer has no list for (none yet) is left out rather than shown empty.
        for rank, ranked in enumerate(top.get(dimension.plural, ()), start=1):
            out.write((dimension.name, rank, ranked["value"], ranked["clicks"]))
    return out.take()


def overview_csv(overview: Overview) -> str:
    """The top links of an overview, by clicks (`OVERVIEW_COLUMNS`)."""
    out = CsvBuffer(OVERVIEW_COLUMNS)
    for link in msgspec.to_builtins(overview.top_links):
        out.write(link[name] for name in OVERVIEW_COLUMNS)
    return out.take()


def click_cells(row: Mapping[str, Any]) -> list[Any]:
    """The cells of one click row (a record with the `Click` fields), in the events CSV's column order."""
    return [row[name] for name in CLICK_FIELDS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        # Times, ids and numbers exactly as the JSON answer writes them.
        value = str(msgspec.to_builtins(value))
    return escape_cell(value)
