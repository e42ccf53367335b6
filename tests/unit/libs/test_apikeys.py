"""Key primitives shared by the admin API and the CLI: format, hash, prefix, scopes, names."""

from __future__ import annotations

import hashlib
import re

import pytest

from linkpulse.apikeys import (
    ADMIN,
    LINKS_READ,
    LINKS_WRITE,
    MAX_NAME_CHARS,
    SCOPES,
    STATS_READ,
    generate_key,
    has_scope,
    hash_key,
    key_prefix,
    normalize_scopes,
    validate_name,
)


def test_keys_are_lp_plus_256_random_bits_and_unique() -> None:
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(re.fullmatch(r"lp_[A-Za-z0-9_-]{43}", k) for k in keys)


def test_only_a_sha256_is_derived_for_storage() -> None:
    key = generate_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).digest()
    assert key not in hash_key(key).hex()
    # The display prefix shows `lp_` and 5 of the 43 random characters.
    assert key_prefix(key) == key[:8]


def test_the_scope_set_is_the_documented_one_and_admin_implies_all() -> None:
    assert {"links:read", "links:write", "stats:read", "admin"} == SCOPES
    assert all(has_scope({ADMIN}, s) for s in SCOPES)
    assert has_scope({STATS_READ}, STATS_READ)
    assert not has_scope({LINKS_READ, LINKS_WRITE, STATS_READ}, ADMIN)
    assert not has_scope({LINKS_READ}, LINKS_WRITE)


def test_scopes_are_deduplicated_and_sorted() -> None:
    assert normalize_scopes(["stats:read", "links:read", "stats:read"]) == ["links:read", "stats:read"]


@pytest.mark.parametrize(
    ("scopes", "reason"),
    [([], "at least one scope"), (["links:delete"], "unknown scope(s) 'links:delete'"), (["Admin"], "unknown")],
)
def test_empty_or_unknown_scopes_are_refused(scopes: list[str], reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalize_scopes(scopes)


def test_names_are_kept_as_given() -> None:
    assert validate_name("CI deploy — prod") == "CI deploy — prod"
    assert validate_name("x" * MAX_NAME_CHARS) == "x" * MAX_NAME_CHARS


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("x" * (MAX_NAME_CHARS + 1), "at most 100"),
        ("a\nb", "control characters"),
        ("a\x00b", "control characters"),
        ("a\x85b", "control characters"),
    ],
)
def test_bad_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_name(name)
