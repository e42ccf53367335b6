"""The redirect's decision, every outcome, without servers: what each door answers for what it knows."""

from __future__ import annotations

import pytest

from linkpulse.links import REDIRECT_TYPES, LinkRecord
from linkpulse.redirect.app import create_app
from linkpulse.redirect.cache import MISS
from linkpulse.redirect.decision import (
    CACHE_CONTROL,
    GONE,
    LIMITED_HEAD_CACHE_CONTROL,
    NOT_FOUND,
    RESERVED,
    SLOW,
    Redirect,
    code_of,
    decide,
)
from linkpulse.redirect.settings import RedirectSettings

NOW = 1_700_000_000_000


def link(**fields: object) -> LinkRecord:
    return LinkRecord(**{"id": 1, "code": "abc", "url": "https://example.com/a?x=1", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize("status", REDIRECT_TYPES)
@pytest.mark.parametrize("is_get", [True, False], ids=["GET", "HEAD"])
def test_a_live_link_is_its_redirect_with_location_and_cache_control(status: int, is_get: bool) -> None:
    assert decide(link(redirect_type=status), NOW, b"", is_get) == Redirect(
        status, "https://example.com/a?x=1", CACHE_CONTROL
    )


def test_the_query_is_forwarded_only_when_the_link_asks() -> None:
    assert decide(link(), NOW, b"u=2", True).location == "https://example.com/a?x=1"  # type: ignore[union-attr]
    forwarding = link(forward_query=True)
    assert decide(forwarding, NOW, b"u=2", True).location == "https://example.com/a?x=1&u=2"  # type: ignore[union-attr]


def test_a_code_known_not_to_exist_is_404_and_one_the_cache_does_not_know_needs_the_slow_path() -> None:
    assert decide(None, NOW, b"", True) is NOT_FOUND and NOT_FOUND.status == 404
    assert decide(MISS, NOW, b"", True) is SLOW


@pytest.mark.parametrize(
    "gone",
    [link(active=False), link(deleted=True), link(expires_at=NOW), link(expires_at=NOW - 1)],
    ids=["disabled", "deleted", "expiring now", "expired"],
)
def test_a_disabled_deleted_or_expired_link_is_410(gone: LinkRecord) -> None:
    assert decide(gone, NOW, b"", True) is GONE and GONE.status == 410
    assert decide(gone, NOW, b"", False) is GONE


def test_a_link_expiring_later_is_live() -> None:
    assert isinstance(decide(link(expires_at=NOW + 1), NOW, b"", True), Redirect)


def test_a_click_limited_link_needs_its_count_then_is_live_below_the_limit_and_gone_at_it() -> None:
    limited = link(max_clicks=3)
    assert decide(limited, NOW, b"", True) is SLOW  # the count is I/O: the hot doors never answer it
    assert decide(limited, NOW, b"", True, used=2) == Redirect(302, "https://example.com/a?x=1", CACHE_CONTROL)
    assert decide(limited, NOW, b"", True, used=3) is GONE


def test_a_head_of_a_click_limited_link_gets_the_status_without_the_target_and_no_store() -> None:
    limited = link(max_clicks=3, redirect_type=307)
    assert decide(limited, NOW, b"", False, used=0) == Redirect(307, None, LIMITED_HEAD_CACHE_CONTROL)
    assert decide(limited, NOW, b"", False, used=3) is GONE


@pytest.mark.parametrize(
    ("path", "code"),
    [("/abc", "abc"), ("/A-b_9", "A-b_9"), ("/" + "x" * 64, "x" * 64), ("/", None), ("/" + "x" * 65, None),
     ("/a.b", None), ("/a/b", None), ("/healthz", None), ("/metrics", None), ("/readyz", None)],
)  # fmt: skip
def test_a_path_names_a_code_only_when_valid_and_not_another_routes(path: str, code: str | None) -> None:
    assert code_of(path) == code


def test_every_single_segment_route_of_the_app_is_reserved() -> None:
    # A new operational route must not be shadowed by a cached link of the same name in the hot doors.
    app = create_app(RedirectSettings.from_env({}))
    own = {route.path.strip("/") for route in app.routes if route.path.count("/") == 1 and "{" not in route.path}
    assert own and own <= RESERVED
