"""What a user agent says about the visitor: browser, OS, device class and bot flag (ingest and reclassify)."""

from __future__ import annotations

import re
from functools import lru_cache

import msgspec
import ua_parser

from linkpulse.bots import BotRules, active_rules, on_rules_changed

__all__ = ["DEVICE_CLASSES", "Enrichment", "device_class", "enrich_user_agent", "read_user_agent"]

DEVICE_CLASSES = ("desktop", "mobile", "tablet", "bot", "other")

_DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD", "OpenBSD", "NetBSD"}
)
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Tizen"})
_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook|nexus (7|9|10)\b", re.IGNORECASE)


class Enrichment(msgspec.Struct, frozen=True):
    """What a user agent says about the visitor."""

    browser: str
    """ua-parser's browser family ("Chrome", "Mobile Safari", "Googlebot"); "" when unknown."""
    os: str
    """ua-parser's OS family ("Windows", "iOS"); "" when unknown."""
    device: str
    """One of DEVICE_CLASSES."""
    is_bot: bool
    """True for crawlers, tools and previews; bots are stored and counted apart, never dropped."""


def read_user_agent(ua: str, rules: BotRules) -> Enrichment:
    """Read a user agent with `rules`; uncached (ingest caches `enrich_user_agent`, reclassify reads each UA once)."""
    ua = ua.strip()
    if not ua:
        return Enrichment(browser="", os="", device="bot", is_bot=True)
    result = ua_parser.parse(ua)
    os_family = _family(result.os)
    device = result.device
    is_bot = rules.is_bot_agent(ua, device.family if device is not None else None)
    device_name = device_class(ua, os_family, device, is_bot)
    return Enrichment(browser=_family(result.user_agent), os=os_family, device=device_name, is_bot=is_bot)


@lru_cache(maxsize=10_000)
def enrich_user_agent(ua: str) -> Enrichment:
    """`read_user_agent` with the active rules; cached, because a few thousand UAs make up nearly all traffic."""
    return read_user_agent(ua, active_rules())


on_rules_changed(enrich_user_agent.cache_clear)


def _family(part: ua_parser.UserAgent | ua_parser.OS | None) -> str:
    return "" if part is None or part.family == "Other" else part.family


def device_class(ua: str, os_family: str, device: ua_parser.Device | None, is_bot: bool) -> str:
    """One of DEVICE_CLASSES for a stripped user agent, its OS family and ua-parser's device."""
    if is_bot:
        return "bot"
    brand = (device.brand or "") if device is not None else ""
    if _TABLET.search(ua) or "Tablet" in brand:
        return "tablet"
    if os_family == "Android":
        # Android phones say "Mobile"; Android tablets (Google's own guidance) leave it out.
        return "mobile" if "Mobile" in ua else "tablet"
    if os_family in _MOBILE_OS or "Mobi" in ua:
        return "mobile"
    if os_family in _DESKTOP_OS:
        return "desktop"
    return "other"
