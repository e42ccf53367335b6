"""GeoIP lookups from small .mmdb files built by the tests (mmdb-writer): places, header order, reloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from tests.clock import Clock
from tests.geoip_files import Place, write_asn, write_city
from tests.unit.ingest.test_batch import delivered

from linkpulse.events import ClickBatch, ClickEvent, encode
from linkpulse.ids import new_event_id
from linkpulse.ingest.batch import prepare
from linkpulse.ingest.geoip import MAX_CITY, UNKNOWN, Geo, GeoLookup
from linkpulse.ingest.settings import GeoipSettings, IngestSettings


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write_city(tmp_path / "city.mmdb"), write_asn(tmp_path / "asn.mmdb")


@pytest.fixture
def geoip(files: tuple[Path, Path]) -> GeoLookup:
    city, asn = files
    return GeoLookup(GeoipSettings(database=str(city), asn_database=str(asn)))


def replace(path: Path, places: dict[str, Place]) -> None:
    """A new version of the file put in place as operators (and Kubernetes' volume updates) do: a rename."""
    write_city(path.with_suffix(".new"), places)
    os.replace(path.with_suffix(".new"), path)


def test_the_settings_come_from_linkpulse_geoip_variables() -> None:
    settings = IngestSettings.from_env(
        {"LINKPULSE_GEOIP_DATABASE": "/geoip/city.mmdb", "LINKPULSE_GEOIP_ASN_DATABASE": "/geoip/asn.mmdb"}
    )
    assert settings.geoip == GeoipSettings(database="/geoip/city.mmdb", asn_database="/geoip/asn.mmdb")
    assert IngestSettings.from_env({}).geoip.database == ""


def test_an_anonymised_ipv4_address_is_placed_in_its_country_region_and_city(geoip: GeoLookup) -> None:
    assert geoip.locate("203.0.113.0", "") == Geo("DE", "DE-BY", "Munich, DE-BY", "AS3320 Deutsche Telekom AG")
    assert geoip.locate("198.51.100.0", "") == Geo("FR", "FR-IDF", "Paris, FR-IDF", "")
    # The city carries its region: the Springfield of Illinois is not the one of Missouri.
    assert geoip.locate("192.0.2.0", "").city == "Springfield, US-IL"


def test_an_anonymised_ipv6_address_is_placed_too(geoip: GeoLookup) -> None:
    assert geoip.locate("2001:db8:1::", "") == Geo("JP", "JP-13", "Tokyo, JP-13", "AS2516 KDDI CORPORATION")
    assert geoip.locate("2001:db8:2::", "") == Geo("DE", "DE-BE", "Berlin, DE-BE", "")


def test_a_country_only_record_gives_the_country_alone(geoip: GeoLookup) -> None:
    assert geoip.locate("100.64.0.0", "") == Geo("BR", "", "", "")


def test_an_address_the_database_does_not_hold_is_unknown(geoip: GeoLookup) -> None:
    assert geoip.locate("8.8.8.0", "") == UNKNOWN
    assert geoip.locate("2001:db8:ffff::", "") == UNKNOWN
    assert geoip.locate(None, "") == UNKNOWN


def test_the_trusted_proxy_header_wins_over_the_database(geoip: GeoLookup) -> None:
    # The header says France for an address the database puts in Munich: France, and no German region or city.
    assert geoip.locate("203.0.113.0", "FR") == Geo("FR", "", "", "AS3320 Deutsche Telekom AG")
    # Where they agree, the database adds the region and city.
    assert geoip.locate("203.0.113.0", "DE") == Geo("DE", "DE-BY", "Munich, DE-BY", "AS3320 Deutsche Telekom AG")
    # An address the database does not know keeps the header's country.
    assert geoip.locate("8.8.8.0", "US") == Geo("US", "", "", "")


def test_without_a_database_only_the_header_counts() -> None:
    geoip = GeoLookup(GeoipSettings())
    assert not geoip.enabled
    assert geoip.locate("203.0.113.0", "NL") == Geo("NL", "", "", "")
    assert geoip.locate("203.0.113.0", "") == UNKNOWN


def test_the_file_is_reread_when_it_changes_without_a_restart(files: tuple[Path, Path]) -> None:
    city, _ = files
    clock = Clock(1000.0)
    geoip = GeoLookup(GeoipSettings(database=str(city), check_interval=5), clock=clock)
    assert geoip.locate("203.0.113.0", "").city == "Munich, DE-BY"

    replace(city, {"203.0.113.0/24": Place("AT", "9", "Wien", "Vienna")})
    clock.now += 4.9
    geoip.refresh()
    # Checked at most every check_interval: the cached answer of the old file still stands.
    assert geoip.locate("203.0.113.0", "").city == "Munich, DE-BY"
    clock.now += 0.2
    geoip.refresh()
    assert geoip.locate("203.0.113.0", "") == Geo("AT", "AT-9", "Vienna, AT-9", "")
    assert geoip.locate("198.51.100.0", "") == UNKNOWN  # the new file holds no Paris


def test_a_broken_new_file_keeps_the_old_reader_and_logs_an_error(files: tuple[Path, Path]) -> None:
    city, _ = files
    clock = Clock(1000.0)
    geoip = GeoLookup(GeoipSettings(database=str(city), check_interval=1), clock=clock)
    broken = city.with_suffix(".broken")
    broken.write_bytes(b"\x00" * 4096 + b"not a MaxMind DB")
    os.replace(broken, city)
    clock.now += 2
    with structlog.testing.capture_logs() as logs:
        geoip.refresh()
    assert [(e["event"], e["log_level"], e["path"]) for e in logs] == [("geoip.broken", "error", str(city))]
    assert geoip.locate("203.0.113.0", "").city == "Munich, DE-BY"

    # A later good file is taken.
    replace(city, {"203.0.113.0/24": Place("AT", "9", "Wien", "Vienna")})
    clock.now += 2
    geoip.refresh()
    assert geoip.locate("203.0.113.0", "").city == "Vienna, AT-9"


def test_a_file_missing_at_start_is_read_once_it_appears(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    path = tmp_path / "later.mmdb"
    with structlog.testing.capture_logs() as logs:
        geoip = GeoLookup(GeoipSettings(database=str(path), check_interval=1), clock=clock)
    assert [e["event"] for e in logs] == ["geoip.unreadable"]
    assert geoip.locate("203.0.113.0", "") == UNKNOWN
    write_city(path)
    clock.now += 1
    geoip.refresh()
    assert geoip.locate("203.0.113.0", "").country == "DE"


def test_database_text_is_bounded_and_printable(tmp_path: Path) -> None:
    path = write_city(tmp_path / "odd.mmdb", {
        "203.0.113.0/24": Place("de", "BY\n", "Bavaria", "M\x00unich" + "x" * 500),
        "198.51.100.0/24": Place("ZZZ", "1", "One", "Nowhere"),
    })  # fmt: skip
    geoip = GeoLookup(GeoipSettings(database=str(path)))
    place = geoip.locate("203.0.113.0", "")
    assert (place.country, place.region) == ("DE", "DE-BY")
    assert place.city.startswith("Munichxxx") and len(place.city) == MAX_CITY
    assert geoip.locate("198.51.100.0", "") == UNKNOWN  # no ISO country: nothing from that record


def test_a_batch_is_located_when_it_is_prepared(geoip: GeoLookup) -> None:
    events = [
        ClickEvent(id=new_event_id(), code="geo", link_id=1, ts=1, ip="203.0.113.77"),
        ClickEvent(id=new_event_id(), code="geo", link_id=1, ts=2, ip="2001:db8:1:0:1::"),
        ClickEvent(id=new_event_id(), code="geo", link_id=1, ts=3, ip="203.0.113.0", country="FR"),
    ]
    batch = prepare([delivered(encode(ClickBatch(id=new_event_id(), events=events)), stream_seq=1)], geoip)
    assert [(r.country, r.region, r.city, r.asn) for r in batch.rows] == [
        ("DE", "DE-BY", "Munich, DE-BY", "AS3320 Deutsche Telekom AG"),
        ("JP", "JP-13", "Tokyo, JP-13", "AS2516 KDDI CORPORATION"),
        ("FR", "", "", "AS3320 Deutsche Telekom AG"),
    ]


def test_an_ipv4_only_database_is_read_and_ipv6_addresses_are_unknown_there(tmp_path: Path) -> None:
    writer = MMDBWriter(4, "DBIP-Country-Lite", languages=["en"], description="linkpulse tests")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "NZ"}})
    path = tmp_path / "v4.mmdb"
    writer.to_db_file(str(path))
    geoip = GeoLookup(GeoipSettings(database=str(path)))
    assert geoip.locate("203.0.113.0", "") == Geo("NZ", "", "", "")
    assert geoip.locate("2001:db8:1::", "") == UNKNOWN
