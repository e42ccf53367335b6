"""Visitor keys without Redis: deterministic within a day, apart across links, days, IPs and agents."""

from __future__ import annotations

import re

from tests.clock import Clock

from linkpulse.events import VISITOR_KEY_LENGTH
from linkpulse.redirect.clicks import ClickMaker
from linkpulse.redirect.visitor_keys import DAY_MS, FORGET_AFTER_MS, VisitorKeys
from linkpulse.web.proxies import TrustedProxies

DAY = 20_000 * DAY_MS
"""Midnight UTC starting 2024-10-04."""
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"


async def test_the_same_visitor_on_the_same_day_has_one_key_and_every_input_changes_it() -> None:
    keys = VisitorKeys(None, Clock(DAY))
    await keys.refresh()
    key = keys.key("203.0.113.7", UA, 42, DAY + 1000)
    assert re.fullmatch(f"[0-9a-f]{{{VISITOR_KEY_LENGTH}}}", key)
    assert keys.key("203.0.113.7", UA, 42, DAY + DAY_MS - 1) == key
    others = {
        keys.key("203.0.113.8", UA, 42, DAY),
        keys.key("203.0.113.7", UA + " ", 42, DAY),
        keys.key("203.0.113.7", UA, 43, DAY),
        keys.key("203.0.113.7", UA, 42, DAY + DAY_MS),
        # The separators keep the fields apart: moving a character across them changes the key.
        keys.key("203.0.113.74", UA[1:], 2, DAY),
    }
    assert key not in others and len(others) == 5


async def test_a_new_day_has_a_new_salt_and_the_old_one_is_forgotten() -> None:
    clock = Clock(DAY + DAY_MS - 1000)
    keys = VisitorKeys(None, clock)
    await keys.refresh()
    yesterday = keys.key("203.0.113.7", UA, 42, clock.now)
    # The day changes: a click just after midnight keys with the new day's salt.
    clock.now = DAY + DAY_MS + FORGET_AFTER_MS
    await keys.refresh()
    assert keys.key("203.0.113.7", UA, 42, clock.now) != yesterday
    # Yesterday's salt is gone: a click stamped yesterday now gets a fresh salt, never the old key.
    assert keys.key("203.0.113.7", UA, 42, DAY + DAY_MS - 1000) != yesterday


async def test_without_redis_two_processes_key_apart() -> None:
    # Each makes its own salt: uniques overcount across processes, never merge two visitors.
    first, second = VisitorKeys(None, Clock(DAY)), VisitorKeys(None, Clock(DAY))
    await first.refresh()
    await second.refresh()
    assert not first.shares(DAY // DAY_MS)
    assert first.key("203.0.113.7", UA, 42, DAY) != second.key("203.0.113.7", UA, 42, DAY)


async def test_the_click_carries_the_key_of_the_full_ip_and_not_the_ip() -> None:
    keys = VisitorKeys(None, Clock(DAY))
    await keys.refresh()
    maker = ClickMaker(TrustedProxies("127.0.0.1/32"), "cf-ipcountry", anonymize=True, tracing=None, visitors=keys)
    headers = {"x-forwarded-for": "198.51.100.23", "user-agent": UA}
    click = maker.make("abc", 42, DAY + 5, "127.0.0.1", lambda name, default: headers.get(name, default))
    assert click.ip == "198.51.100.0"
    assert click.visitor == keys.key("198.51.100.23", UA, 42, DAY + 5)
    # Another address of the same /24 is another visitor, though both clicks carry the same anonymised IP.
    headers["x-forwarded-for"] = "198.51.100.24"
    other = maker.make("abc", 42, DAY + 6, "127.0.0.1", lambda name, default: headers.get(name, default))
    assert other.ip == click.ip and other.visitor != click.visitor
    assert "198.51.100.23" not in repr(click)
