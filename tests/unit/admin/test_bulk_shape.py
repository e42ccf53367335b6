"""Hostile bulk JSON bodies refused before they are built: peak memory measured with tracemalloc."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable

import pytest

from linkpulse.admin.links.bulk import MAX_ROWS, UploadError, parse_upload
from linkpulse.admin.links.bulk_shape import MAX_DEPTH, MAX_INNER_ITEMS, check_shape

BODY_LIMIT = 8 * 1024 * 1024
PEAK_LIMIT = 64 * 1024 * 1024


def _peak_of(call: Callable[[], object]) -> tuple[int, object]:
    """The peak bytes Python allocated while `call` ran (the body, made before, not counted), and its outcome."""
    tracemalloc.start()
    try:
        try:
            outcome: object = call()
        except UploadError as exc:
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def _upload(body: bytes) -> Callable[[], object]:
    return lambda: parse_upload(body, "application/json")


def test_eight_mib_of_empty_objects_is_refused_naming_the_cap_within_64_mib() -> None:
    body = b"[" + b"{}," * ((BODY_LIMIT - 4) // 3) + b"{}]"
    assert len(body) <= BODY_LIMIT
    peak, outcome = _peak_of(_upload(body))
    assert isinstance(outcome, UploadError) and outcome.status_code == 422
    assert f"at most {MAX_ROWS} rows" in outcome.detail
    # Decoded whole first, these 2.8 million values took about 180 MiB.
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MiB"


def test_one_row_with_a_million_tags_is_refused_before_the_list_is_built() -> None:
    tags = b'"ab",' * ((BODY_LIMIT - 64) // 5)
    body = b'[{"url": "https://example.com/", "tags": [' + tags + b'"ab"]}]'
    peak, outcome = _peak_of(_upload(body))
    assert isinstance(outcome, UploadError) and outcome.status_code == 422
    assert f"at most {MAX_INNER_ITEMS} items" in outcome.detail
    # msgspec builds the whole list before checking its length: about 95 MiB.
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MiB"


def test_eight_mib_of_nested_arrays_is_refused_naming_the_depth() -> None:
    body = b"[" * (BODY_LIMIT // 2) + b"]" * (BODY_LIMIT // 2)
    peak, outcome = _peak_of(_upload(body))
    assert isinstance(outcome, UploadError) and outcome.status_code == 400
    assert f"at most {MAX_DEPTH} levels" in outcome.detail
    assert peak < PEAK_LIMIT


def test_brackets_and_commas_inside_strings_count_for_nothing() -> None:
    # Every title is full of structure and escaped quotes; only the MAX_ROWS rows themselves count.
    rows = [{"url": f"https://example.com/{i}", "title": '[{,"\\],,}' * 3} for i in range(MAX_ROWS)]
    check_shape(json.dumps(rows).encode(), MAX_ROWS)
    upload = parse_upload(json.dumps(rows).encode(), "application/json")
    assert upload.total == MAX_ROWS and not upload.errors


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"[" + b"1," * MAX_ROWS + b"1]", 422, f"at most {MAX_ROWS} rows"),
        (b'[{"tags": [' + b'"a",' * MAX_INNER_ITEMS + b'"a"]}]', 422, f"at most {MAX_INNER_ITEMS} items"),
        (b'[{"tags": ' + b"{" * MAX_DEPTH + b"}" * MAX_DEPTH + b"}]", 400, "nested too deeply"),
    ],
)
def test_one_item_over_a_limit_is_refused(body: bytes, status: int, words: str) -> None:
    with pytest.raises(UploadError) as caught:
        check_shape(body, MAX_ROWS)
    assert caught.value.status_code == status and words in caught.value.detail


def test_exactly_at_the_limits_passes() -> None:
    check_shape(b"[" + b"{}," * (MAX_ROWS - 1) + b"{}]", MAX_ROWS)
    check_shape(b'[{"tags": [' + b'"a",' * (MAX_INNER_ITEMS - 1) + b'"a"]}]', MAX_ROWS)
    check_shape(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, MAX_ROWS)
