"""Bulk rows without servers: JSON and CSV parsing, per-row errors, upload-wide errors, CSV escaping."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from linkpulse.admin.links.bulk import (
    EXPORT_COLUMNS,
    MAX_ROWS,
    BulkRejected,
    RowError,
    Upload,
    UploadError,
    escape_cell,
    export_row,
    parse_csv,
    parse_json,
    parse_upload,
    unescape_cell,
    validate_rows,
)
from linkpulse.admin.settings import AdminOptions

VALIDATE_TARGET = AdminOptions(public_url="https://lp.example.test").validate_target


def _json(rows: object) -> bytes:
    return json.dumps(rows).encode()


def _errors(upload: Upload) -> list[RowError]:
    return validate_rows(upload, VALIDATE_TARGET)[1]


# JSON


def test_json_rows_decode_like_single_create() -> None:
    upload = parse_json(
        _json(
            [
                {"url": "https://example.com/a"},
                {"url": "https://example.com/b", "code": "b", "redirect_type": 301, "tags": ["x", "y", "x"]},
                {"url": "https://example.com/c", "active": False, "expires_at": "2030-01-01T00:00:00Z"},
            ]
        )
    )
    assert upload.total == 3 and upload.errors == []
    (n1, first), (n2, second), (n3, third) = upload.rows
    assert (n1, n2, n3) == (1, 2, 3)
    assert (first.code, first.redirect_type, first.active) == (None, 302, True)
    assert (second.code, second.redirect_type, second.tags) == ("b", 301, ["x", "y"])
    assert third.active is False and third.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_json_row_errors_name_the_row_and_the_field() -> None:
    upload = parse_json(
        _json(
            [
                {"url": "https://example.com/ok"},
                {"url": "https://example.com", "max_clicks": "5"},
                {"url": "https://example.com", "colour": "red"},
                "https://example.com",
                {"url": "https://example.com", "tags": ["a\nb"]},
                {"url": "https://example.com", "tags": ["ok", ""]},
            ]
        )
    )
    assert [n for n, _ in upload.rows] == [1]
    assert upload.errors == [
        RowError(2, "max_clicks", "Expected `int | null`, got `str`"),
        RowError(3, "colour", "Object contains unknown field `colour`"),
        RowError(4, None, "Expected `object`, got `str`"),
        RowError(5, "tags", "tags must not contain control characters"),
        RowError(6, "tags[1]", "Expected `str` of length >= 1"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'[{"url": "https://example.com"}', 400, "malformed JSON"),
        (b'{"url": "https://example.com"}', 422, "must be a JSON array"),
        (b'"text"', 422, "must be a JSON array"),
    ],
)
def test_json_body_that_is_not_a_list_is_refused_whole(body: bytes, status: int, detail: str) -> None:
    with pytest.raises(UploadError) as info:
        parse_json(body)
    assert info.value.status_code == status and detail in info.value.detail


def test_more_than_max_rows_is_422_before_any_row_is_decoded() -> None:
    assert parse_json(_json([{"url": "https://example.com"}] * MAX_ROWS)).total == MAX_ROWS
    with pytest.raises(UploadError) as info:
        parse_json(_json([{"url": "https://example.com"}] * (MAX_ROWS + 1)))
    assert info.value.status_code == 422 and "at most 10000 rows" in info.value.detail


# CSV


def test_csv_with_quoted_fields_tags_and_every_column() -> None:
    body = (
        b"URL, code ,redirect_type,expires_at,max_clicks,tags,title,forward_query,active\r\n"
        b'https://example.com/a,a,301,2030-01-01T00:00:00+00:00,5,promo | mail|,"Sale, ""big"" today",true,0\r\n'
        b"https://example.com/b,,,,,,,,\r\n"
    )
    upload = parse_csv(body)
    assert upload.errors == [] and upload.total == 2
    (_, a), (_, b) = upload.rows
    assert (a.url, a.code, a.redirect_type, a.max_clicks) == ("https://example.com/a", "a", 301, 5)
    assert a.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert a.tags == ["promo", "mail"]
    assert a.title == 'Sale, "big" today'
    assert (a.forward_query, a.active) == (True, False)
    # Empty cells mean "not given": a random code and the defaults.
    assert (b.code, b.redirect_type, b.tags, b.title, b.forward_query, b.active) == (None, 302, [], None, False, True)


def test_csv_row_numbers_count_records_after_the_header_and_keep_blank_rows() -> None:
    body = b'url,code\nhttps://example.com/1,"multi\nline"\n\n,,\nhttps://example.com/4,x y\n'
    upload = parse_csv(body)
    errors = _errors(upload)
    # Row 1 spans two lines; rows 2 and 3 are blank; row 4 has a bad code.
    assert [(e.row, e.field) for e in errors] == [(1, "code"), (4, "code")]
    assert upload.total == 2


def test_csv_cell_errors_show_the_value() -> None:
    body = (
        b"url,redirect_type,max_clicks,forward_query,expires_at\n"
        b"https://example.com,303,,,\n"
        b"https://example.com,,lots,,\n"
        b"https://example.com,,,yes,\n"
        b"https://example.com,,,,2030-01-01\n"
        b"https://example.com,,,,2030-01-01T00:00:00\n"
        b"https://example.com,,,,,extra\n"
    )
    assert parse_csv(body).errors == [
        RowError(1, "redirect_type", "Invalid enum value 303"),
        RowError(2, "max_clicks", "Expected `int | null`, got `str`: 'lots'"),
        RowError(3, "forward_query", "Expected `bool`, got `str`: 'yes'"),
        RowError(4, "expires_at", "Invalid RFC3339 encoded datetime: '2030-01-01'"),
        RowError(5, "expires_at", "Expected `datetime` with a timezone component"),
        RowError(6, None, "6 fields, but the header has 5"),
    ]


def test_csv_short_rows_leave_the_missing_cells_empty() -> None:
    (_, link), *_ = parse_csv(b"url,code,title\nhttps://example.com\n").rows
    assert (link.url, link.code, link.title) == ("https://example.com", None, None)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"url,code\nhttps://example.com/\xff,x\n", 400, "not valid UTF-8 (at byte offset 29)"),
        (b'url,code\n"https://example.com,x\n', 400, "malformed CSV at line 2: unexpected end of data"),
        (b'url,code\n"https://example.com"x,y\n', 400, "malformed CSV at line 2"),
        (b"\nurl\nhttps://example.com\n", 400, "header row"),
        (
            b"link,code\nhttps://example.com,x\n",
            422,
            "unknown column 'link' (column 1); the header has no 'url' column",
        ),
        (b"url,code,url\nhttps://example.com,x,y\n", 422, "column 'url' appears twice"),
    ],
)
def test_csv_that_cannot_be_read_is_refused_whole(body: bytes, status: int, detail: str) -> None:
    with pytest.raises(UploadError) as info:
        parse_csv(body)
    assert info.value.status_code == status, info.value.detail
    assert detail in info.value.detail


def test_csv_byte_order_mark_is_ignored() -> None:
    assert parse_csv(b"\xef\xbb\xbfurl\nhttps://example.com\n").total == 1


def test_csv_over_max_rows_is_422() -> None:
    body = "url\n" + "https://example.com\n" * (MAX_ROWS + 1)
    with pytest.raises(UploadError) as info:
        parse_csv(body.encode())
    assert info.value.status_code == 422


# Media types


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/plain", 415), ("multipart/form-data; boundary=x", 415), ("text/csv; charset=latin-1", 415), ("", 415)],
)
def test_other_media_types_are_415(content_type: str, status: int) -> None:
    with pytest.raises(UploadError) as info:
        parse_upload(b"url\nhttps://example.com\n", content_type)
    assert info.value.status_code == status


def test_media_type_picks_the_parser() -> None:
    assert parse_upload(b'[{"url": "https://example.com"}]', "application/json; charset=utf-8").total == 1
    assert parse_upload(b"url\nhttps://example.com\n", "text/csv; charset=UTF-8").total == 1
    with pytest.raises(UploadError) as info:
        parse_upload(b"  ", "text/csv")
    assert info.value.status_code == 400


# Validation


def test_validation_applies_url_and_code_rules_to_every_row() -> None:
    upload = parse_json(
        _json(
            [
                {"url": "javascript:alert(1)"},
                {"url": "https://lp.example.test/x"},
                {"url": "https://Bücher.example/a", "code": "ok"},
                {"url": "https://user:pw@example.com", "code": "export"},
                {"url": "https://example.com", "code": "a/b"},
            ]
        )
    )
    valid, errors = validate_rows(upload, VALIDATE_TARGET)
    assert [(r.row, r.url) for r in valid] == [(3, "https://xn--bcher-kva.example/a")]
    assert [(e.row, e.field) for e in errors] == [(1, "url"), (2, "url"), (4, "url"), (4, "code"), (5, "code")]
    assert "loop" in errors[1].message and "reserved" in errors[3].message


def test_every_row_with_a_repeated_code_is_an_error() -> None:
    upload = parse_json(
        _json(
            [
                {"url": "https://example.com/1", "code": "dup"},
                {"url": "https://example.com/2", "code": "Dup"},
                {"url": "https://example.com/3", "code": "dup"},
                {"url": "https://example.com/4"},
                {"url": "https://example.com/5"},
            ]
        )
    )
    valid, errors = validate_rows(upload, VALIDATE_TARGET)
    # Codes are case-sensitive, as the database's unique key is; random codes never clash here.
    assert [r.row for r in valid] == [2, 4, 5]
    assert errors == [
        RowError(1, "code", "code 'dup' appears more than once (rows 1, 3)"),
        RowError(3, "code", "code 'dup' appears more than once (rows 1, 3)"),
    ]


def test_bulk_rejected_counts_failing_rows_and_sorts_errors() -> None:
    exc = BulkRejected([RowError(9, "url", "a"), RowError(2, "code", "b"), RowError(9, "code", "c")], total=10)
    assert [e.row for e in exc.errors] == [2, 9, 9]
    assert str(exc) == "2 of 10 rows are invalid; nothing was stored"


def test_expiry_outside_the_storable_range_is_a_row_error() -> None:
    upload = parse_json(
        _json(
            [
                {"url": "https://example.com", "expires_at": "0001-01-01T00:00:00+01:00"},
                {"url": "https://example.com", "expires_at": "9999-12-31T23:00:00-02:00"},
                {"url": "https://example.com", "expires_at": "9999-12-31T23:00:00+00:00"},
            ]
        )
    )
    assert _errors(upload) == [
        RowError(1, "expires_at", "expires_at is out of range"),
        RowError(2, "expires_at", "expires_at is out of range"),
    ]


def test_past_expiry_is_accepted_so_expired_links_reimport() -> None:
    upload = parse_json(_json([{"url": "https://example.com", "expires_at": "2001-01-01T00:00:00Z"}]))
    assert _errors(upload) == []


# Export cells


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1", "'+1"),
        ("-abc", "'-abc"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("'=x", "''=x"),
        ("''", "'''"),
        ("'plain'", "'plain'"),
        ("'", "'"),
        ("plain", "plain"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_formula_cells_are_escaped_and_import_reverses_it(value: str, escaped: str) -> None:
    assert escape_cell(value) == escaped
    assert unescape_cell(escaped) == value


def test_export_row_then_csv_import_gives_the_same_link() -> None:
    link = {
        "code": "-x",
        "url": "https://example.com/a?b=1",
        "redirect_type": 308,
        "active": False,
        "expires_at": datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "max_clicks": 7,
        "tags": ["@team", "b"],
        "title": ' =SUM(A1), "quoted"',
        "forward_query": True,
        "created_at": datetime(2024, 5, 1, tzinfo=UTC),
        "clicks": 3,
        "bot_clicks": 1,
    }
    cells = export_row(link, "https://lp.example.test/-x")
    assert dict(zip(EXPORT_COLUMNS, cells, strict=True)) == {
        "code": "'-x",
        "url": "https://example.com/a?b=1",
        "short_url": "https://lp.example.test/-x",
        "redirect_type": "308",
        "active": "false",
        "expires_at": "2030-01-02T03:04:05.678000+00:00",
        "max_clicks": "7",
        "tags": "'@team|b",
        "title": ' =SUM(A1), "quoted"',
        "forward_query": "true",
        "created_at": "2024-05-01T00:00:00+00:00",
        "clicks": "3",
        "bot_clicks": "1",
    }
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    writer.writerow(cells)
    upload = parse_csv(out.getvalue().encode())
    assert upload.errors == []
    (_, back), *_ = upload.rows
    assert (back.code, back.url, back.redirect_type, back.active, back.expires_at) == (
        "-x",
        link["url"],
        308,
        False,
        link["expires_at"],
    )
    assert (back.max_clicks, back.tags, back.title, back.forward_query) == (7, ["@team", "b"], link["title"], True)
