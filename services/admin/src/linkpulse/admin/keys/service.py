"""API key management: mint a key, store only its hash, list and revoke (SQL in `linkpulse.db.apikeys`)."""

from __future__ import annotations

import asyncpg

from linkpulse.admin.keys.schemas import ApiKey, CreatedKey, KeyCreate
from linkpulse.apikeys import generate_key, hash_key, key_prefix
from linkpulse.db import apikeys as keys_db
from linkpulse.validation import InvalidInput, validate_expiry

__all__ = ["InvalidInput", "KeyService"]

_MAX_ID = 2**63 - 1  # api_keys.id is a bigserial


class KeyService:
    """Everything the API does to API keys; handlers call it and never build SQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        """Bind the service to the app's Postgres pool."""
        self._pool = pool

    async def create(self, data: KeyCreate) -> CreatedKey:
        """Mint a key and store its SHA-256; the answer is the only place the plain key ever appears.

        Raises:
            InvalidInput: `expires_at` is not in the future, or past what a timestamp holds (422).
        """
        if data.expires_at is not None:
            validate_expiry(data.expires_at)
        key = generate_key()
        stored = await keys_db.insert_key(
            self._pool,
            name=data.name,
            prefix=key_prefix(key),
            key_hash=hash_key(key),
            scopes=list(data.scopes),
            expires_at=data.expires_at,
        )
        return CreatedKey(
            id=stored.id,
            name=stored.name,
            prefix=stored.prefix,
            scopes=stored.scopes,
            created_at=stored.created_at,
            expires_at=stored.expires_at,
            key=key,
        )

    async def list(self) -> list[ApiKey]:
        """Every key, revoked and expired ones included, oldest first; no key material but the prefix."""
        return [_api_key(k) for k in await keys_db.list_keys(self._pool)]

    async def revoke(self, key_id: int) -> keys_db.Revocation | None:
        """Revoke a key (idempotent); None when there is no key with this id."""
        if not 0 < key_id <= _MAX_ID:
            return None  # no key has it, and Postgres' bigint could not even hold it
        return await keys_db.revoke_key(self._pool, key_id)


def _api_key(record: keys_db.ApiKeyRecord) -> ApiKey:
    return ApiKey(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        scopes=record.scopes,
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        last_used_at=record.last_used_at,
    )
