"""The bot rules on a corpus of real user agents; the redirect's click limits and ingest's flag agree on each."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from linkpulse.bots import (
    BOT_RULES_REVISION,
    BOT_RULES_VERSION,
    DEFAULT_RULES,
    BotRules,
    active_rules,
    is_bot,
    own_patterns_digest,
    rules_from_settings,
    use_rules,
)
from linkpulse.ingest.enrich import enrich_user_agent
from linkpulse.settings import BotSettings, SettingsError, from_env
from linkpulse.useragent import read_user_agent

CORPUS = Path(__file__).parents[2] / "data" / "user_agents.csv"

# The digest of OWN_PATTERNS and HUMAN_PARTS at each revision: a changed list must come with a new revision,
# since the revision names the rules in the stats answers and in `bot_rules`.
REVISIONS = {2: "334e4a9752475e9fd80aeb3754ac8e2b13bc59c6349b0c7c9e89404ffe4500dd"}


def _corpus() -> list[tuple[str, bool]]:
    with CORPUS.open(newline="", encoding="utf-8") as f:
        return [(row["ua"], row["expected"] == "bot") for row in csv.DictReader(f)]


def test_the_corpus_holds_hundreds_of_both_classes() -> None:
    corpus = _corpus()
    assert sum(bot for _, bot in corpus) >= 200
    assert sum(not bot for _, bot in corpus) >= 200
    assert len({ua for ua, _ in corpus}) == len(corpus)


def test_every_user_agent_of_the_corpus_gets_its_class() -> None:
    wrong = [(ua, "bot" if bot else "human") for ua, bot in _corpus() if is_bot(ua) is not bot]
    assert wrong == []


def test_the_redirect_and_ingest_classify_every_agent_alike() -> None:
    for ua, _ in _corpus():
        assert is_bot(ua) is enrich_user_agent(ua).is_bot, ua


def test_a_bot_is_stored_with_the_bot_device_and_a_human_never_is() -> None:
    for ua, bot in _corpus():
        assert (enrich_user_agent(ua).device == "bot") is bot, ua


@pytest.mark.parametrize(
    "ua",
    [
        "http.rb/5.1.1 (Mastodon/4.2.1; +https://mastodon.social/)",
        "facebookexternalhit/1.1 Facebot Twitterbot/1.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
    ],
)
def test_previews_and_fediverse_fetchers_without_a_crawler_word_are_bots(ua: str) -> None:
    assert is_bot(ua)


def test_the_rules_version_names_our_revision_crawlerdetect_and_ua_parser() -> None:
    assert BOT_RULES_VERSION.startswith(f"linkpulse-{BOT_RULES_REVISION}+crawlerdetect-")
    assert "+uap-" in BOT_RULES_VERSION
    assert own_patterns_digest() == REVISIONS[BOT_RULES_REVISION], "our lists changed: raise BOT_RULES_REVISION"


def test_an_extra_rule_classifies_more_and_has_its_own_version() -> None:
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0 Safari/537.36"
    stricter = BotRules(extra=[r"Chrome/131\."])
    assert not is_bot(ua)
    assert stricter.is_bot(ua)
    assert read_user_agent(ua, stricter).device == "bot"
    assert stricter.version != BOT_RULES_VERSION
    assert stricter.version == BotRules(extra=[r"Chrome/131\."]).version


class _Service(msgspec.Struct):
    bots: BotSettings = BotSettings()


CHECKER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 Zebrafish/2.0"


@pytest.fixture
def restored_rules() -> Iterator[None]:
    yield
    use_rules(DEFAULT_RULES)


def test_the_operators_patterns_become_the_active_rules_everywhere(restored_rules: None) -> None:
    assert not enrich_user_agent(CHECKER).is_bot  # cached with the maintained rules
    rules = rules_from_settings(BotSettings(patterns="\n  Zebrafish/  \n\n^internal-probe\n"))
    assert rules.extra == ("Zebrafish/", "^internal-probe")
    use_rules(rules)
    assert active_rules() is rules
    assert enrich_user_agent(CHECKER).is_bot and enrich_user_agent(CHECKER).device == "bot"  # the cache was emptied
    assert is_bot(CHECKER) and is_bot("internal-probe/1.0") and not is_bot("my internal-probe")
    assert rules.version.startswith(BOT_RULES_VERSION + "+extra-")
    use_rules(DEFAULT_RULES)
    assert not enrich_user_agent(CHECKER).is_bot


def test_no_patterns_are_the_maintained_rules() -> None:
    assert rules_from_settings(BotSettings()) is DEFAULT_RULES
    assert rules_from_settings(BotSettings(patterns=" \n \n")) is DEFAULT_RULES


@pytest.mark.parametrize(
    ("patterns", "problem"),
    [
        ("(unclosed", "not a regular expression"),
        (".*", "matches every user agent"),
        ("x?", "matches every user agent"),
        ("Mozilla/5.0", "the most common browser"),
        ("a" * 201, "longer than 200"),
        ("\n".join(f"p{i}" for i in range(51)), "at most 50"),
    ],
)
def test_patterns_that_cannot_work_stop_the_start_naming_the_variable(patterns: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem) as caught:
        from_env(_Service, {"LINKPULSE_BOTS_PATTERNS": patterns})
    assert str(caught.value).startswith("LINKPULSE_BOTS: patterns: ")
