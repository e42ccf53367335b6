"""Stats answers: a link's series and top values (`LinkStats`), and the all-links `Overview`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from linkpulse.admin.stats.freshness import IngestLag
from linkpulse.admin.stats.window import Interval

__all__ = ["BotRulesUsed", "LinkCount", "LinkStats", "Overview", "Point", "Ranked", "TopValues"]


# Unique visitors (docs/analytics.md, "Unique visitors"), described in OpenAPI: a field's docstring is not.
_BUCKET_VISITORS = msgspec.Meta(
    description="Unique human visitors in the bucket: distinct (IP address, user agent) pairs that clicked the link "
    "in it, counted exactly from daily-salted visitor keys (a visitor is one IP and user agent on one UTC day)."
)
_BUCKET_BOT_VISITORS = msgspec.Meta(description="Unique bot visitors in the bucket, counted apart, the same way.")
_WINDOW_VISITORS = msgspec.Meta(
    description="Unique human visitors in the window: each UTC day's distinct (IP address, user agent) pairs "
    "within it, added up; nothing links days, so a visitor on two days counts twice."
)
_WINDOW_BOT_VISITORS = msgspec.Meta(description="Unique bot visitors in the window, the same way, counted apart.")
# Freshness (docs/analytics.md, "Slicing the stats"), on every stats answer.
_AS_OF = msgspec.Meta(
    description="The time of the newest stored click (of this link; in the overview, of any link): clicks up to "
    "it are counted. Null before the first."
)
_INGEST_LAG = msgspec.Meta(
    description="What ingest last reported of the clicks it has not stored yet; null when it never reported."
)
_TZ = msgspec.Meta(description="The IANA timezone of the day buckets and of date-only `from`/`to` (default UTC).")


class Point(msgspec.Struct, kw_only=True):
    """One bucket of the series."""

    ts: Annotated[
        datetime,
        msgspec.Meta(
            description="Start of the bucket, with the offset of `tz` at that instant: a local day (23 or 25 hours "
            "across a DST change), a local hour or a minute."
        ),
    ]
    clicks: int
    """Human clicks in the bucket."""
    bots: int
    """Bot clicks in the bucket, counted apart."""
    visitors: Annotated[int, _BUCKET_VISITORS]
    bot_visitors: Annotated[int, _BUCKET_BOT_VISITORS]


class Ranked(msgspec.Struct, kw_only=True):
    """A dimension value and its human clicks; `""` stands for unknown (or no referrer)."""

    value: str
    clicks: int


class TopValues(msgspec.Struct, kw_only=True):
    """Top 10 values per dimension, humans only, by clicks then value."""

    countries: Annotated[
        list[Ranked],
        msgspec.Meta(
            description='ISO 3166-1 alpha-2 codes: a trusted proxy\'s country header, else the GeoIP database; "" '
            "for unknown."
        ),
    ]
    referrers: list[Ranked]
    """Referrer hosts, without `www.` (all paths of a host add up)."""
    browsers: list[Ranked]
    os: list[Ranked]
    devices: list[Ranked]
    """desktop, mobile, tablet or other."""
    regions: Annotated[
        list[Ranked],
        msgspec.Meta(
            description='Regions as ISO 3166-2 codes ("DE-BY"), from the GeoIP database (docs/analytics.md, '
            '"Geography"); clicks it could not place are left out, so the list may add up to less than `total`.'
        ),
    ]
    cities: Annotated[
        list[Ranked],
        msgspec.Meta(
            description="Cities as their English name and region, or country where the database gives no region "
            '("Munich, DE-BY"), from the GeoIP database; clicks it could not place are left out.'
        ),
    ]
    asns: Annotated[
        list[Ranked],
        msgspec.Meta(
            description='Networks as "AS<number> <organisation>" ("AS3320 Deutsche Telekom AG"), when an ASN '
            "database is mounted; clicks it could not place are left out."
        ),
    ]
    languages: Annotated[
        list[Ranked],
        msgspec.Meta(
            description='The first language tag of Accept-Language, lower-cased ("de-de", "en"); "" when none was sent.'
        ),
    ]


class BotRulesUsed(msgspec.Struct, kw_only=True):
    """The bot rules that split these counts into humans and bots (docs/analytics.md, "Bot classification")."""

    version: Annotated[
        str,
        msgspec.Meta(
            description="The rules' name, `linkpulse-<revision>+crawlerdetect-<version>+uap-<version>`: those of "
            "the ingest process that connected last, or of a later `linkpulse reclassify`."
        ),
    ]
    since: Annotated[
        datetime,
        msgspec.Meta(
            description="Clicks from this time on were classified by these rules (the oldest click a "
            "reclassify with them covered, or else when ingest first used them); older ones keep earlier "
            "rules' class."
        ),
    ]
    reclassified_at: Annotated[
        datetime | None,
        msgspec.Meta(description="When `linkpulse reclassify` last ran with these rules; null if it never did."),
    ]


_BOT_RULES_FIELD = msgspec.Meta(
    description="The bot rules behind the humans/bots split; null before ingest has stored anything."
)


class LinkStats(msgspec.Struct, kw_only=True):
    """Clicks of one link in `[from, to)`, from the rollups ingest keeps."""

    code: str
    from_: datetime = msgspec.field(name="from")
    """Window start (inclusive), the requested one floored to the interval."""
    to: datetime
    """Window end (exclusive), the requested one raised to the end of its bucket."""
    interval: Interval
    """minute, hour or day: the series step."""
    total: int
    """Human clicks in the window: the sum of the series."""
    bots: int
    """Bot clicks in the window, not part of `total`."""
    visitors: Annotated[int, _WINDOW_VISITORS]
    bot_visitors: Annotated[int, _WINDOW_BOT_VISITORS]
    tz: Annotated[str, _TZ]
    filters: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="The filters applied, dimension to value as compared (a country upper-cased, a language "
            "lower-cased); every count in the answer, series, totals, visitors and top lists, is of the clicks "
            "matching all of them. Empty for none."
        ),
    ]
    series: list[Point]
    """Every bucket of the window, oldest first, zero-filled."""
    top: Annotated[
        TopValues,
        msgspec.Meta(
            description="Top values over exactly the window; a minute window's, or a window whose ends are not "
            "whole UTC hours (a timezone with a :30 or :45 offset), over the window widened to whole UTC hours "
            "(the finest rollup of the dimensions). Under a filter, counted from the clicks, and a filtered "
            "dimension's own list holds just its value."
        ),
    ]
    bot_rules: Annotated[BotRulesUsed | None, _BOT_RULES_FIELD]
    as_of: Annotated[datetime | None, _AS_OF]
    ingest_lag: Annotated[IngestLag | None, _INGEST_LAG]


class LinkCount(msgspec.Struct, kw_only=True):
    """One link's clicks in the overview window."""

    code: str
    url: str
    clicks: int
    bots: int
    visitors: Annotated[int, _WINDOW_VISITORS]
    bot_visitors: Annotated[int, _WINDOW_BOT_VISITORS]


