"""Which user agents are bots: one rule set for ingest's stored flag, the redirect's click limits and reclassify.

Three sources, cheapest first: ua-parser's device family "Spider" (the big crawlers), our own list (below),
and crawlerdetect (a port of JayBizzle/Crawler-Detect, about 1,500 maintained patterns). An empty user agent
counts as a bot: every browser sends one, so its absence means a script.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib.metadata import version as _dist_version

import crawlerdetect
import ua_parser
from crawlerdetect import CrawlerDetect

from linkpulse.settings import BotSettings, bot_patterns

__all__ = [
    "BOT_RULES_REVISION",
    "BOT_RULES_VERSION",
    "DEFAULT_RULES",
    "HUMAN_PARTS",
    "OWN_PATTERNS",
    "OWN_WORDS",
    "BotRules",
    "active_rules",
    "is_bot",
    "on_rules_changed",
    "own_patterns_digest",
    "rules_from_settings",
    "use_rules",
]

BOT_RULES_REVISION = 2
"""Revision of OWN_WORDS, OWN_PATTERNS and HUMAN_PARTS: raise it with every change to them (test_bots.py checks)."""

# Tools and headless browsers crawlerdetect leaves to others, and the link-preview fetchers and fediverse
# servers that name no crawler: a post on Mastodon is fetched by every instance that receives it, each as
# `http.rb/5.1.1 (Mastodon/4.2.1; +https://instance/)`. iMessage previews say "facebookexternalhit/1.1
# Facebot Twitterbot/1.0". Plain words, found in the lower-cased user agent with `in`: as one alternation
# regex they cost 70 µs per user agent, as substring tests under 10.
OWN_WORDS: tuple[str, ...] = (
    "bot/",
    "crawl",
    "spider",
    "slurp",
    "scrape",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "okhttp",
    "libwww",
    "headless",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "lighthouse",
    "preview",
    "monitor",
    "pingdom",
    "uptime",
    "axios/",
    "node-fetch",
    "undici",
    "insomnia/",
    "datadog",
    "synthetics",
    "checkly",
    # Link previews of chat apps and social networks.
    "facebookexternalhit",
    "facebot",
    "twitterbot",
    "linkedinbot",
    "embedly",
    "whatsapp",  # also what Signal sends for its previews; WhatsApp has no in-app browser
    "telegrambot",
    "discordbot",
    "slackbot",
    "slack-imgproxy",
    "linkexpanding",
    "skypeuripreview",
    "microsoft preview",
    "google-pagerenderer",
    "google-read-aloud",
    "google-safety",
    "google-lens",
    "googleother",
    "cardyb",
    "iframely",
    "redditbot",
    "vkshare",
    "kakaotalk-scrap",
    "ms-office",  # Office apps fetch a link before they hand it to the browser
    # Fediverse servers fetching a posted link for its card.
    "mastodon/",
    "misskey/",
    "pleroma",
    "akkoma",
    "friendica",
    "gotosocial",
    "pixelfed",
    "lemmy",
    "sharkey/",
    "firefish/",
    "calckey",
    "http.rb/",
)
# What words cannot say. "cubot" is a phone brand and "Bot" a word in a few device names, so a bare "bot"
# counts only as a word of its own that is not a Cubot's.
OWN_PATTERNS: tuple[str, ...] = (
    r"(?<!cu)bot\b",
    r"^node$",
    r"^prometheus/",
    r"^[\W_]+$",  # "-" and the like: a placeholder, not a browser
)


# Parts of real browsers' user agents that crawlerdetect's patterns would take for a bot, removed before any
# pattern runs: the Facebook app's carrier field (FBCR/OrangeBotswana has "OrangeBot"), the Ladybird browser's
# engine (LibWeb), two Android tablets' names ("iBuddy Connect", "GreenDemon" builds) and phones whose model
# has "bot" as a word of its own (M bot 60, B bot 50, POWER BOT, IDbot).
HUMAN_PARTS: tuple[str, ...] = (
    r";\s*(?:M|B|ID|POWER)\s?bot\b",
    r"FBCR/[^;\]]*",
    r"LibWeb\+LibJS/[\d.]+",
    r"iBuddy ?Connect",
    r"Build/GreenDemon",
)


class BotRules:
    """A bot classifier: ua-parser's "Spider", OWN_WORDS, OWN_PATTERNS plus `extra`, and crawlerdetect.

    `version` names exactly the rules, so each stats answer and each reclassify run can say which ones
    produced it. Pass `extra` patterns to try a rule before it joins OWN_PATTERNS (and `linkpulse
    reclassify` takes a BotRules, so a test reclassifies with a changed rule without touching this module).
    """

    def __init__(self, extra: Sequence[str] = ()) -> None:
        """Compile OWN_PATTERNS and `extra` (case-insensitive regular expressions) into one search."""
        self.extra = tuple(extra)
        self._own = re.compile("|".join((*OWN_PATTERNS, *self.extra)), re.IGNORECASE)
        self._human = re.compile("|".join(HUMAN_PARTS), re.IGNORECASE)
        self._crawlers = CrawlerDetect()
        self.version = _version(self.extra)
        # 0.1-0.3 ms for a new browser UA, mostly crawlerdetect's one big regex (docs/analytics.md); a few
        # thousand UAs make nearly all traffic.
        self.is_bot = lru_cache(maxsize=8192)(self._is_bot)

    def is_bot_agent(self, ua: str, device_family: str | None) -> bool:
        """Whether a stripped user agent is a bot, given ua-parser's device family for it (callers that parsed it)."""
        if not ua or device_family == "Spider":
            return True
        ua = self._human.sub("", ua)
        lowered = ua.lower()
        return (
            any(word in lowered for word in OWN_WORDS)
            or self._own.search(ua) is not None
            or self._crawlers.is_crawler(ua)
        )

    def _is_bot(self, ua: str) -> bool:
        ua = ua.strip()
        if not ua:
            return True
        device = ua_parser.parse_device(ua)
        return self.is_bot_agent(ua, device.family if device is not None else None)

    def __repr__(self) -> str:
        return f"BotRules({self.version!r})"


