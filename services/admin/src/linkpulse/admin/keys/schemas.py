"""API key bodies: what a client may send (`KeyCreate`) and what the API answers (`ApiKey`, `CreatedKey`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from linkpulse.apikeys import MAX_NAME_CHARS, normalize_scopes, validate_name

__all__ = ["ApiKey", "CreatedKey", "KeyCreate", "Scope"]

Scope = Literal["links:read", "links:write", "stats:read", "admin"]


class KeyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new API key: a name for people, the scopes it grants, and an optional expiry."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS, description="Who or what uses it.")]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, description="`admin` implies every other scope.")]
    expires_at: Annotated[datetime, msgspec.Meta(tz=True, description="In the future; 401 after it.")] | None = None

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a ValidationError, so these come out as 422 too.
        validate_name(self.name)
        self.scopes = normalize_scopes(self.scopes)  # type: ignore[assignment]  # sorted, each once


class ApiKey(msgspec.Struct, kw_only=True):
    """A stored API key as the API lists it: never the key, only its display prefix."""

    id: int
    name: str
    prefix: str
    """The key's first 8 characters (`lp_` and 5 more), to tell keys apart."""
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    """When the key last authenticated a request (refreshed at most once a minute)."""


class CreatedKey(msgspec.Struct, kw_only=True):
    """A key just created: the only answer that ever holds the plain key."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    key: str
    """The plain key, `lp_` + 43 characters. Shown once: only its SHA-256 is stored."""
