"""The `api_keys` SQL, shared by the admin API (authentication, the keys resource) and `linkpulse keys`.

Only a key's SHA-256 (`key_hash`) and its 8-character display prefix are ever written; no
function here takes a plain key.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg
import msgspec

__all__ = [
    "ApiKeyRecord",
    "Executor",
    "Revocation",
    "find_by_hash",
    "insert_key",
    "list_keys",
    "revoke_key",
    "touch_last_used",
    "upsert_bootstrap",
]

Executor = asyncpg.Pool | asyncpg.Connection
"""A pool or a connection: both run these statements (a connection joins its open transaction)."""

_COLUMNS = "id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at"


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored API key, without its hash."""

    id: int
    name: str
    prefix: str
    """The key's first 8 characters (`lp_` + 5), for telling keys apart."""
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    """Refreshed at most once a minute by authentication: a hint, not an audit log."""


class Revocation(NamedTuple):
    """What `revoke_key` did."""

    key: ApiKeyRecord
    already_revoked: bool
    """True when the key was revoked before; its original `revoked_at` is kept."""


def _record(row: asyncpg.Record) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=list(row["scopes"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


async def insert_key(
    db: Executor, *, name: str, prefix: str, key_hash: bytes, scopes: list[str], expires_at: datetime | None
) -> ApiKeyRecord:
    """Store a new key by its hash; returns the stored record."""
    row = await db.fetchrow(
        f"""INSERT INTO api_keys (name, prefix, key_hash, scopes, expires_at) VALUES ($1, $2, $3, $4, $5)
            RETURNING {_COLUMNS}""",
        name,
        prefix,
        key_hash,
        scopes,
        expires_at,
    )
    assert row is not None  # INSERT … RETURNING always returns the row
    return _record(row)


async def list_keys(db: Executor) -> list[ApiKeyRecord]:
    """Every key, revoked and expired ones included, oldest first."""
    return [_record(r) for r in await db.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id")]


async def revoke_key(db: Executor, key_id: int) -> Revocation | None:
    """Revoke a key at once (the next request with it gets 401); None when no key has this id.

    Idempotent: revoking a revoked key keeps its first `revoked_at`.
    """
    row = await db.fetchrow(
        """WITH target AS (SELECT id, revoked_at IS NOT NULL AS already FROM api_keys WHERE id = $1 FOR UPDATE)
            UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now())
            FROM target WHERE k.id = target.id
            RETURNING k.id, k.name, k.prefix, k.scopes, k.created_at, k.expires_at, k.revoked_at,
                      k.last_used_at, target.already""",
        key_id,
    )
    if row is None:
        return None
    return Revocation(_record(row), bool(row["already"]))


async def find_by_hash(db: Executor, key_hash: bytes) -> tuple[ApiKeyRecord, bytes] | None:
    """The key stored under `key_hash` and the stored hash itself (for a constant-time comparison)."""
    row = await db.fetchrow(f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE key_hash = $1", key_hash)
    if row is None:
        return None
    return _record(row), bytes(row["key_hash"])


async def touch_last_used(db: Executor, key_id: int) -> None:
    """Set `last_used_at` to now."""
    await db.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key_id)


async def upsert_bootstrap(db: Executor, *, name: str, prefix: str, key_hash: bytes, scopes: list[str]) -> bool:
    """Insert or refresh a configured key by its hash; True when that key was revoked (and stays so)."""
    revoked = await db.fetchval(
        """INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4)
           ON CONFLICT (key_hash) DO UPDATE SET name = EXCLUDED.name, scopes = EXCLUDED.scopes
           RETURNING revoked_at IS NOT NULL""",
        name,
        prefix,
        key_hash,
        scopes,
    )
    return bool(revoked)