class Overview(msgspec.Struct, kw_only=True):
    """All links' clicks in `[from, to)`, from the hour and day rollups."""

    from_: datetime = msgspec.field(name="from")
    """Window start (inclusive), floored to the UTC hour."""
    to: datetime
    """Window end (exclusive), raised to the next full hour."""
    clicks: int
    """Human clicks of every link."""
    bots: int
    """Bot clicks of every link."""
    visitors: Annotated[int, _WINDOW_VISITORS]
    """Of every link: per link and UTC day within the window, added up."""
    bot_visitors: Annotated[int, _WINDOW_BOT_VISITORS]
    tz: Annotated[str, _TZ]
    top_links: list[LinkCount]
    """Links by human clicks, then bot clicks, then code; at most `limit`."""
    countries: Annotated[
        list[Ranked],
        msgspec.Meta(
            description='Top 10 countries of every link\'s human clicks in the window (ISO 3166-1 alpha-2, "" for '
            "unknown)."
        ),
    ]
    cities: Annotated[
        list[Ranked],
        msgspec.Meta(
            description="Top 10 cities of every link's human clicks in the window, as the links' own top lists name "
            "them; clicks the GeoIP database could not place are left out."
        ),
    ]
    bot_rules: Annotated[BotRulesUsed | None, _BOT_RULES_FIELD]
    as_of: Annotated[datetime | None, _AS_OF]
    ingest_lag: Annotated[IngestLag | None, _INGEST_LAG]
