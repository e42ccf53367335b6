"""Bulk upload and export rows: JSON or CSV parsed into links, every row checked, errors named by row and field.

Pure functions, no I/O: the database checks (codes already taken) live in `bulk_service.py`.

CSV conventions, shared by import and export:
- UTF-8 (a byte-order mark is ignored), a header row, RFC 4180 quoting.
- `tags` holds every tag in one cell separated by `|` (`promo|mail`); blanks around a tag are dropped.
- An empty cell means "not given": a random code, the default redirect type, no expiry...
- Booleans are `true`/`false` (or `1`/`0`); `expires_at` is RFC 3339 with an offset.
- Formula injection: export prefixes `'` to a value starting with `=`, `+`, `-`, `@`, tab or CR (so a
  spreadsheet shows it as text), and to a value starting with `'` followed by one of those or by
  another `'`. Import removes exactly that one `'`, so export → import gives back the same values.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import msgspec

from linkpulse.admin.links.bulk_shape import UploadError, check_shape
from linkpulse.admin.links.schemas import LinkCreate
from linkpulse.validation import InvalidInput, validate_code, validate_expiry

__all__ = [
    "EXPORT_COLUMNS",
    "IMPORT_COLUMNS",
    "MAX_ROWS",
    "TAG_SEPARATOR",
    "BulkLink",
    "BulkRejected",
    "BulkRow",
    "RowError",
    "Upload",
    "UploadError",
    "escape_cell",
    "export_row",
    "parse_csv",
    "parse_json",
    "parse_upload",
    "unescape_cell",
    "validate_rows",
]

MAX_ROWS: Final = 10_000
TAG_SEPARATOR: Final = "|"
IMPORT_COLUMNS: Final = frozenset(
    {"url", "code", "redirect_type", "expires_at", "max_clicks", "tags", "title", "forward_query", "active"}
)
EXPORT_COLUMNS: Final = (
    "code",
    "url",
    "short_url",
    "redirect_type",
    "active",
    "expires_at",
    "max_clicks",
    "tags",
    "title",
    "forward_query",
    "created_at",
    "clicks",
    "bot_clicks",
)
# Columns export writes that import cannot set: accepted and ignored, so an export re-imports as is.
_DERIVED_COLUMNS: Final = frozenset(EXPORT_COLUMNS) - IMPORT_COLUMNS
# Cells a spreadsheet would read as a formula (OWASP "CSV injection").
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_UNESCAPED_AFTER_QUOTE: Final = (*_FORMULA_START, "'")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")


class BulkLink(LinkCreate, kw_only=True, forbid_unknown_fields=True):
    """One upload row: a LinkCreate, plus `active`, so a disabled link exported comes back disabled."""

    active: bool = True


class RowError(msgspec.Struct, frozen=True):
    """Why one row of an upload was refused; `row` counts data rows from 1, the header excluded."""

    row: int
    field: str | None
    message: str


class BulkRow(msgspec.Struct, frozen=True):
    """A row that passed every check that needs no database."""

    row: int
    link: BulkLink
    url: str
    """The normalised target (IDN host as punycode), as stored."""


class Upload(msgspec.Struct, frozen=True):
    """A parsed upload: the rows that decoded, the ones that did not, and how many there were."""

    rows: list[tuple[int, BulkLink]]
    errors: list[RowError]
    total: int


class BulkRejected(Exception):
    """Some rows are invalid, so nothing was stored; answered 422 with every row error."""

    def __init__(self, errors: Iterable[RowError], total: int) -> None:
        self.errors = sorted(errors, key=lambda e: e.row)
        self.total = total
        rows = len({e.row for e in self.errors})
        super().__init__(f"{rows} of {total} rows are invalid; nothing was stored")


def parse_upload(body: bytes, content_type: str) -> Upload:
    """Dispatch on the media type: `application/json` (a list of links) or `text/csv`.

    Raises:
        UploadError: 400 empty or malformed body, 415 another media type, 422 too many rows.
    """
    if not body.strip():
        raise UploadError(400, "a request body is required: a JSON list of links or CSV with a header row")
    media_type, _, params = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return parse_json(body)
    if media_type in ("text/csv", "application/csv"):
        charset = _charset(params)
        if charset not in (None, "utf-8", "utf8", "us-ascii"):
            raise UploadError(415, f"CSV must be UTF-8, not {charset}")
        return parse_csv(body)
    raise UploadError(415, "send Content-Type application/json (a list of links) or text/csv")


def parse_json(body: bytes) -> Upload:
    """A JSON array of link objects; each element is decoded strictly, as `POST /api/v1/links` does.

    The shape is checked first (rows, inner arrays, depth), so a hostile body is refused before it is built.
    """
    check_shape(body, MAX_ROWS)
    try:
        raws = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.ValidationError:
        raise UploadError(422, "the body must be a JSON array of links") from None
    except msgspec.DecodeError as exc:
        raise UploadError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise UploadError(400, "malformed JSON: nested too deeply") from None
    # Rows are decoded one by one below; invalid UTF-8 in any of them refuses the upload as a whole.
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UploadError(400, f"malformed JSON: not valid UTF-8 at byte offset {exc.start}") from None
    _check_count(len(raws))
    rows: list[tuple[int, BulkLink]] = []
    errors: list[RowError] = []
    for number, raw in enumerate(raws, start=1):
        try:
            rows.append((number, msgspec.json.decode(raw, type=BulkLink, strict=True)))
        except msgspec.ValidationError as exc:
            errors.append(_row_error(number, exc))
        except RecursionError:
            errors.append(RowError(number, None, "nested too deeply"))
    return Upload(rows=rows, errors=errors, total=len(raws))


def parse_csv(body: bytes) -> Upload:
    """CSV with a header row naming the columns (`url` required, any order, case-insensitive).

    Rows are numbered from 1 after the header, as records (a quoted field may span lines);
    blank rows are skipped but keep their number, so it matches the row a spreadsheet shows.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(400, f"the CSV is not valid UTF-8 (at byte offset {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, BulkLink]] = []
    errors: list[RowError] = []
    count = 0
    try:
        columns = _header(next(reader, []))
        for number, record in enumerate(reader, start=1):
            if not any(cell.strip() for cell in record):
                continue
            count += 1
            _check_count(count)
            if len(record) > len(columns):
                errors.append(RowError(number, None, f"{len(record)} fields, but the header has {len(columns)}"))
                continue
            cells = dict(zip(columns, record, strict=False))
            try:
                rows.append((number, msgspec.convert(_csv_values(cells), BulkLink, strict=False)))
            except msgspec.ValidationError as exc:
                errors.append(_row_error(number, exc, cells))
    except csv.Error as exc:
        raise UploadError(400, f"malformed CSV at line {reader.line_num}: {exc}") from None
    return Upload(rows=rows, errors=errors, total=count)


def validate_rows(upload: Upload, validate_target: Callable[[str], str]) -> tuple[list[BulkRow], list[RowError]]:
    """Check every decoded row as single create does (URL and code rules) and codes repeated in the upload.

    Unlike single create, an `expires_at` in the past is accepted (the link is stored expired and
    answers 410): an export holding expired links must re-import whole.

    Returns the rows that passed and every error, the parse errors included.
    """
    errors = list(upload.errors)
    valid: list[BulkRow] = []
    rows_by_code: dict[str, list[int]] = {}
    for number, link in upload.rows:
        failed = False
        try:
            url = validate_target(link.url)
        except InvalidInput as exc:
            errors.append(RowError(number, "url", str(exc)))
            failed = True
        if link.expires_at is not None:
            try:
                validate_expiry(link.expires_at, must_be_future=False)
            except InvalidInput as exc:
                errors.append(RowError(number, "expires_at", str(exc)))
                failed = True
        if link.code is not None:
            rows_by_code.setdefault(link.code, []).append(number)
            try:
                validate_code(link.code)
            except InvalidInput as exc:
                errors.append(RowError(number, "code", str(exc)))
                failed = True
        if not failed:
            valid.append(BulkRow(row=number, link=link, url=url))
    repeated = {code: numbers for code, numbers in rows_by_code.items() if len(numbers) > 1}
    for code, numbers in repeated.items():
        listed = ", ".join(map(str, numbers))
        errors.extend(RowError(n, "code", f"code {code!r} appears more than once (rows {listed})") for n in numbers)
    return [r for r in valid if r.link.code not in repeated], errors


def export_row(link: Mapping[str, Any], short_url: str) -> list[str]:
    """The CSV cells of one link row (`EXPORT_COLUMNS` order), each escaped against formula injection."""
    values = {
        **{name: link[name] for name in EXPORT_COLUMNS if name not in ("short_url", "tags")},
        "short_url": short_url,
        "tags": TAG_SEPARATOR.join(link["tags"]),
    }
    return [escape_cell(_cell(values[name])) for name in EXPORT_COLUMNS]


def escape_cell(value: str) -> str:
    """Prefix `'` to a value a spreadsheet would run as a formula (and to one that looks escaped)."""
    if value.startswith(_FORMULA_START) or (value[:1] == "'" and value[1:2].startswith(_UNESCAPED_AFTER_QUOTE)):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """Inverse of escape_cell: drop the one `'` it added."""
    if value[:1] == "'" and value[1:2].startswith(_UNESCAPED_AFTER_QUOTE):
        return value[1:]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _header(header: list[str]) -> list[str]:
    if not header:
        raise UploadError(400, "the first line of the CSV must be a header row naming the columns")
    columns = [name.strip().lower() for name in header]
    problems = []
    for index, name in enumerate(columns, start=1):
        if name not in IMPORT_COLUMNS and name not in _DERIVED_COLUMNS:
            problems.append(f"unknown column {name!r} (column {index})")
        elif columns.index(name) != index - 1:
            problems.append(f"column {name!r} appears twice")
    if "url" not in columns:
        problems.append("the header has no 'url' column")
    if problems:
        known = ", ".join(sorted(IMPORT_COLUMNS))
        raise UploadError(422, f"CSV header: {'; '.join(problems)} (columns: {known})")
    return columns


def _csv_values(cells: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, cell in cells.items():
        if name in _DERIVED_COLUMNS:
            continue
        value = unescape_cell(cell)
        # Titles keep their spaces (an export must come back the same); other cells are trimmed.
        if name != "title":
            value = value.strip()
        if value == "":
            continue
        values[name] = [t.strip() for t in value.split(TAG_SEPARATOR) if t.strip()] if name == "tags" else value
    return values


def _row_error(number: int, exc: msgspec.ValidationError, cells: Mapping[str, str] | None = None) -> RowError:
    message, sep, path = str(exc).partition(" - at `$")
    field = path.rstrip("`").lstrip(".") if sep else None
    if field is None and (unknown := _UNKNOWN_FIELD.search(message)):
        field = unknown.group(1)
    if field is None:
        # A check in __post_init__ ("tags must not contain...") names its field first.
        field = next((f for f in BulkLink.__struct_fields__ if message.startswith(f"{f} ")), None)
    if cells is not None and field in cells and ("got `str`" in message or "RFC3339" in message):
        message = f"{message}: {cells[field].strip()!r}"
    return RowError(number, field, message)


def _check_count(count: int) -> None:
    if count > MAX_ROWS:
        raise UploadError(422, f"an upload holds at most {MAX_ROWS} rows; split the file")


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None