def _version(extra: tuple[str, ...]) -> str:
    """`linkpulse-<revision>+crawlerdetect-<version>+uap-<builtins version>`, plus a hash of `extra` patterns."""
    name = (
        f"linkpulse-{BOT_RULES_REVISION}+crawlerdetect-{crawlerdetect.__version__}"
        f"+uap-{_dist_version('ua-parser-builtins')}"
    )
    if extra:
        name += "+extra-" + hashlib.sha256("\n".join(extra).encode()).hexdigest()[:12]
    return name


def own_patterns_digest() -> str:
    """SHA-256 of our lists: a test pins it, so a changed list cannot keep its old revision."""
    return hashlib.sha256("\n".join((*OWN_WORDS, "", *OWN_PATTERNS, "", *HUMAN_PARTS)).encode()).hexdigest()


DEFAULT_RULES = BotRules()
"""The maintained rules alone: what ingest, the redirect and `linkpulse reclassify` use without operator patterns."""

BOT_RULES_VERSION = DEFAULT_RULES.version
"""The name of the maintained rules, as stored in `bot_rules` and shown by the stats when no patterns are added."""

_active = DEFAULT_RULES
_on_change: list[Callable[[], object]] = []


def active_rules() -> BotRules:
    """The rules this process classifies with: DEFAULT_RULES, or those `use_rules` set at start."""
    return _active


def use_rules(rules: BotRules) -> None:
    """Classify with `rules` from now on in this process (a service calls it once at start, from its settings)."""
    global _active
    _active = rules
    for callback in _on_change:
        callback()


def on_rules_changed(callback: Callable[[], object]) -> None:
    """Run `callback` whenever `use_rules` changes the active rules (to empty a cache of their results)."""
    _on_change.append(callback)


def rules_from_settings(settings: BotSettings) -> BotRules:
    """The maintained rules plus the operator's patterns (`LINKPULSE_BOTS_PATTERNS`); DEFAULT_RULES without any."""
    extra = bot_patterns(settings.patterns)
    return BotRules(extra=extra) if extra else DEFAULT_RULES


def is_bot(ua: str) -> bool:
    """Whether a user agent is a bot, as ingest will flag its click; cached per UA (the redirect's click limits).

    Parses only the device with ua-parser, not the browser and OS; a new UA costs 0.1-0.3 ms (docs/analytics.md).
    """
    return _active.is_bot(ua)
