"""Small MaxMind-format databases (.mmdb) built with mmdb-writer, in GeoLite2's record layout: no download."""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

from mmdb_writer import MMDBWriter
from netaddr import IPSet

__all__ = ["ASNS", "PLACES", "Place", "write_asn", "write_city", "write_many"]


class Place(NamedTuple):
    country: str
    region: str
    """The subdivision's own code ("BY"), as the files hold it; "" for a country-only record."""
    region_name: str
    city: str


PLACES: dict[str, Place] = {
    "203.0.113.0/24": Place("DE", "BY", "Bavaria", "Munich"),
    "198.51.100.0/24": Place("FR", "IDF", "Île-de-France", "Paris"),
    "192.0.2.0/24": Place("US", "IL", "Illinois", "Springfield"),
    "2001:db8:1::/48": Place("JP", "13", "Tokyo", "Tokyo"),
    "2001:db8:2::/48": Place("DE", "BE", "Land Berlin", "Berlin"),
    "100.64.0.0/24": Place("BR", "", "", ""),
}
ASNS: dict[str, tuple[int, str]] = {
    "203.0.113.0/24": (3320, "Deutsche Telekom AG"),
    "2001:db8:1::/48": (2516, "KDDI CORPORATION"),
}


def _record(place: Place) -> dict[str, object]:
    record: dict[str, object] = {"country": {"iso_code": place.country, "names": {"en": place.country}}}
    if place.region:
        record["subdivisions"] = [{"iso_code": place.region, "names": {"en": place.region_name}}]
    if place.city:
        record["city"] = {"names": {"en": place.city, "de": f"{place.city} (de)"}}
    return record


def write_city(path: Path, places: dict[str, Place] = PLACES) -> Path:
    """A City database (IPv6 with IPv4 mapped in, as GeoLite2's) holding `places` by network."""
    writer = MMDBWriter(6, "GeoLite2-City", languages=["en", "de"], description="linkpulse tests", ipv4_compatible=True)
    for network, place in places.items():
        writer.insert_network(IPSet([network]), _record(place))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path


def write_asn(path: Path, asns: dict[str, tuple[int, str]] = ASNS) -> Path:
    """An ASN database holding `asns` by network."""
    writer = MMDBWriter(6, "GeoLite2-ASN", languages=["en"], description="linkpulse tests", ipv4_compatible=True)
    for network, (number, org) in asns.items():
        writer.insert_network(
            IPSet([network]), {"autonomous_system_number": number, "autonomous_system_organization": org}
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.to_db_file(str(path))
    return path


def write_many(path: Path, networks: int, *, seed: int = 1) -> Path:
    """A City database of `networks` random /24s (and as many /48s), for the bench: a tree of realistic depth."""
    rng = random.Random(seed)
    places: dict[str, Place] = {}
    while len(places) < 2 * networks:
        a, b, c = rng.randrange(1, 224), rng.randrange(256), rng.randrange(256)
        country = rng.choice(("DE", "FR", "US", "GB", "BR", "IN", "JP"))
        place = Place(country, f"R{rng.randrange(40)}", "Region", f"City {rng.randrange(2000)}")
        places[f"{a}.{b}.{c}.0/24"] = place
        places[f"2a0{rng.randrange(10)}:{rng.randrange(65536):x}:{rng.randrange(65536):x}::/48"] = place
    return write_city(path, places)
