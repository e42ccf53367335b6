"""A bulk JSON body's shape checked by a token scan that builds nothing: rows, inner array lengths, depth.

msgspec decodes a whole document at once: 8 MiB of `[{},{},…]` is 2.8 million values (about 180 MiB)
before any count can be checked, and one row whose `tags` holds a million strings is built whole before
its length is. So the body is scanned first, and refused as soon as it is too big to be a valid upload.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_DEPTH", "MAX_INNER_ITEMS", "UploadError", "check_shape"]

MAX_DEPTH: Final = 16
"""Deepest nesting of arrays and objects; a valid upload needs 3 (the list, a row, its tags)."""
MAX_INNER_ITEMS: Final = 1_000
"""Most items of an array inside a row; far above any field's own limit (20 tags), which then names the field."""

# A whole string (so brackets and commas inside one are skipped), or one structural character. The
# unrolled `[^"\\]*(?:\\.[^"\\]*)*` runs in the regex engine at C speed, a character class at a time.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)
_OPEN_ARRAY, _OPEN_OBJECT, _COMMA = b"[{,"
_OPENS = frozenset(b"[{")
_CLOSES = frozenset(b"]}")
_OBJECT = -1


class UploadError(Exception):
    """The body as a whole is unusable (not UTF-8, not CSV or JSON, too many rows): no row errors."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def check_shape(body: bytes, max_rows: int) -> None:
    """Refuse a JSON body with more than `max_rows` top-level items, a longer inner array, or deeper nesting.

    Only the shape is checked: a body that passes may still be malformed JSON, which the decoder then
    reports. The scan stops at the first item over a limit, so a hostile body costs little CPU either.

    Raises:
        UploadError: 422 too many rows or inner items, 400 nested too deeply.
    """
    # Per open container: commas seen so far in an array, or _OBJECT (an object's commas count nothing).
    open_containers: list[int] = []
    for match in _TOKEN.finditer(body):
        token = body[match.start()]
        if token == _COMMA:
            if open_containers and open_containers[-1] != _OBJECT:
                open_containers[-1] += 1
                _check_items(open_containers[-1] + 1, len(open_containers), max_rows)
        elif token in _OPENS:
            if len(open_containers) == MAX_DEPTH:
                raise UploadError(400, f"malformed JSON: nested too deeply (at most {MAX_DEPTH} levels)")
            open_containers.append(0 if token == _OPEN_ARRAY else _OBJECT)
        elif token in _CLOSES and open_containers:
            open_containers.pop()


def _check_items(items: int, depth: int, max_rows: int) -> None:
    if depth == 1 and items > max_rows:
        raise UploadError(422, f"an upload holds at most {max_rows} rows; split the file")
    if depth > 1 and items > MAX_INNER_ITEMS:
        raise UploadError(422, f"an array inside a row holds at most {MAX_INNER_ITEMS} items")
