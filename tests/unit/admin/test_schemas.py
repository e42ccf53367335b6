"""LinkCreate decoding: strict JSON types, bounds, unknown fields, and error messages naming the field."""

from __future__ import annotations

import msgspec
import pytest

from linkpulse.admin.api import field_error
from linkpulse.admin.links.schemas import LinkCreate


def _decode(body: bytes) -> LinkCreate:
    return msgspec.json.decode(body, type=LinkCreate, strict=True)


def test_only_url_is_required() -> None:
    link = _decode(b'{"url": "https://example.com"}')
    assert (link.code, link.redirect_type, link.tags, link.forward_query) == (None, 302, [], False)


def test_tags_are_deduplicated_in_order() -> None:
    assert _decode(b'{"url": "u", "tags": ["b", "a", "b"]}').tags == ["b", "a"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"url": "u", "nope": 1}', "Object contains unknown field `nope`"),
        (b'{"url": 1}', "url: Expected `str`, got `int`"),
        (b'{"url": "u", "redirect_type": 300}', "redirect_type: Invalid enum value 300"),
        (b'{"url": "u", "max_clicks": -1}', "max_clicks: Expected `int` >= 1"),
        (b'{"url": "u", "max_clicks": 9223372036854775808}', "max_clicks: Expected `int` <= 9223372036854775807"),
        (b'{"url": "u", "tags": [""]}', "tags[0]: Expected `str` of length >= 1"),
        (b'{"url": "u", "title": "a\\u0000b"}', "title must not contain control characters"),
        (b'{"url": "u", "expires_at": 1700000000}', "expires_at: Expected `datetime | null`, got `int`"),
    ],
)
def test_invalid_bodies_name_the_field(body: bytes, message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        _decode(body)
    assert field_error(info.value)["message"] == message
