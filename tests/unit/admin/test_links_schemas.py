"""LinkUpdate decoding (absent vs null) and the opaque list cursor, without servers."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from linkpulse.admin.links.schemas import LinkUpdate, decode_cursor, encode_cursor
from linkpulse.validation import InvalidInput


def _decode(body: bytes) -> LinkUpdate:
    return msgspec.json.decode(body, type=LinkUpdate, strict=True)


def test_only_the_fields_sent_are_changes() -> None:
    assert _decode(b"{}").changes() == {}
    assert _decode(b'{"title": "t", "active": false}').changes() == {"title": "t", "active": False}


def test_null_clears_the_clearable_fields() -> None:
    update = _decode(b'{"expires_at": null, "max_clicks": null, "title": null}')
    assert update.changes() == {"expires_at": None, "max_clicks": None, "title": None}


@pytest.mark.parametrize("field", ["url", "redirect_type", "tags", "active", "forward_query"])
def test_null_is_refused_where_the_field_cannot_be_empty(field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"at `\\$.{field}`"):
        _decode(f'{{"{field}": null}}'.encode())


def test_tags_are_deduplicated_and_checked() -> None:
    assert _decode(b'{"tags": ["b", "a", "b"]}').changes() == {"tags": ["b", "a"]}
    with pytest.raises(msgspec.ValidationError, match="control characters"):
        _decode(b'{"tags": ["a\\nb"]}')


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `code`"):
        _decode(b'{"code": "x"}')


def test_a_cursor_round_trips_to_the_microsecond() -> None:
    ts = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    cursor = encode_cursor(ts, 42)
    assert "=" not in cursor and cursor.isascii()
    decoded = decode_cursor(cursor)
    assert (decoded.created_at, decoded.id) == (ts, 42)


@pytest.mark.parametrize("cursor", ["", "!!", "bm90IGpzb24", "WzFd", "WzEsMF0", "W251bGwsMV0", "Wy0xZTk5LDFd", "é"])
def test_anything_else_is_not_a_cursor(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="cursor is not valid"):
        decode_cursor(cursor)
