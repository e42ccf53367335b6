"""Stats filters: one query parameter per dimension, values normalised as the top lists show them, bad ones refused."""

from __future__ import annotations

import inspect

import pytest
from litestar.exceptions import ValidationException

from linkpulse.admin.stats.filters import MAX_FILTER_CHARS, Filter, clicks_where, parse_filters, provide_filters
from linkpulse.dimensions import BY_NAME, DIMENSIONS
from linkpulse.validation import InvalidInput


def test_provide_filters_declares_exactly_one_parameter_per_dimension() -> None:
    assert list(inspect.signature(provide_filters).parameters) == [d.name for d in DIMENSIONS]


def test_no_filter_given_is_no_filter() -> None:
    assert provide_filters() == ()
    assert clicks_where((), 4) == ("", [])


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("country", " de ", "DE"),
        ("lang", "de-DE", "de-de"),
        ("device", "Mobile", "mobile"),
        ("browser", "Firefox", "Firefox"),  # as the top list names it, case kept
        ("referrer", "news.ycombinator.com", "news.ycombinator.com"),
        ("region", "", ""),  # empty: the clicks where it is unknown
        ("city", "Munich, DE-BY", "Munich, DE-BY"),
    ],
)
def test_values_are_normalised_as_their_top_lists_show_them(name: str, raw: str, value: str) -> None:
    assert parse_filters({name: raw}) == (Filter(BY_NAME[name], value),)


def test_several_filters_come_in_dimension_order_and_their_values_are_arguments() -> None:
    filters = provide_filters(lang="EN", country="fr", device="desktop")
    assert [f.dimension.name for f in filters] == ["country", "device", "lang"]
    sql, args = clicks_where(filters, 7)
    assert sql == " AND country = $7 AND device = $8 AND lower(lang) = $9"
    assert args == ["FR", "desktop", "en"]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"country": "DEU"}, "country: an ISO 3166-1 alpha-2 code"),
        ({"country": "D1"}, "country: an ISO 3166-1 alpha-2 code"),
        ({"device": "phone"}, "device: one of"),
        ({"lang": "x" * 100}, "lang: a language tag of at most"),
        ({"browser": "Fire\nfox"}, "browser: control characters are not allowed"),
        ({"city": "x" * (MAX_FILTER_CHARS + 1)}, f"city: at most {MAX_FILTER_CHARS} characters"),
        ({"colour": "red"}, "no dimension 'colour' to filter by"),
    ],
)
def test_bad_filters_are_refused_naming_the_parameter(values: dict[str, str | None], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_filters(values)


def test_a_bad_filter_is_a_422_from_the_dependency() -> None:
    with pytest.raises(ValidationException) as raised:
        provide_filters(country="Germany")
    assert raised.value.status_code == 422
    assert raised.value.detail.startswith("country:")
