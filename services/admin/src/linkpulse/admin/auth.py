"""Bearer authentication by API key (SHA-256 lookup, constant-time check), the bootstrap key, scope guards."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from linkpulse.admin.settings import AdminOptions
from linkpulse.apikeys import (
    ADMIN,
    KEY_PREFIX,
    LINKS_READ,
    LINKS_WRITE,
    SCOPES,
    STATS_READ,
    generate_key,
    has_scope,
    hash_key,
    key_prefix,
)
from linkpulse.db import apikeys as keys_db

# The key primitives live in `linkpulse.apikeys` (the CLI mints keys too); they are re-exported
# here so the admin code has one place to import auth from.
__all__ = [
    "ADMIN",
    "KEY_PREFIX",
    "LINKS_READ",
    "LINKS_WRITE",
    "SCOPES",
    "STATS_READ",
    "Principal",
    "authenticate",
    "authenticated",
    "ensure_bootstrap_key",
    "generate_key",
    "has_scope",
    "hash_key",
    "key_prefix",
    "requires",
]

# Generated keys are 46 characters; anything far longer is not a key and is not worth hashing.
_MAX_KEY_CHARS = 512
# last_used_at is a hint for operators; refreshing it at most once a minute saves a write per request.
_TOUCH_EVERY = timedelta(minutes=1)

log = structlog.get_logger(__name__)

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The API key a request authenticated with (never the key itself)."""

    key_id: int
    name: str
    prefix: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether this key may act with `scope`."""
        return has_scope(self.scopes, scope)


async def ensure_bootstrap_key(pool: asyncpg.Pool, options: AdminOptions) -> None:
    """Upsert the bootstrap admin key (`options.key`, by hash), so a fresh install has a way in.

    A key an operator revoked stays revoked: restarting with the same variable must not undo that.
    The key is read from `options` (whose repr hides it) and never bound to a local, so no
    traceback can show it.
    """
    if not options.key:
        return
    if len(options.key) < 32:
        log.warning(
            "auth.bootstrap_key_short",
            chars=len(options.key),
            hint="use 32+ random characters, or `linkpulse keys create`",
        )
    revoked = await keys_db.upsert_bootstrap(
        pool, name="bootstrap", prefix=key_prefix(options.key), key_hash=hash_key(options.key), scopes=[ADMIN]
    )
    if revoked:
        log.warning("auth.bootstrap_key_revoked", prefix=key_prefix(options.key))


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The Principal of the request's `Authorization: Bearer` key; 401 when missing or not valid.

    The result is kept in the ASGI scope (`request.auth`), so several guards cost one lookup.
    """
    cached = connection.scope.get("auth")
    if isinstance(cached, Principal):
        return cached
    digest = _bearer_digest(connection.headers.get("authorization", ""))
    pool: asyncpg.Pool = connection.app.state.db
    # Read on every request, never cached across requests: a revocation or expiry applies to
    # the very next request.
    found = await keys_db.find_by_hash(pool, digest)
    # The lookup is by hash, so its timing says nothing about the key; the constant-time
    # comparison of what came back keeps it so however the database matched.
    if found is None or not hmac.compare_digest(found[1], digest):
        raise _unauthorized("invalid API key")
    key = found[0]
    now = datetime.now(UTC)
    if key.revoked_at is not None:
        raise _unauthorized("API key revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise _unauthorized("API key expired")
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        await keys_db.touch_last_used(pool, key.id)
    principal = Principal(key_id=key.id, name=key.name, prefix=key.prefix, scopes=frozenset(key.scopes))
    connection.scope["auth"] = principal
    connection.scope["user"] = principal.name
    return principal


def _unauthorized(detail: str) -> NotAuthorizedException:
    # RFC 6750: a 401 names the scheme the client should use.
    return NotAuthorizedException(detail, headers={"WWW-Authenticate": "Bearer"})


def _bearer_digest(authorization: str) -> bytes:
    # Only the hash leaves this frame: a traceback that shows locals of the lookup below
    # (rich tracebacks do) can never print the key.
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>`")
    if len(key) > _MAX_KEY_CHARS:
        raise _unauthorized("invalid API key")
    return hash_key(key)


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: any valid key. Set on every API controller, so no handler is public by omission."""
    await authenticate(connection)


def requires(scope: str) -> Guard:
    """Guard factory: 401 without a valid key, 403 when the key lacks `scope` (`admin` has all)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await authenticate(connection)
        if not principal.allows(scope):
            raise PermissionDeniedException(f"this API key lacks the {scope!r} scope")

    guard.__name__ = f"requires_{scope.replace(':', '_')}"
    return guard
