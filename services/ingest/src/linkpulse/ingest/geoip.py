"""Where a click came from: a trusted proxy's country header first, then MaxMind-format databases (.mmdb).

Ingest looks up the anonymised address the click carries (a /24 or /48; the full IP never leaves the redirect).
The files are mounted by the operator and re-read when they change: at most every `check_interval` seconds
their mtime, inode and size are compared, a changed file is opened and probed, and the new reader replaces
the old one in one assignment. A file that cannot be opened keeps the reader in use and logs an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import maxminddb
import structlog

from linkpulse.events import country_code
from linkpulse.ingest.settings import GeoipSettings

__all__ = ["MAX_ASN", "MAX_CITY", "MAX_REGION", "UNKNOWN", "Geo", "GeoLookup"]

log = structlog.get_logger(__name__)

MAX_REGION = 12
"""ISO 3166-2 codes are at most six characters ("GB-ENG", "FR-75C"): a bound with room."""
MAX_CITY = 120
"""Longest city value kept (its English name, a comma and its region): database text is input too."""
MAX_ASN = 120
"""Longest network value kept ("AS3320 Deutsche Telekom AG")."""
_CACHE = 65_536
"""Addresses remembered per reader: anonymised ones repeat, and a cached answer costs a tenth of a lookup."""


class Geo(NamedTuple):
    """A click's location; "" where unknown."""

    country: str
    """ISO 3166-1 alpha-2."""
    region: str
    """ISO 3166-2 of the first (largest) subdivision: "DE-BY"."""
    city: str
    """English name and, to tell apart the many Springfields, the region or else the country: "Munich, DE-BY"."""
    asn: str
    """Autonomous system number and organisation: "AS3320 Deutsche Telekom AG"."""


UNKNOWN = Geo("", "", "", "")


class _Source:
    """One database file and the lookup of its current version (everything unknown until one could be opened)."""

    def __init__(self, path: str, read: Callable[[Mapping[str, Any]], Geo]) -> None:
        self.path = path
        self._read = read
        self._stamp: tuple[int, int, int] | None = None
        self.lookup: Callable[[str], Geo] = _unknown
        self.refresh()

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._stamp != (0, 0, 0):
                log.error("geoip.unreadable", path=self.path, error=str(exc))
                self._stamp = (0, 0, 0)
            return
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            # MODE_AUTO: the C extension over a memory map when the wheel has it (0.3 µs a lookup, against 5-7 µs
            # for the pure-Python modes: docs/analytics.md). An IPv4 probe suits IPv4-only and IPv6 files alike;
            # a file with a broken tree mostly fails it, here rather than in the middle of a batch.
            reader = maxminddb.open_database(self.path, maxminddb.MODE_AUTO)
            reader.get("1.0.0.0")
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            log.error("geoip.broken", path=self.path, error=str(exc), keeping="previous reader")
            return
        self.lookup = lru_cache(maxsize=_CACHE)(lambda ip: self._get(reader, ip))
        meta = reader.metadata()
        log.info("geoip.loaded", path=self.path, type=meta.database_type, built=meta.build_epoch)

    def _get(self, reader: Any, ip: str) -> Geo:
        try:
            record = reader.get(ip)
        except (ValueError, maxminddb.InvalidDatabaseError):
            return UNKNOWN  # not an address, or a corrupt region of the file: this click stays without a place
        return self._read(record) if isinstance(record, Mapping) else UNKNOWN


class GeoLookup:
    """The location of anonymised addresses from the configured databases; `refresh()` once a batch."""

    def __init__(self, settings: GeoipSettings, clock: Callable[[], float] = time.monotonic) -> None:
        """Open the configured files (none: every address is unknown); `clock` is for tests."""
        self._interval = settings.check_interval
        self._clock = clock
        self._checked = clock()
        self._city = _Source(settings.database, _place) if settings.database else None
        self._asn = _Source(settings.asn_database, _network) if settings.asn_database else None

    @property
    def enabled(self) -> bool:
        return self._city is not None or self._asn is not None

    def refresh(self) -> None:
        """Pick up changed files, checking at most every `check_interval` seconds."""
        now = self._clock()
        if now - self._checked < self._interval:
            return
        self._checked = now
        for source in (self._city, self._asn):
            if source is not None:
                source.refresh()

    def locate(self, ip: str | None, header_country: str) -> Geo:
        """The location of `ip` (canonical text); a trusted proxy's `header_country` wins over the database.

        Region and city are kept only where the database agrees with the header's country: a place in
        another country than the one the click is counted in would contradict it.
        """
        if not ip or not self.enabled:
            return Geo(header_country, "", "", "") if header_country else UNKNOWN
        place = self._city.lookup(ip) if self._city is not None else UNKNOWN
        asn = self._asn.lookup(ip).asn if self._asn is not None else ""
        if header_country and header_country != place.country:
            return Geo(header_country, "", "", asn)
        return place._replace(asn=asn) if asn else place


def _unknown(ip: str) -> Geo:
    return UNKNOWN


def _place(record: Mapping[str, Any]) -> Geo:
    """Country, region and city of a City or Country record (GeoLite2's layout, which DB-IP Lite shares)."""
    country = country_code(
        _text(_field(record, "country", "iso_code") or _field(record, "registered_country", "iso_code"), 3)
    )
    if not country:
        return UNKNOWN
    region = ""
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], Mapping):
        code = _text(subdivisions[0].get("iso_code"), 3)
        if code.isalnum() and code.isascii():
            region = f"{country}-{code.upper()}"
    names = record.get("city", {}).get("names") if isinstance(record.get("city"), Mapping) else None
    name = _text(names.get("en"), MAX_CITY) if isinstance(names, Mapping) else ""
    city = f"{name}, {region or country}"[:MAX_CITY] if name else ""
    return Geo(country, region, city, "")


def _network(record: Mapping[str, Any]) -> Geo:
    number = record.get("autonomous_system_number")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**32:
        return UNKNOWN
    org = _text(record.get("autonomous_system_organization"), MAX_ASN)
    return Geo("", "", "", f"AS{number} {org}".strip()[:MAX_ASN])


def _field(record: Mapping[str, Any], section: str, key: str) -> object:
    value = record.get(section)
    return value.get(key) if isinstance(value, Mapping) else None


def _text(value: object, limit: int) -> str:
    """Printable text from a database field, at most `limit` characters; "" for anything else."""
    if not isinstance(value, str):
        return ""
    value = value.strip()[:limit]
    return value if value.isprintable() else "".join(c for c in value if c.isprintable())
