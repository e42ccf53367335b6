"""API keys without I/O: scopes, key generation, the stored hash and prefix, name and scope rules.

Shared by the admin API and the `linkpulse keys` command, so both mint and check keys alike.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Iterable
from typing import Final

__all__ = [
    "ADMIN",
    "KEY_PREFIX",
    "LINKS_READ",
    "LINKS_WRITE",
    "MAX_NAME_CHARS",
    "SCOPES",
    "STATS_READ",
    "generate_key",
    "has_scope",
    "hash_key",
    "key_prefix",
    "normalize_scopes",
    "validate_name",
]

LINKS_READ: Final = "links:read"
LINKS_WRITE: Final = "links:write"
STATS_READ: Final = "stats:read"
ADMIN: Final = "admin"
SCOPES: Final = frozenset({LINKS_READ, LINKS_WRITE, STATS_READ, ADMIN})

KEY_PREFIX: Final = "lp_"
MAX_NAME_CHARS: Final = 100
_DISPLAY_CHARS = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def generate_key() -> str:
    """A new API key: `lp_` + 43 URL-safe characters (256 random bits). Shown once, stored hashed."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    """SHA-256 of a key, the only form stored; keys are 256-bit random, so a slow hash adds nothing."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_prefix(key: str) -> str:
    """The first 8 characters, stored for display so an operator can tell keys apart."""
    return key[:_DISPLAY_CHARS]


def has_scope(granted: Collection[str], required: str) -> bool:
    """Whether `granted` covers `required`; `admin` implies every scope."""
    return ADMIN in granted or required in granted


def normalize_scopes(scopes: Iterable[str]) -> list[str]:
    """Known scopes, each once, sorted (stable for storage and display).

    Raises:
        ValueError: no scope at all, or one that is not in SCOPES.
    """
    unique = set(scopes)
    unknown = sorted(unique - SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(SCOPES))}")
    if not unique:
        raise ValueError("at least one scope is required")
    return sorted(unique)


def validate_name(name: str) -> str:
    """A key's name as given: 1 to 100 characters, not blank, no control characters.

    Raises:
        ValueError: the name breaks one of those rules.
    """
    if not name.strip():
        raise ValueError("name must not be blank")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"name must be at most {MAX_NAME_CHARS} characters")
    if _CONTROL.search(name):
        raise ValueError("name must not contain control characters")
    return name
