"""One bot rule: the redirect's click limits and ingest's stored flag agree on every user agent."""

from __future__ import annotations

import pytest

from linkpulse.bots import is_bot
from linkpulse.ingest.enrich import enrich_user_agent

AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
    "",
    "   ",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; CUBOT KINGKONG 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/118.0 Mobile Safari/537.36",
]


@pytest.mark.parametrize("ua", AGENTS)
def test_the_redirect_and_ingest_classify_every_agent_alike(ua: str) -> None:
    assert is_bot(ua) is enrich_user_agent(ua).is_bot


def test_crawlers_previews_and_tools_are_bots_and_browsers_are_not() -> None:
    assert [is_bot(ua) for ua in AGENTS] == [True] * 10 + [False] * 3
