"""Stats filters: `?country=DE&device=mobile` narrows a stats answer to the clicks with those values.

One query parameter per dimension (linkpulse.dimensions), each taking one value, compared exactly after the
normalisation its top list shows (a country in upper case, a language in lower case); an empty value picks the
clicks where the dimension is unknown. Several filters combine with AND. Parsed here without I/O, declared once
as a Litestar dependency so that every stats endpoint takes (and OpenAPI describes) the same parameters.
"""

from __future__ import annotations

from typing import Annotated, Final, NamedTuple

from litestar.exceptions import ValidationException
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

from linkpulse.dimensions import BY_NAME, Dimension
from linkpulse.events import MAX_LANG
from linkpulse.useragent import DEVICE_CLASSES
from linkpulse.validation import InvalidInput

__all__ = ["MAX_FILTER_CHARS", "Filter", "Filters", "clicks_where", "parse_filters", "provide_filters"]

MAX_FILTER_CHARS: Final = 256
"""The longest filter value (a referrer host is at most 253 characters; every other value is shorter)."""
_ECHO_CHARS = 64


class Filter(NamedTuple):
    """One dimension and the value a click must have in it."""

    dimension: Dimension
    value: str


Filters = tuple[Filter, ...]
"""The filters of one request, in `linkpulse.dimensions` order; empty for none."""


def parse_filters(values: dict[str, str | None]) -> Filters:
    """Dimension name → raw query value (None: not given) into Filters, normalised as the top lists show values.

    Raises:
        InvalidInput: an unknown dimension, a value too long or with control characters, or one a dimension
            cannot hold (a country that is not two letters, a device class that does not exist).
    """
    found = []
    for name, raw in values.items():
        if raw is None:
            continue
        dimension = BY_NAME.get(name)
        if dimension is None:
            raise InvalidInput(f"no dimension {name[:_ECHO_CHARS]!r} to filter by")
        found.append(Filter(dimension, _normalised(name, raw)))
    order = list(BY_NAME)
    return tuple(sorted(found, key=lambda f: order.index(f.dimension.name)))


def clicks_where(filters: Filters, first_arg: int) -> tuple[str, list[str]]:
    """SQL conditions on `click_events` rows (`AND …`, or "" for none) and their arguments from `$first_arg` on.

    The SQL text names only fixed expressions from linkpulse.dimensions; values always travel as arguments.
    """
    conditions = [f" AND {f.dimension.expression} = ${first_arg + i}" for i, f in enumerate(filters)]
    return "".join(conditions), [f.value for f in filters]


def _normalised(name: str, raw: str) -> str:
    value = raw.strip()
    if len(value) > MAX_FILTER_CHARS:
        raise InvalidInput(f"{name}: at most {MAX_FILTER_CHARS} characters")
    if not value.isprintable():
        raise InvalidInput(f"{name}: control characters are not allowed")
    if name == "country" and value:
        value = value.upper()
        if len(value) != 2 or not (value.isascii() and value.isalpha()):
            raise InvalidInput(f"country: an ISO 3166-1 alpha-2 code such as DE, not {raw[:_ECHO_CHARS]!r}")
    elif name == "device" and value:
        value = value.lower()
        if value not in DEVICE_CLASSES:
            raise InvalidInput(f"device: one of {', '.join(DEVICE_CLASSES)}, not {raw[:_ECHO_CHARS]!r}")
    elif name == "lang":
        value = value.lower()
        if len(value) > MAX_LANG:
            raise InvalidInput(f"lang: a language tag of at most {MAX_LANG} characters, such as en-us")
    return value


def _param(name: str, description: str) -> QueryParameter:
    # The length is checked by _normalised, not by Litestar, so that it is a 422 like every other bad filter.
    return QueryParameter(name=name, description=f"{description} An empty value selects unknown.")


# One parameter per dimension, written out because Litestar reads a dependency's parameters from its signature;
# tests hold this list to linkpulse.dimensions.
def provide_filters(
    country: Annotated[str | None, _param("country", "Only clicks from this country (`DE`).")] = None,
    referrer: Annotated[str | None, _param("referrer", "Only clicks referred by this host (without `www.`).")] = None,
    browser: Annotated[str | None, _param("browser", "Only clicks from this browser family (`Firefox`).")] = None,
    os: Annotated[str | None, _param("os", "Only clicks from this operating system family (`Android`).")] = None,
    device: Annotated[
        str | None, _param("device", f"Only clicks from this device class ({', '.join(DEVICE_CLASSES)}).")
    ] = None,
    region: Annotated[str | None, _param("region", "Only clicks from this region (ISO 3166-2, `DE-BY`).")] = None,
    city: Annotated[str | None, _param("city", "Only clicks from this city, as its top list names it.")] = None,
    asn: Annotated[str | None, _param("asn", "Only clicks from this network, as its top list names it.")] = None,
    lang: Annotated[
        str | None, _param("lang", "Only clicks whose first Accept-Language tag is this one (`de-de`, any case).")
    ] = None,
) -> Filters:
    """The request's filters; a bad one is a 422 naming its parameter."""
    try:
        return parse_filters({"country": country, "referrer": referrer, "browser": browser, "os": os,
                              "device": device, "region": region, "city": city, "asn": asn, "lang": lang})  # fmt: skip
    except InvalidInput as exc:
        raise ValidationException(detail=str(exc), status_code=HTTP_422_UNPROCESSABLE_ENTITY) from None
