"""API keys and scopes: format, hashing, and the guard decisions, without servers."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from litestar.exceptions import PermissionDeniedException
from litestar.testing import RequestFactory

from linkpulse.admin.auth import (
    ADMIN,
    LINKS_READ,
    LINKS_WRITE,
    SCOPES,
    STATS_READ,
    Principal,
    authenticated,
    generate_key,
    has_scope,
    hash_key,
    key_prefix,
    requires,
)


def test_generated_keys_are_lp_plus_43_urlsafe_chars_and_unique() -> None:
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert re.fullmatch(r"lp_[A-Za-z0-9_-]{43}", key)


def test_the_stored_hash_is_sha256_and_holds_no_plain_key() -> None:
    key = generate_key()
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).digest()
    assert len(digest) == 32
    assert key.encode() not in digest and key not in digest.hex()
    assert hash_key(key) == digest  # deterministic, so a lookup by hash finds it
    assert hash_key(key + "x") != digest


def test_the_display_prefix_is_short_and_not_the_secret() -> None:
    key = generate_key()
    assert key_prefix(key) == key[:8]
    # 5 random characters of 43 shown: about 30 of 256 bits, too few to guess the rest from.
    assert len(key) - len(key_prefix(key)) == 38


@pytest.mark.parametrize(
    ("granted", "required", "allowed"),
    [
        ({LINKS_READ}, LINKS_READ, True),
        ({LINKS_READ}, LINKS_WRITE, False),
        ({LINKS_WRITE}, LINKS_READ, False),
        ({LINKS_READ, STATS_READ}, STATS_READ, True),
        ({ADMIN}, LINKS_WRITE, True),
        ({ADMIN}, STATS_READ, True),
        ({ADMIN}, ADMIN, True),
        ({LINKS_READ, LINKS_WRITE, STATS_READ}, ADMIN, False),
        (set(), LINKS_READ, False),
    ],
)
def test_scope_rules(granted: set[str], required: str, allowed: bool) -> None:
    assert has_scope(granted, required) is allowed
    principal = Principal(key_id=1, name="k", prefix="lp_abcde", scopes=frozenset(granted))
    assert principal.allows(required) is allowed


def test_requires_refuses_unknown_scopes() -> None:
    assert {LINKS_READ, LINKS_WRITE, STATS_READ, ADMIN} == SCOPES
    with pytest.raises(ValueError, match="unknown scope"):
        requires("links:delete")


def _request_as(scopes: set[str]) -> Any:
    # A request that already authenticated: the guards read the Principal from the scope.
    request = RequestFactory().get("/api/v1/links/x")
    request.scope["auth"] = Principal(key_id=1, name="k", prefix="lp_abcde", scopes=frozenset(scopes))
    return request


async def test_guard_passes_with_the_scope_and_403s_without() -> None:
    handler: Any = None
    await requires(LINKS_READ)(_request_as({LINKS_READ}), handler)
    await requires(LINKS_WRITE)(_request_as({ADMIN}), handler)
    await authenticated(_request_as(set()), handler)
    with pytest.raises(PermissionDeniedException, match="links:write"):
        await requires(LINKS_WRITE)(_request_as({LINKS_READ}), handler)
